//! A page for a person to review what dedup removed: the largest clusters, each removal beside
//! the document it was removed for, with the similarity of the two.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use util::html::{escape, page};

use super::DedupJob;
use super::layout::{RemovalRecord, doc_number, file_of};
use super::records::RecordFile;
use super::stages::{DedupError, DedupStats, read_stats};
use crate::read;

/// Characters of a text shown on the page; the rest is counted, not shown.
const SHOWN_CHARS: usize = 1200;

/// The page for the `clusters` largest clusters of a run whose clusters stage has finished.
/// Reads the inputs once more for the texts of those clusters only.
pub fn explain(job: &DedupJob, clusters: usize) -> Result<String, DedupError> {
    let stats = read_stats(job)?;
    let removals = RecordFile::<RemovalRecord>::open(&job.work.join("clusters/removals.bin"))?;
    let mut by_keeper: BTreeMap<u64, Vec<RemovalRecord>> = BTreeMap::new();
    for r in removals.iter() {
        by_keeper.entry(r.keeper).or_default().push(r);
    }
    let mut largest: Vec<(u64, Vec<RemovalRecord>)> = by_keeper.into_iter().collect();
    largest.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    largest.truncate(clusters);
    for (_, members) in &mut largest {
        // The least similar first: those are the removals to check.
        members.sort_by(|a, b| a.similarity.total_cmp(&b.similarity).then(a.doc.cmp(&b.doc)));
    }
    let wanted: Vec<u64> =
        largest.iter().flat_map(|(k, m)| std::iter::once(*k).chain(m.iter().map(|r| r.doc))).collect();
    let texts = texts_of(job, &wanted)?;
    Ok(render(&stats, &largest, &texts))
}

/// (id, text) of each wanted document, reading only the input files that hold one.
fn texts_of(job: &DedupJob, wanted: &[u64]) -> Result<HashMap<u64, (String, String)>, DedupError> {
    let mut files: BTreeMap<usize, HashSet<u64>> = BTreeMap::new();
    for &doc in wanted {
        files.entry(file_of(doc)).or_default().insert(doc);
    }
    let mut texts = HashMap::new();
    for (file_index, docs) in files {
        let Some(path) = job.inputs.get(file_index) else { continue };
        for batch in read::open(path, &job.read)? {
            for d in batch?.documents {
                let doc = doc_number(file_index, d.row);
                if docs.contains(&doc) {
                    texts.insert(doc, (d.id, d.text));
                }
            }
        }
    }
    Ok(texts)
}

fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => {
            format!(
                "{}<span class=\"flag\"> … {} more characters</span>",
                escape(&text[..cut]),
                text[cut..].chars().count()
            )
        }
        None => escape(text),
    }
}

fn render(stats: &DedupStats, largest: &[(u64, Vec<RemovalRecord>)], texts: &HashMap<u64, (String, String)>) -> String {
    let mut body = format!(
        "<p>{} documents; {} exact and {} near duplicates removed in {} clusters; {} documents kept because \
         they are unlike the keeper their cluster links them to. The {} largest clusters follow, each \
         removal (least similar first) beside the document it was removed for.</p>\
         <style>td{{vertical-align:top;text-align:left;white-space:pre-wrap;font-size:12px}}</style>",
        stats.documents,
        stats.removed_exact,
        stats.removed_near,
        stats.clusters,
        stats.kept_unlike_keeper,
        largest.len()
    );
    let text = |doc: u64| texts.get(&doc).map_or(("?", "(not found in the inputs)"), |(i, t)| (i.as_str(), t.as_str()));
    for (keeper, members) in largest {
        let (keeper_id, keeper_text) = text(*keeper);
        let _ = write!(
            body,
            "<h2>{} removed for {}</h2><table><tr><th>similarity</th><th>removed</th><th>kept</th></tr>",
            members.len(),
            escape(keeper_id)
        );
        for (i, r) in members.iter().enumerate() {
            let (id, removed_text) = text(r.doc);
            let similarity = if r.similarity.is_nan() { "—".to_string() } else { format!("{:.3}", r.similarity) };
            let _ = write!(
                body,
                "<tr><td>{similarity}<br>{}</td><td><b>{}</b>\n{}</td>",
                r.reason.as_str(),
                escape(id),
                shown(removed_text)
            );
            if i == 0 {
                let _ = write!(
                    body,
                    "<td rowspan=\"{}\"><b>{}</b>\n{}</td>",
                    members.len(),
                    escape(keeper_id),
                    shown(keeper_text)
                );
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    page("Dedup: the largest clusters, removals beside their keepers", &body)
}
