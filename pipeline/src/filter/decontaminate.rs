//! Benchmark decontamination: a document that holds an evaluation item goes (or is marked).
//!
//! Items and documents are compared as words after FineWeb's normalisation with numbers kept
//! (lowercase, punctuation to spaces, accents stripped: an edited copy still matches, and "3 + 4"
//! stays unlike "5 + 6"). An item of at least `ngram` words matches through any of its word
//! n-grams; a shorter one (from `min_item_words`) through its whole text, so short questions are
//! not missed. An n-gram shared by more than `max_items_per_ngram` items is a phrase of the
//! benchmark's template, not of one item: it does not match alone. With `require_answer`, a match
//! counts only when the item's answer is in the document too.
//!
//! Boilerplate: an item can hold a phrase that is common in the corpus itself (a licence line, a
//! site's footer, a stock sentence) and would flag every document that has it. Before matching,
//! the first `boilerplate_documents` documents of `boilerplate` (prepare and `midtrain
//! decontaminate`: the inputs, the same sample for every task) are searched for the items'
//! n-grams; one held by more than `max_boilerplate_share` of them (and by at least 3) does not
//! match alone, nor does a short item found whole that often. A sample document that holds half
//! of an item's n-grams or more is a copy of the item, not evidence of boilerplate, so an item
//! copied all over the corpus is still found.
//!
//! Memory: 16 bytes per distinct item n-gram (and, while the sample is read, one batch of it and a
//! count per item n-gram it holds) plus each item's id, answer and benchmark, so a
//! 10k-item set of 100-word items takes about 20 MB; documents are checked one at a time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::{Filter, FilterError, Verdict};
use crate::dedup::normalize::words_keeping_numbers;
use crate::document::{Document, OutputColumn};
use crate::file_error::FileError;

/// What happens to a contaminated document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Removed, with the benchmark, item and matched words as the reason.
    #[default]
    Remove,
    /// Kept, with a `contamination` label naming the benchmark and item.
    Mark,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontaminateConfig {
    /// Evaluation sets (parquet or jsonl), one item per row, as `NAME=PATH` or a path whose file
    /// name up to its first dot names the benchmark (see [`eval_set`]).
    pub against: Vec<PathBuf>,
    /// Columns joined into an item's text (dotted names reach into jsonl objects).
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
    /// The item's id column (default `id`; the row number where there is none).
    #[serde(default = "default_id_column")]
    pub id_column: String,
    /// The answer column, for `require_answer` (its text is part of the item when listed in
    /// `columns`).
    #[serde(default)]
    pub answer_column: Option<String>,
    /// Count a match only when the item's answer is in the document too.
    #[serde(default)]
    pub require_answer: bool,
    /// Words per n-gram.
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Items with fewer words are not matched (too generic to mean contamination).
    #[serde(default = "default_min_item_words")]
    pub min_item_words: usize,
    /// An n-gram in more items than this is template text: it does not match alone.
    #[serde(default = "default_max_items_per_ngram")]
    pub max_items_per_ngram: usize,
    #[serde(default)]
    pub mode: Mode,
    /// Documents (files or globs, parquet or jsonl) whose common phrases do not match alone;
    /// `None` in a prepare config or on the command line means the inputs; empty: no sample.
    #[serde(default)]
    pub boilerplate: Option<Vec<PathBuf>>,
    /// The text column of the boilerplate documents.
    #[serde(default = "default_text_column")]
    pub boilerplate_text_column: String,
    /// How many boilerplate documents are read, spread evenly over the files' beginnings.
    #[serde(default = "default_boilerplate_documents")]
    pub boilerplate_documents: usize,
    /// An n-gram in more than this share of the sample's documents is boilerplate.
    #[serde(default = "default_max_boilerplate_share")]
    pub max_boilerplate_share: f64,
}

fn default_columns() -> Vec<String> {
    vec!["text".into()]
}
fn default_id_column() -> String {
    "id".into()
}
fn default_ngram() -> usize {
    13
}
fn default_min_item_words() -> usize {
    5
}
fn default_max_items_per_ngram() -> usize {
    10
}
fn default_text_column() -> String {
    "text".into()
}
fn default_boilerplate_documents() -> usize {
    20_000
}
fn default_max_boilerplate_share() -> f64 {
    0.001
}

