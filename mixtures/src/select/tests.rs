use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, UInt64Array};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;

use super::*;

/// A shard's view for the rules: documents of `lengths` tokens, a sidecar with `tokens` and
/// the given score columns.
fn shard(dir: &Path, lengths: &[u32], columns: &[(&str, Vec<Option<f64>>)]) -> ShardInput {
    let path = dir.join("s.docs.parquet");
    let mut arrays: Vec<(&str, ArrayRef)> =
        vec![("tokens", Arc::new(UInt64Array::from(lengths.iter().map(|&l| l as u64).collect::<Vec<_>>())))];
    for (name, values) in columns {
        arrays.push((name, Arc::new(Float64Array::from(values.clone()))));
    }
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    ShardInput { dataset: 0, shard: 0, prefix: dir.join("s"), sidecar: Some(path), lengths: lengths.to_vec() }
}

fn rules(where_: Option<&str>, select: Option<(&str, f64)>, buckets: Option<(&str, usize)>) -> SubsetRules {
    SubsetRules {
        conditions: where_.map(|w| parse_where(w).unwrap()).unwrap_or_default(),
        select: select.map(|(by, top)| Select { by: by.into(), top }),
        buckets: buckets.map(|(by, count)| Buckets { by: by.into(), count }),
        ..Default::default()
    }
}

fn docs(part: &Part) -> Vec<u32> {
    part.picks.iter().map(|p| p.doc).collect()
}

#[test]
fn top_fraction_is_by_tokens_highest_first_and_skips_unscored_documents() {
    let dir = tempfile::tempdir().unwrap();
    // Documents 0..9 of 10 + i tokens and quality i / 10; document 10 has no score.
    let lengths: Vec<u32> = (0..11).map(|i| 10 + i).collect();
    let quality: Vec<Option<f64>> = (0..11).map(|i| (i < 10).then_some(i as f64 / 10.0)).collect();
    let s = shard(dir.path(), &lengths, &[("quality", quality)]);
    // 145 scored tokens; 30% is 43.5 → 44: documents 9, 8 (37 tokens) and 7, which crosses it.
    let parts = subset("web", &rules(None, Some(("quality", 0.3)), None), &[s]).unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(docs(&parts[0]), [7, 8, 9], "back in the dataset's order");
    let summary = &parts[0].summary;
    assert_eq!((summary.documents, summary.tokens, summary.unscored_documents), (3, 54, 1));
    assert_eq!((summary.domain_documents, summary.domain_tokens), (11, 165));
    assert_eq!((summary.score_min, summary.score_max), (Some(0.7), Some(0.9)));
    assert!(summary.describe().contains("top 30% of tokens by quality: 3 of 11 documents, 54 of 165 tokens"));
}

#[test]
fn where_conditions_all_hold_and_a_null_meets_none() {
    let dir = tempfile::tempdir().unwrap();
    let quality = vec![Some(0.9), Some(0.9), Some(0.2), None, Some(0.8)];
    let lang = vec![Some(0.7), Some(0.5), Some(0.9), Some(0.9), Some(0.66)];
    let s = shard(dir.path(), &[5; 5], &[("quality", quality), ("language_score", lang)]);
    let parts = subset("web", &rules(Some("quality >= 0.8 and language_score > 0.65"), None, None), &[s]).unwrap();
    assert_eq!(docs(&parts[0]), [0, 4]);
    for (bad, fragment) in [("quality >> 3", "COLUMN OP NUMBER"), ("quality >= high", "a number"), (">= 3", "OP")] {
        let err = parse_where(bad).unwrap_err();
        assert!(err.contains(fragment), "{bad}: {err}");
    }
}

