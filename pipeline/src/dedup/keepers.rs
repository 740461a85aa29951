//! Who is removed for whom: from the accepted pairs to one keeper per removed document.
//!
//! With verification on, a document is removed only when it is similar enough to the document it
//! is removed *for*. Clusters are not closed transitively: A≈B and B≈C with C≉A keeps C, so a chain
//! of near copies cannot remove documents unlike the one kept. Without verification (datatrove's
//! rule, `--preset fineweb`) every connected component loses all but one document.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use super::Keeper;
use super::layout::{PairRecord, RemovalReason, RemovalRecord};
use super::union_find::UnionFind;

/// What choosing keepers needs to know of the documents.
pub(super) trait Documents {
    /// The `quality` score, `-inf` where there is none.
    fn quality(&self, doc: u64) -> f32;
    /// Equal hashes of the exactly normalised text.
    fn same_text(&self, a: u64, b: u64) -> bool;
    /// Jaccard similarity of the shingles (exact with verification); `None` where a document has
    /// no shingles.
    fn similarity(&self, a: u64, b: u64) -> Option<f64>;
}

/// The removals (sorted by document) and the groups they form.
#[derive(Debug, Default)]
pub(super) struct Grouping {
    pub removals: Vec<RemovalRecord>,
    /// Keeper → documents in its group (itself included), for groups of two or more.
    pub sizes: BTreeMap<u64, u64>,
    /// Keepers beyond one per connected cluster: documents that closing clusters transitively
    /// would have removed, kept because they are unlike the keepers they are linked to.
    pub kept_unlike: u64,
}

/// Keepers first: with `Keeper::Quality` the highest score, then (and otherwise) input order.
fn preference<'a>(keep: Keeper, docs: &'a impl Documents) -> impl Fn(&u64, &u64) -> Ordering + 'a {
    move |&a, &b| {
        if keep == Keeper::Quality {
            let (qa, qb) = (docs.quality(a), docs.quality(b));
            if qa != qb {
                return qb.partial_cmp(&qa).unwrap_or(Ordering::Equal);
            }
        }
        a.cmp(&b)
    }
}

fn removal(doc: u64, keeper: u64, docs: &impl Documents) -> RemovalRecord {
    let same = docs.same_text(doc, keeper);
    let similarity = if same { Some(1.0) } else { docs.similarity(doc, keeper) };
    RemovalRecord {
        doc,
        keeper,
        reason: if same { RemovalReason::Exact } else { RemovalReason::Near },
        similarity: similarity.map_or(f32::NAN, |s| s as f32),
    }
}

/// Every connected component keeps one document (datatrove's rule; `Keeper::Root` keeps the
/// union-find root after uniting the pairs in their order).
pub(super) fn by_component(accepted: &[PairRecord], keep: Keeper, docs: &impl Documents) -> Grouping {
    let mut nodes: Vec<u64> = accepted.iter().flat_map(|p| [p.a, p.b]).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let index = |doc: u64| nodes.binary_search(&doc).expect("node of a pair") as u32;
    let mut sets = UnionFind::new(nodes.len());
    for p in accepted {
        sets.union(index(p.a), index(p.b));
    }
    let prefer = preference(keep, docs);
    let mut keeper_of_set: BTreeMap<u32, u64> = BTreeMap::new();
    for (i, &doc) in nodes.iter().enumerate() {
        let root = sets.find(i as u32);
        let keeper = keeper_of_set.entry(root).or_insert(doc);
        if keep == Keeper::Root {
            *keeper = nodes[root as usize];
        } else if prefer(&doc, keeper) == Ordering::Less {
            *keeper = doc;
        }
    }
    let mut grouping = Grouping::default();
    for (i, &doc) in nodes.iter().enumerate() {
        let keeper = keeper_of_set[&sets.find(i as u32)];
        *grouping.sizes.entry(keeper).or_default() += 1;
        if doc != keeper {
            grouping.removals.push(removal(doc, keeper, docs));
        }
    }
    grouping
}

/// Documents in order of preference: each is removed for the most preferred keeper among those
/// it is linked to (a linked keeper, or the keeper a linked document was removed for) whose
/// similarity to it reaches `threshold`, and is a keeper itself when there is none.
pub(super) fn verified(accepted: &[PairRecord], keep: Keeper, threshold: f64, docs: &impl Documents) -> Grouping {
    // Both directions of every pair, sorted: the links of a document are one slice.
    let mut links: Vec<(u64, u64)> = accepted.iter().flat_map(|p| [(p.a, p.b), (p.b, p.a)]).collect();
    links.sort_unstable();
    links.dedup();
    let mut order: Vec<u64> = links.iter().map(|&(a, _)| a).collect();
    order.dedup();
    let prefer = preference(keep, docs);
    order.sort_by(&prefer);

    let mut keeper_of: HashMap<u64, u64> = HashMap::with_capacity(order.len());
    let mut grouping = Grouping::default();
    let mut candidates = Vec::new();
    for &doc in &order {
        let start = links.partition_point(|&(a, _)| a < doc);
        candidates.clear();
        // Linked documents decided before this one (the more preferred) name their keeper.
        candidates
            .extend(links[start..].iter().take_while(|&&(a, _)| a == doc).filter_map(|&(_, b)| keeper_of.get(&b)));
        candidates.sort_by(&prefer);
        candidates.dedup();
        let similar = |&&k: &&u64| docs.same_text(doc, k) || docs.similarity(doc, k).is_some_and(|s| s >= threshold);
        match candidates.iter().find(similar) {
            Some(&keeper) => {
                keeper_of.insert(doc, keeper);
                *grouping.sizes.entry(keeper).or_insert(1) += 1;
                grouping.removals.push(removal(doc, keeper, docs));
            }
            None => {
                keeper_of.insert(doc, doc);
            }
        }
    }
    let keepers = order.len() - grouping.removals.len();
    grouping.kept_unlike = (keepers - connected_clusters(&links)) as u64;
    grouping.removals.sort_unstable_by_key(|r| r.doc);
    grouping
}