/// Sample documents that must hold an n-gram before it can be boilerplate, however small the
/// sample.
const MIN_BOILERPLATE_DOCUMENTS: usize = 3;

impl DecontaminateConfig {
    /// Items from `columns` of the `against` files; every other setting at its default.
    pub fn new(against: Vec<PathBuf>, columns: Vec<String>) -> Self {
        Self {
            against,
            columns,
            id_column: default_id_column(),
            answer_column: None,
            require_answer: false,
            ngram: default_ngram(),
            min_item_words: default_min_item_words(),
            max_items_per_ngram: default_max_items_per_ngram(),
            mode: Mode::Remove,
            boilerplate: None,
            boilerplate_text_column: default_text_column(),
            boilerplate_documents: default_boilerplate_documents(),
            max_boilerplate_share: default_max_boilerplate_share(),
        }
    }

    pub fn check(&self) -> Result<(), FilterError> {
        let bad = |m: &str| Err(FilterError::Config(format!("decontaminate: {m}")));
        if self.against.is_empty() {
            return bad("against lists no evaluation set");
        }
        if self.columns.is_empty() {
            return bad("columns is empty: name the item's text columns");
        }
        if self.ngram == 0 || self.min_item_words == 0 {
            return bad("ngram and min_item_words must be at least 1");
        }
        if self.require_answer && self.answer_column.is_none() {
            return bad("require_answer needs answer_column");
        }
        if !(0.0..=1.0).contains(&self.max_boilerplate_share) {
            return bad("max_boilerplate_share must be a share, from 0 to 1");
        }
        Ok(())
    }
}

/// One evaluation item, as its removals name it.
struct Item {
    benchmark: usize,
    id: String,
    /// Normalised answer, padded with spaces (for whole-word search).
    answer: Option<String>,
    /// Distinct n-grams of the item (0 for a short item).
    ngrams: u32,
}

/// What the boilerplate sample showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoilerplateSample {
    /// Documents read.
    pub documents: usize,
    /// Item n-grams (and short items) held by too many of them: they do not match alone.
    pub ngrams: usize,
    pub short_items: usize,
}

pub struct DecontaminateFilter {
    config: DecontaminateConfig,
    benchmarks: Vec<String>,
    items: Vec<Item>,
    /// n-gram hash → (first item, number of items holding it).
    long: PrehashedMap<(u32, u32)>,
    /// Hash of the first `min_item_words` words of each short item → (its words, hash of them
    /// all, item), shortest first: one pass over a document finds every short item.
    short: PrehashedMap<Vec<(usize, u64, u32)>>,
    /// n-grams common in the boilerplate sample.
    common: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Short items found whole in too many sample documents.
    common_short: HashSet<u32>,
    sample: BoilerplateSample,
}

/// The keys are hashes already: a map over them needs no second hash (SipHash was most of the
/// time spent per document).
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, &b| h.rotate_left(8) ^ u64::from(b));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type PrehashedMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;

fn words(normalised: &str) -> Vec<&str> {
    normalised.split(' ').filter(|w| !w.is_empty()).collect()
}

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

/// Hashes of every run of `n` consecutive words, by a rolling polynomial over word hashes.
fn run_hashes(word_hashes: &[u64], n: usize) -> Vec<u64> {
    if n == 0 || word_hashes.len() < n {
        return Vec::new();
    }
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(MULTIPLIER));
    let mut h = run_hash(&word_hashes[..n]);
    let mut out = vec![h];
    for i in n..word_hashes.len() {
        h = h.wrapping_sub(word_hashes[i - n].wrapping_mul(top)).wrapping_mul(MULTIPLIER).wrapping_add(word_hashes[i]);
        out.push(h);
    }
    out
}

/// The hash [`run_hashes`] gives a run of exactly these words.
fn run_hash(word_hashes: &[u64]) -> u64 {
    word_hashes.iter().fold(0u64, |h, &w| h.wrapping_mul(MULTIPLIER).wrapping_add(w))
}

fn hash_words(words: &[&str]) -> Vec<u64> {
    words.iter().map(|w| xxh3_64(w.as_bytes())).collect()
}

