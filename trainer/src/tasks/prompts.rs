//! Few-shot prompts, as lm-eval assembles them: the description, then each example's context,
//! target delimiter and answer joined by the few-shot separator, the separator again, and the
//! item's own context.

use anyhow::{Result, bail, ensure};

use super::{Item, TaskKind, TaskSpec};

/// Each item's full context. Examples are drawn per item, seeded by the spec's seed and the
/// item's row, from `pool`; when the pool is the task itself (`own_pool`), never the item.
pub(super) fn assemble(
    spec: &TaskSpec,
    kind: TaskKind,
    items: &[Item],
    pool: &[Item],
    own_pool: bool,
) -> Result<Vec<String>> {
    if spec.fewshot == 0 {
        return Ok(items.iter().map(|item| format!("{}{}", spec.description, item.context)).collect());
    }
    if kind == TaskKind::Perplexity {
        bail!("`fewshot` = {}: a perplexity task scores whole texts and takes no examples", spec.fewshot);
    }
    let available = pool.len() - usize::from(own_pool);
    ensure!(
        spec.fewshot <= available,
        "`fewshot` = {} but the pool has {available} example(s) to draw from",
        spec.fewshot
    );
    Ok(items
        .iter()
        .map(|item| {
            let shots = draw(spec.seed, item.row, spec.fewshot, pool.len(), |i| own_pool && pool[i].row == item.row);
            let mut prompt = spec.description.clone();
            for i in shots {
                let example = &pool[i];
                prompt.push_str(&example.context);
                prompt.push_str(&spec.target_delimiter);
                prompt.push_str(example.target.answer());
                prompt.push_str(&spec.fewshot_separator);
            }
            prompt.push_str(&item.context);
            prompt
        })
        .collect())
}

/// `k` distinct indices below `n`, none `excluded`, in draw order; deterministic in
/// (`seed`, `row`). The caller guarantees that enough indices remain.
fn draw(seed: u64, row: u64, k: usize, n: usize, excluded: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut state = seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut picked = Vec::with_capacity(k);
    if k * 2 > n {
        // Most of the pool: a partial Fisher–Yates shuffle, which always terminates.
        let mut order: Vec<usize> = (0..n).filter(|&i| !excluded(i)).collect();
        for j in 0..k {
            let r = j + (util::rng::splitmix64(&mut state) % (order.len() - j) as u64) as usize;
            order.swap(j, r);
        }
        order.truncate(k);
        return order;
    }
    while picked.len() < k {
        let i = (util::rng::splitmix64(&mut state) % n as u64) as usize;
        if !excluded(i) && !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_distinct_seeded_and_skip_the_excluded() {
        for (k, n) in [(3, 10), (9, 10), (1, 2)] {
            let a = draw(7, 4, k, n, |i| i == 1);
            assert_eq!(a, draw(7, 4, k, n, |i| i == 1));
            assert_eq!(a.len(), k);
            assert!(!a.contains(&1));
            let mut sorted = a.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), k, "{a:?}");
        }
        assert_ne!(draw(7, 4, 3, 100, |_| false), draw(7, 5, 3, 100, |_| false), "rows draw differently");
    }
}