/// How many connected clusters the links (both directions, sorted) form.
fn connected_clusters(links: &[(u64, u64)]) -> usize {
    let mut nodes: Vec<u64> = links.iter().map(|&(a, _)| a).collect();
    nodes.dedup();
    let index = |doc: u64| nodes.binary_search(&doc).expect("node of a link") as u32;
    let mut sets = UnionFind::new(nodes.len());
    for &(a, b) in links {
        sets.union(index(a), index(b));
    }
    (0..nodes.len() as u32).filter(|&i| sets.find(i) == i).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents as shingle sets, compared exactly; `text` groups exact copies.
    struct Fake {
        shingles: Vec<Vec<u32>>,
        text: Vec<u32>,
        quality: Vec<f32>,
    }

    impl Documents for Fake {
        fn quality(&self, doc: u64) -> f32 {
            self.quality[doc as usize]
        }
        fn same_text(&self, a: u64, b: u64) -> bool {
            self.text[a as usize] == self.text[b as usize]
        }
        fn similarity(&self, a: u64, b: u64) -> Option<f64> {
            let (a, b) = (&self.shingles[a as usize], &self.shingles[b as usize]);
            let both = a.iter().filter(|s| b.contains(s)).count();
            Some(both as f64 / (a.len() + b.len() - both) as f64)
        }
    }

    fn pair(a: u64, b: u64) -> PairRecord {
        PairRecord { a, b }
    }

    /// A = {0..10}, B = {3..13}, C = {6..16}: A≈B and B≈C (Jaccard 7/13), A and C share 4 of 16.
    fn chain() -> Fake {
        Fake {
            shingles: vec![(0..10).collect(), (3..13).collect(), (6..16).collect()],
            text: vec![0, 1, 2],
            quality: vec![0.0; 3],
        }
    }

    #[test]
    fn a_chain_keeps_the_document_unlike_the_keeper() {
        let docs = chain();
        let pairs = [pair(0, 1), pair(1, 2)];
        let g = verified(&pairs, Keeper::First, 0.5, &docs);
        assert_eq!(g.removals.iter().map(|r| (r.doc, r.keeper)).collect::<Vec<_>>(), [(1, 0)]);
        assert!((g.removals[0].similarity - 7.0 / 13.0).abs() < 1e-6);
        assert_eq!(g.kept_unlike, 1);
        assert_eq!(g.sizes, BTreeMap::from([(0, 2)]));
        // Closing the cluster transitively removes C too.
        let closed = by_component(&pairs, Keeper::First, &docs);
        assert_eq!(closed.removals.iter().map(|r| (r.doc, r.keeper)).collect::<Vec<_>>(), [(1, 0), (2, 0)]);
    }

    #[test]
    fn exact_copies_reach_their_keeper_through_each_other() {
        // Exact pairs link neighbours in hash order only: 0-1, 1-2; all three are one text.
        let docs = Fake { shingles: vec![vec![1], vec![2], vec![3]], text: vec![7, 7, 7], quality: vec![0.0; 3] };
        let g = verified(&[pair(0, 1), pair(1, 2)], Keeper::First, 0.9, &docs);
        let got: Vec<_> = g.removals.iter().map(|r| (r.doc, r.keeper, r.reason, r.similarity)).collect();
        assert_eq!(got, [(1, 0, RemovalReason::Exact, 1.0), (2, 0, RemovalReason::Exact, 1.0)]);
    }

    #[test]
    fn the_preferred_keeper_is_tried_first_and_quality_decides_the_order() {
        let mut docs = chain();
        docs.quality = vec![0.1, 0.9, 0.1];
        // B has the highest quality: it keeps, A and C (each ≈ B) go for it.
        let g = verified(&[pair(0, 1), pair(1, 2)], Keeper::Quality, 0.5, &docs);
        assert_eq!(g.removals.iter().map(|r| (r.doc, r.keeper)).collect::<Vec<_>>(), [(0, 1), (2, 1)]);
        assert_eq!(g.sizes, BTreeMap::from([(1, 3)]));
    }
}