/// The benchmark name and the file of an `against` entry: `NAME=PATH` (NAME of letters, digits,
/// `_` and `-`), or a path named by its file name up to the first dot (`gsm8k.test.jsonl` is
/// `gsm8k`).
pub fn eval_set(entry: &Path) -> (String, PathBuf) {
    let text = entry.to_string_lossy();
    if let Some((name, path)) = text.split_once('=')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return (name.to_string(), PathBuf::from(path));
    }
    let file = entry.file_name().and_then(|n| n.to_str()).unwrap_or("eval");
    (file.split('.').next().unwrap_or(file).to_string(), entry.to_path_buf())
}

/// An `against` entry with its path resolved against `base`, its name kept.
pub fn resolve_eval_set(base: &Path, entry: &Path) -> PathBuf {
    match eval_set(entry) {
        (name, path) if entry.to_string_lossy().starts_with(&format!("{name}=")) => {
            PathBuf::from(format!("{name}={}", util::fsutil::resolve_against(base, &path).display()))
        }
        _ => util::fsutil::resolve_against(base, entry),
    }
}

/// Pass the first `documents` documents of `files` (globs expanded) to `each`, a batch at a
/// time, as evenly from each file as their lengths allow, in file order: the same sample whichever
/// task reads it. Returns how many were read.
fn read_sample(
    files: &[PathBuf],
    text_column: &str,
    documents: usize,
    mut each: impl FnMut(&[crate::document::Document]),
) -> Result<usize, FilterError> {
    let patterns: Vec<String> = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    let files = crate::read::expand_inputs(&patterns).map_err(Box::new)?;
    let options = crate::read::ReadOptions {
        text_column: text_column.to_string(),
        id_column: None,
        url_column: None,
        ..Default::default()
    };
    let mut read = 0;
    for (i, path) in files.iter().enumerate() {
        // What earlier files could not give is asked of the later ones.
        let want = read + (documents - read).div_ceil(files.len() - i);
        for batch in crate::read::open(path, &options).map_err(Box::new)? {
            let batch = batch.map_err(Box::new)?;
            let take = batch.documents.len().min(want - read);
            each(&batch.documents[..take]);
            read += take;
            if read >= want {
                break;
            }
        }
        if read >= documents {
            break;
        }
    }
    Ok(read)
}

/// (id, text, answer) of each row of an evaluation set.
type Row = (Option<String>, String, Option<String>);

fn read_items(path: &Path, config: &DecontaminateConfig) -> Result<Vec<Row>, FilterError> {
    let is_parquet = path.extension().is_some_and(|e| e == "parquet");
    if is_parquet { read_parquet(path, config) } else { read_jsonl(path, config) }
}