#[test]
fn buckets_are_token_weighted_quantiles_with_ties_kept_together() {
    let dir = tempfile::tempdir().unwrap();
    // Eight documents of 10 tokens; documents 3 and 4 tie.
    let quality = [0.1, 0.2, 0.3, 0.4, 0.4, 0.6, 0.7, 0.8].map(Some).to_vec();
    let s = shard(dir.path(), &[10; 8], &[("quality", quality)]);
    let mut r = rules(None, None, Some(("quality", 4)));
    let parts = subset("web", &r, std::slice::from_ref(&s)).unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.bucket.as_deref().unwrap()).collect();
    assert_eq!(names, ["q00", "q01", "q02", "q03"]);
    let members: Vec<Vec<u32>> = parts.iter().map(docs).collect();
    // Document 3 starts at token 30 of 80 → bucket 1; its tie 4 follows it there.
    assert_eq!(members, [vec![0, 1], vec![2, 3, 4], vec![5], vec![6, 7]]);
    let shares: Vec<f64> = parts.iter().map(|p| p.share).collect();
    assert_eq!(shares, [0.25, 0.375, 0.125, 0.25], "without weights: each bucket's token share");
    assert_eq!((parts[1].summary.score_min, parts[1].summary.score_max), (Some(0.3), Some(0.4)));

    // A range's weight is split inside it by tokens; buckets left out get nothing.
    r.weights = Some(BTreeMap::from([("q02-q03".to_string(), 0.75), ("q00".to_string(), 0.25)]));
    let shares: Vec<f64> = subset("web", &r, std::slice::from_ref(&s)).unwrap().iter().map(|p| p.share).collect();
    assert_eq!(shares, [0.25, 0.0, 0.25, 0.5]);
    for (weights, fragment) in [
        (vec![("q03-q04", 1.0)], "the buckets are q00 to q03"),
        (vec![("q00-q01", 1.0), ("q01", 1.0)], "both name q01"),
        (vec![("top", 1.0)], "not a bucket"),
        (vec![("q01", 0.0)], "sum to zero"),
    ] {
        r.weights = Some(weights.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        let err = subset("web", &r, std::slice::from_ref(&s)).unwrap_err().to_string();
        assert!(err.contains(fragment), "{fragment}: {err}");
    }
    assert_eq!(bucket_name(7, 20), "q07");
    assert_eq!(bucket_name(7, 200), "q007");
}

#[test]
fn rehydration_repeats_documents_by_cluster_size_band() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [Some(1.0), Some(2.0), Some(4.0), Some(5.0), Some(12.0), None].to_vec();
    let s = shard(dir.path(), &[3, 3, 3, 3, 3, 7], &[(CLUSTER_SIZE, sizes)]);
    let table = BTreeMap::from([("2-4".to_string(), 2), ("5-9".to_string(), 3), ("10+".to_string(), 4)]);
    let r = SubsetRules { rehydrate: parse_rehydrate(&table).unwrap(), ..Default::default() };
    let parts = subset("web", &r, &[s]).unwrap();
    let copies: Vec<u32> = parts[0].picks.iter().map(|p| p.copies).collect();
    assert_eq!(copies, [1, 2, 2, 3, 4, 1], "a document without a cluster size counts as its own cluster");
    let bands: Vec<(String, u64, u64)> =
        parts[0].summary.rehydration.iter().map(|b| (b.band.clone(), b.documents, b.tokens)).collect();
    assert_eq!(bands, [("2-4".into(), 2, 6), ("5-9".into(), 1, 3), ("10+".into(), 1, 3)]);
    for (bad, fragment) in [
        (vec![("2-4", 2), ("4-6", 3)], "overlap"),
        (vec![("0-3", 2)], "not a cluster-size band"),
        (vec![("two", 2)], "not a cluster-size band"),
        (vec![("3", 0)], "at least once"),
    ] {
        let table: BTreeMap<String, u32> = bad.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let err = parse_rehydrate(&table).unwrap_err();
        assert!(err.contains(fragment), "{fragment}: {err}");
    }
}

#[test]
fn a_missing_column_names_the_sidecar_and_what_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = shard(dir.path(), &[3, 3], &[("quality", vec![Some(0.5), Some(0.6)])]);
    let table = BTreeMap::from([("2+".to_string(), 2)]);
    let r = SubsetRules { rehydrate: parse_rehydrate(&table).unwrap(), ..Default::default() };
    let err = subset("web", &r, std::slice::from_ref(&s)).unwrap_err().to_string();
    assert!(err.contains("s.docs.parquet") && err.contains("cluster_size") && err.contains("dedup"), "{err}");
    assert!(err.contains("tokens, quality"), "lists the columns it has: {err}");
    let mut short = s;
    short.lengths.push(4);
    let err = subset("web", &rules(None, Some(("quality", 0.5)), None), &[short]).unwrap_err().to_string();
    assert!(err.contains("2 rows") && err.contains("3 documents"), "{err}");
}