fn read_parquet(path: &Path, config: &DecontaminateConfig) -> Result<Vec<Row>, FilterError> {
    let file = File::open(path).map_err(FileError::at(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(FileError::at(path))?;
    let schema = builder.schema().clone();
    let index = |name: &str| schema.index_of(name).ok();
    let missing = config.columns.iter().find(|c| index(c).is_none());
    if let Some(column) = missing {
        return Err(FilterError::Config(format!("{}: decontaminate: no column {column:?}", path.display())));
    }
    let mut wanted: BTreeSet<usize> = config.columns.iter().filter_map(|c| index(c)).collect();
    wanted.extend(index(&config.id_column));
    wanted.extend(config.answer_column.as_deref().and_then(index));
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let mut rows = Vec::new();
    for batch in builder.with_projection(mask).build().map_err(FileError::at(path))? {
        let batch = batch.map_err(FileError::at(path))?;
        let column = |name: &str| batch.column_by_name(name).map(|a| column_texts(path, name, a)).transpose();
        let texts = config.columns.iter().map(|c| column(c)).collect::<Result<Vec<_>, _>>()?;
        let ids = column(&config.id_column)?;
        let answers = config.answer_column.as_deref().map(column).transpose()?.flatten();
        for i in 0..batch.num_rows() {
            let text = texts.iter().flatten().filter_map(|c| c[i].clone()).collect::<Vec<_>>().join("\n");
            let at = |c: &Option<Vec<Option<String>>>| c.as_ref().and_then(|c| c[i].clone());
            rows.push((at(&ids), text, at(&answers)));
        }
    }
    Ok(rows)
}

/// Each row's text in one column: strings as they are, lists (a question's choices) one item per
/// line, numbers as written.
fn column_texts(path: &Path, name: &str, array: &ArrayRef) -> Result<Vec<Option<String>>, FilterError> {
    let list_item = |i: usize| match array.data_type() {
        DataType::List(_) => Some(array.as_list::<i32>().value(i)),
        DataType::LargeList(_) => Some(array.as_list::<i64>().value(i)),
        _ => None,
    };
    if matches!(array.data_type(), DataType::List(_) | DataType::LargeList(_)) {
        let mut out = Vec::with_capacity(array.len());
        for i in 0..array.len() {
            let item = list_item(i).filter(|_| !array.is_null(i));
            out.push(match item {
                Some(values) => {
                    Some(column_texts(path, name, &values)?.into_iter().flatten().collect::<Vec<_>>().join("\n"))
                }
                None => None,
            });
        }
        return Ok(out);
    }
    let text = arrow::compute::cast(array, &DataType::Utf8).map_err(|_| {
        FilterError::Config(format!(
            "{}: decontaminate: column {name:?} is {}, not text",
            path.display(),
            array.data_type()
        ))
    })?;
    let text = text.as_string::<i32>();
    Ok((0..text.len()).map(|i| (!text.is_null(i)).then(|| text.value(i).to_string())).collect())
}

fn read_jsonl(path: &Path, config: &DecontaminateConfig) -> Result<Vec<Row>, FilterError> {
    let file = File::open(path).map_err(FileError::at(path))?;
    let field = |v: &serde_json::Value, name: &str| -> Option<String> {
        let v = name.split('.').try_fold(v, |v, key| v.get(key))?;
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            other => Some(other.to_string()),
        }
    };
    let mut rows = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(FileError::at(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| FilterError::Config(format!("{}: line {}: {e}", path.display(), n + 1)))?;
        let text = config.columns.iter().filter_map(|c| field(&v, c)).collect::<Vec<_>>().join("\n");
        let answer = config.answer_column.as_deref().and_then(|c| field(&v, c));
        rows.push((field(&v, &config.id_column), text, answer));
    }
    Ok(rows)
}

impl DecontaminateFilter {
    pub fn new(config: &DecontaminateConfig) -> Result<Self, FilterError> {
        config.check()?;
        let mut filter = Self {
            config: config.clone(),
            benchmarks: Vec::new(),
            items: Vec::new(),
            long: PrehashedMap::default(),
            short: PrehashedMap::default(),
            common: HashSet::default(),
            common_short: HashSet::new(),
            sample: BoilerplateSample::default(),
        };
        for entry in &config.against {
            let benchmark = filter.benchmarks.len();
            let (name, path) = eval_set(entry);
            filter.benchmarks.push(name);
            for (row, (id, text, answer)) in read_items(&path, config)?.into_iter().enumerate() {
                filter.add(benchmark, id.unwrap_or_else(|| format!("row {row}")), &text, answer.as_deref());
            }
        }
        if let Some(files) = config.boilerplate.as_deref().filter(|f| !f.is_empty() && config.boilerplate_documents > 0)
        {
            filter.learn_boilerplate(files, &config.boilerplate_text_column, config.boilerplate_documents)?;
        }
        Ok(filter)
    }

    /// What the boilerplate sample showed (all zero without one).
    pub fn boilerplate(&self) -> BoilerplateSample {
        self.sample
    }

    /// Sample documents an n-gram may be in and still match alone.
    fn limit(&self, documents: usize) -> usize {
        ((self.config.max_boilerplate_share * documents as f64) as usize).max(MIN_BOILERPLATE_DOCUMENTS - 1)
    }

    /// Count, over the sample, the documents that hold each item n-gram (or short item) without
    /// being a copy of the item; mark those held by too many.
    /// The sample is read a batch at a time: memory holds one batch and the counts (one per
    /// distinct item n-gram the sample holds).
    fn learn_boilerplate(&mut self, files: &[PathBuf], text_column: &str, documents: usize) -> Result<(), FilterError> {
        use rayon::prelude::*;
        let (mut grams, mut short) = (PrehashedMap::<u32>::default(), HashMap::<u32, u32>::new());
        let read = read_sample(files, text_column, documents, |batch| {
            let hits: Vec<(Vec<u64>, Vec<u32>)> = batch.par_iter().map(|d| self.sample_hits(&d.text)).collect();
            for (g, s) in &hits {
                g.iter().for_each(|&g| *grams.entry(g).or_default() += 1);
                s.iter().for_each(|&i| *short.entry(i).or_default() += 1);
            }
        })?;
        let limit = self.limit(read) as u32;
        self.common = grams.into_iter().filter(|&(_, n)| n > limit).map(|(g, _)| g).collect();
        self.common_short = short.into_iter().filter(|&(_, n)| n > limit).map(|(i, _)| i).collect();
        self.sample =
            BoilerplateSample { documents: read, ngrams: self.common.len(), short_items: self.common_short.len() };
        Ok(())
    }

    /// The item n-grams a sample document holds (leaving out those of items it holds half or
    /// more of: a copy), and the short items it holds whole.
    fn sample_hits(&self, text: &str) -> (Vec<u64>, Vec<u32>) {
        let text = words_keeping_numbers(text);
        let hashes = hash_words(&words(&text));
        let mut hits: Vec<(u32, u64)> = run_hashes(&hashes, self.config.ngram)
            .into_iter()
            .filter_map(|g| self.long.get(&g).map(|&(item, _)| (item, g)))
            .collect();
        hits.sort_unstable();
        hits.dedup();
        let mut grams = Vec::new();
        for same in hits.chunk_by(|a, b| a.0 == b.0) {
            if (same.len() as u64) * 2 < u64::from(self.items[same[0].0 as usize].ngrams) {
                grams.extend(same.iter().map(|&(_, g)| g));
            }
        }
        let mut short: Vec<u32> = self.short_items_in(&hashes).map(|(_, _, item)| item).collect();
        short.sort_unstable();
        short.dedup();
        (grams, short)
    }

    /// (position, words, item) of every short item found whole in a document's word hashes, in
    /// word order (shortest first at a position).
    fn short_items_in<'a>(&'a self, hashes: &'a [u64]) -> impl Iterator<Item = (usize, usize, u32)> + 'a {
        let prefixes = if self.short.is_empty() { Vec::new() } else { run_hashes(hashes, self.config.min_item_words) };
        prefixes.into_iter().enumerate().flat_map(move |(at, prefix)| {
            self.short
                .get(&prefix)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter(move |&&(n, whole, _)| at + n <= hashes.len() && run_hash(&hashes[at..at + n]) == whole)
                .map(move |&(n, _, item)| (at, n, item))
        })
    }

    fn add(&mut self, benchmark: usize, id: String, text: &str, answer: Option<&str>) {
        let text = words_keeping_numbers(text);
        let words = words(&text);
        if words.len() < self.config.min_item_words {
            return;
        }
        let index = self.items.len() as u32;
        let answer = answer.map(|a| format!(" {} ", words_keeping_numbers(a))).filter(|a| !a.trim().is_empty());
        self.items.push(Item { benchmark, id, answer, ngrams: 0 });
        let hashes = hash_words(&words);
        if words.len() < self.config.ngram {
            let prefix = run_hash(&hashes[..self.config.min_item_words]);
            let entry = (words.len(), run_hash(&hashes), index);
            let same = self.short.entry(prefix).or_default();
            if !same.iter().any(|&(n, whole, _)| (n, whole) == (entry.0, entry.1)) {
                same.push(entry);
                same.sort_unstable();
            }
            return;
        }
        let mut grams = run_hashes(&hashes, self.config.ngram);
        grams.sort_unstable();
        grams.dedup();
        self.items[index as usize].ngrams = grams.len() as u32;
        for g in grams {
            self.long.entry(g).and_modify(|(_, count)| *count += 1).or_insert((index, 1));
        }
    }

    /// The first item the document holds (in word order), and the words that matched.
    fn find(&self, text: &str) -> Option<(&Item, String)> {
        let text = words_keeping_numbers(text);
        let words = words(&text);
        let hashes = hash_words(&words);
        let padded = std::cell::OnceCell::new();
        let confirmed = |item: &Item| match (&item.answer, self.config.require_answer) {
            (Some(answer), true) => padded.get_or_init(|| format!(" {text} ")).contains(answer.as_str()),
            (None, true) => false,
            (_, false) => true,
        };
        let span = |at: usize, n: usize| words[at..at + n].join(" ");
        let mut best: Option<(usize, usize, u32)> = None; // (position, words, item)
        for (at, g) in run_hashes(&hashes, self.config.ngram).into_iter().enumerate() {
            if let Some(&(item, count)) = self.long.get(&g)
                && count as usize <= self.config.max_items_per_ngram
                && !self.common.contains(&g)
                && confirmed(&self.items[item as usize])
            {
                best = Some((at, self.config.ngram, item));
                break;
            }
        }
        for (at, n, item) in self.short_items_in(&hashes) {
            if best.is_some_and(|(b, _, _)| at >= b) {
                break;
            }
            if !self.common_short.contains(&item) && confirmed(&self.items[item as usize]) {
                best = Some((at, n, item));
                break;
            }
        }
        best.map(|(at, n, item)| (&self.items[item as usize], span(at, n)))
    }
}

impl Filter for DecontaminateFilter {
    fn name(&self) -> &str {
        "decontaminate"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let Some((item, span)) = self.find(&doc.text) else { return Verdict::Keep };
        let benchmark = &self.benchmarks[item.benchmark];
        match self.config.mode {
            Mode::Remove => Verdict::drop(format!("contaminated_{benchmark}: item {}: \"{span}\"", item.id)),
            Mode::Mark => {
                doc.set_label("contamination", format!("{benchmark}: item {}", item.id));
                Verdict::Mark(format!("contaminated_{benchmark}: item {}", item.id).into())
            }
        }
    }

    fn note(&self) -> Option<String> {
        let s = self.sample;
        (s.documents > 0).then(|| {
            format!(
                "decontaminate: {} item n-grams and {} short items are boilerplate in {} sample documents \
                 (held by more than {} of them): they do not match alone",
                s.ngrams,
                s.short_items,
                s.documents,
                self.limit(s.documents)
            )
        })
    }

    fn outputs(&self) -> Vec<OutputColumn> {
        match self.config.mode {
            Mode::Remove => Vec::new(),
            Mode::Mark => vec![OutputColumn::Label("contamination")],
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn filter(
        items: &[(&str, &str, &str)],
        tweak: impl FnOnce(&mut DecontaminateConfig),
    ) -> (tempfile::TempDir, DecontaminateFilter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gsm8k.jsonl");
        let lines: Vec<String> = items
            .iter()
            .map(|(id, q, a)| serde_json::json!({ "id": id, "question": q, "answer": a }).to_string())
            .collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        let mut config = DecontaminateConfig {
            answer_column: Some("answer".into()),
            ngram: 8,
            min_item_words: 4,
            max_items_per_ngram: 2,
            ..DecontaminateConfig::new(vec![path], vec!["question".into()])
        };
        tweak(&mut config);
        let f = DecontaminateFilter::new(&config).unwrap();
        (dir, f)
    }

    fn verdict(f: &DecontaminateFilter, text: &str) -> Verdict {
        f.apply(&mut Document::new("d".into(), text.into(), Arc::from("x"), 0))
    }

    const LONG: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.";

    #[test]
    fn verbatim_edited_and_embedded_items_are_found() {
        let (_dir, f) = filter(&[("q1", LONG, "72"), ("q2", "What is 17 times 23?", "391")], |_| {});
        let Verdict::Drop(reason) = verdict(&f, LONG) else { panic!("verbatim missed") };
        assert!(reason.starts_with("contaminated_gsm8k: item q1: \"natalia sold clips"), "{reason}");
        let edited =
            "NATALIA sold clips -- to 48 of her friends in April; and then she sold half as many clips in May!";
        assert!(matches!(verdict(&f, edited), Verdict::Drop(_)), "case and punctuation changed");
        let embedded =
            format!("Here is a worked example from a tutoring site. {LONG} The answer is 72. Thanks for reading.");
        assert!(matches!(verdict(&f, &embedded), Verdict::Drop(_)), "embedded");
        // A changed number breaks only the n-grams that hold it.
        let other = LONG.replace("48", "36");
        assert_eq!(verdict(&f, "Natalia sold clips to 36 of her friends in April."), Verdict::Keep);
        assert!(matches!(verdict(&f, &other), Verdict::Drop(_)), "8 words after the number still match");
    }

    #[test]
    fn items_shorter_than_n_match_as_a_whole() {
        let (_dir, f) = filter(&[("q2", "What is 17 times 23?", "391"), ("q3", "Name it", "x")], |_| {});
        let Verdict::Drop(reason) = verdict(&f, "Quiz time. What is 17 times 23? Think.") else {
            panic!("short item missed")
        };
        assert_eq!(reason, "contaminated_gsm8k: item q2: \"what is 17 times 23\"");
        assert_eq!(verdict(&f, "What is 17 times 24?"), Verdict::Keep);
        assert_eq!(verdict(&f, "Name it now."), Verdict::Keep, "items under min_item_words are not matched");
    }

    #[test]
    fn with_require_answer_a_question_alone_does_not_count() {
        let (_dir, f) = filter(&[("q1", LONG, "72")], |c| c.require_answer = true);
        assert_eq!(verdict(&f, LONG), Verdict::Keep);
        assert!(matches!(verdict(&f, &format!("{LONG} So the total is 72 clips.")), Verdict::Drop(_)));
        assert_eq!(verdict(&f, &format!("{LONG} So the total is 720 clips.")), Verdict::Keep, "whole words only");
    }

    #[test]
    fn template_phrases_shared_by_many_items_do_not_match_alone() {
        let template = "Read the passage carefully and then choose the best answer below:";
        let items: Vec<(String, String)> =
            (0..3).map(|i| (format!("t{i}"), format!("{template} passage number {i} is about topic {i}."))).collect();
        let refs: Vec<(&str, &str, &str)> = items.iter().map(|(id, q)| (id.as_str(), q.as_str(), "")).collect();
        let (_dir, f) = filter(&refs, |_| {});
        assert_eq!(verdict(&f, &format!("Instructions. {template} Good luck.")), Verdict::Keep);
        assert!(matches!(verdict(&f, &items[1].1), Verdict::Drop(_)), "an item's own words still match");
    }

    #[test]
    fn phrases_common_in_the_boilerplate_sample_do_not_match_alone() {
        let footer = "This page is shared under the terms of the creative commons attribution share alike licence";
        let question = "What is the smallest prime number that is greater than forty and less than fifty";
        let item = format!("{footer}. {question}?");
        let short = "click here to read more";
        // 50 sample documents: the footer or the short phrase beside other text, and 40 verbatim
        // copies of LONG (a widely copied item is contamination, not boilerplate).
        let dir = tempfile::tempdir().unwrap();
        let sample = dir.path().join("web.jsonl");
        let lines: Vec<String> = (0..50)
            .map(|i| {
                let text = match i % 5 {
                    0 => format!("Recipe {i}: bake the bread for an hour. {footer}. {short}."),
                    _ => format!("Post {i}. {LONG} Posted by a reader."),
                };
                serde_json::json!({ "text": text }).to_string()
            })
            .collect();
        std::fs::write(&sample, lines.join("\n")).unwrap();
        let items = [("b1", item.as_str(), "43"), ("q1", LONG, "72"), ("s1", short, "")];
        let with_sample = |c: &mut DecontaminateConfig| c.boilerplate = Some(vec![sample.clone()]);
        let (_d1, f) = filter(&items, with_sample);
        // The footer's 8-grams are in 10 sample documents (limit: more than 2); LONG's are in 40,
        // but each of those holds all of LONG.
        let s = f.boilerplate();
        assert_eq!((s.documents, s.short_items), (50, 1));
        assert!(s.ngrams >= 8, "{s:?}");
        let page = format!("A new recipe for soup. {footer}. Enjoy.");
        assert_eq!(verdict(&f, &page), Verdict::Keep, "boilerplate alone");
        assert_eq!(verdict(&f, &format!("Links. {short}. More links.")), Verdict::Keep, "a common short item");
        let Verdict::Drop(reason) = verdict(&f, &format!("Quiz. {question}? Think.")) else {
            panic!("the item's own words must still match")
        };
        assert!(reason.starts_with("contaminated_gsm8k: item b1: \"what is the smallest"), "{reason}");
        assert!(matches!(verdict(&f, LONG), Verdict::Drop(_)), "copied all over the sample, still found");
        assert!(f.note().unwrap().contains("are boilerplate in 50 sample documents (held by more than 2"));

        // Without the sample the footer and the short phrase flag documents.
        let (_d2, plain) = filter(&items, |_| {});
        assert!(matches!(verdict(&plain, &page), Verdict::Drop(_)));
        assert!(matches!(verdict(&plain, &format!("Links. {short}. More links.")), Verdict::Drop(_)));
        assert_eq!(plain.note(), None);
    }

    #[test]
    fn an_eval_set_can_be_named() {
        assert_eq!(eval_set(Path::new("evals/gsm8k.test.jsonl")), ("gsm8k".into(), "evals/gsm8k.test.jsonl".into()));
        assert_eq!(eval_set(Path::new("mmlu=data/test-0.parquet")), ("mmlu".into(), "data/test-0.parquet".into()));
        assert_eq!(eval_set(Path::new("a/b=c.jsonl")).0, "b=c", "not a name: it holds a slash");
        let base = Path::new("/cfg");
        assert_eq!(resolve_eval_set(base, Path::new("mmlu=e/t.parquet")), PathBuf::from("mmlu=/cfg/e/t.parquet"));
        assert_eq!(resolve_eval_set(base, Path::new("e/gsm8k.jsonl")), PathBuf::from("/cfg/e/gsm8k.jsonl"));
        let (dir, _) = filter(&[("q1", LONG, "72")], |_| {});
        let named = DecontaminateConfig::new(
            vec![PathBuf::from(format!("gsm={}", dir.path().join("gsm8k.jsonl").display()))],
            vec!["question".into()],
        );
        let f = DecontaminateFilter::new(&named).unwrap();
        let Verdict::Drop(reason) = verdict(&f, LONG) else { panic!("missed") };
        assert!(reason.starts_with("contaminated_gsm: item q1"), "{reason}");
    }

    #[test]
    fn mark_mode_keeps_and_labels() {
        let (_dir, f) = filter(&[("q1", LONG, "72")], |c| c.mode = Mode::Mark);
        let mut doc = Document::new("d".into(), LONG.into(), Arc::from("x"), 0);
        assert_eq!(f.apply(&mut doc), Verdict::Mark("contaminated_gsm8k: item q1".into()));
        assert_eq!(doc.label("contamination"), Some("gsm8k: item q1"));
        assert_eq!(f.outputs(), vec![OutputColumn::Label("contamination")]);
    }

    #[test]
    fn parquet_eval_sets_join_text_and_list_columns_and_name_a_missing_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mmlu.parquet");
        let mut choices = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        for option in ["the mitochondria of the cell", "the nucleus", "the ribosome", "the membrane"] {
            choices.values().append_value(option);
        }
        choices.append(true);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(arrow::array::Int64Array::from(vec![7])),
            Arc::new(arrow::array::StringArray::from(vec![
                "Which part of a eukaryotic cell produces most of its energy?",
            ])),
            Arc::new(choices.finish()),
        ];
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", DataType::Int64, false),
            arrow::datatypes::Field::new("question", DataType::Utf8, false),
            arrow::datatypes::Field::new("choices", columns[2].data_type().clone(), true),
        ]));
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
        w.write(&arrow::array::RecordBatch::try_new(schema, columns).unwrap()).unwrap();
        w.close().unwrap();
        let config = |columns: &[&str]| {
            DecontaminateConfig::new(vec![path.clone()], columns.iter().map(|c| c.to_string()).collect())
        };
        let f = DecontaminateFilter::new(&config(&["question", "choices"])).unwrap();
        let doc = "Quiz: which part of a eukaryotic cell produces most of its energy? The mitochondria of the cell. \
                   The nucleus. The ribosome. The membrane.";
        let mut d = Document::new("d".into(), doc.into(), Arc::from("x"), 0);
        let Verdict::Drop(reason) = f.apply(&mut d) else { panic!("not found") };
        assert!(reason.starts_with("contaminated_mmlu: item 7: "), "{reason}");
        let err = DecontaminateFilter::new(&config(&["question", "missing"])).err().unwrap().to_string();
        assert!(err.contains("mmlu.parquet") && err.contains("\"missing\""), "{err}");
    }
}
