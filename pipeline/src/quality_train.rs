//! Training a fastText quality classifier (the DCLM recipe): high-quality reference text as
//! positives (`__label__hq`), random web text as negatives (`__label__lq`), a held-out split for
//! precision and recall.
//!
//! Documents stream from the readers into training files on disk; memory holds one batch at a
//! time plus the held-out texts. The split is a hash of the document id and the seed, so it does
//! not depend on input order. Classes are interleaved line by line for SGD. With one thread the
//! model is byte-for-byte reproducible (fastText's multi-threaded SGD is not).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use fasttext::FastText;
use fasttext::args::Args;
use serde::Serialize;

use crate::read::{self, ReadError, ReadOptions};

#[derive(Debug, thiserror::Error)]
pub enum QualityTrainError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("holdout {0} must be in [0, 1)")]
    Holdout(f64),
    #[error("need training documents in both classes (positive {positive}, negative {negative})")]
    EmptyClass { positive: usize, negative: usize },
    #[error("fastText {action}: {source}")]
    FastText {
        action: &'static str,
        #[source]
        source: fasttext::FastTextError,
    },
    #[error("{path}: fastText could not save the model: {source}")]
    Save {
        path: PathBuf,
        #[source]
        source: fasttext::FastTextError,
    },
}

#[derive(Clone, Debug, Default)]
pub struct QualityTrainOptions {
    pub positive: Vec<PathBuf>,
    pub negative: Vec<PathBuf>,
    pub read: ReadOptions,
    pub settings: QualitySettings,
}

/// How the classifier is trained (`midtrain quality train`'s flags, defaults only here).
#[derive(Clone, Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct QualitySettings {
    /// Share of documents held out for precision/recall.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().holdout))]
    pub holdout: f64,
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().seed))]
    pub seed: u64,
    /// Use at most this many documents per class (the first ones read).
    #[cfg_attr(feature = "cli", arg(long))]
    pub max_per_class: Option<usize>,
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().epochs))]
    pub epochs: i32,
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().dim))]
    pub dim: i32,
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().lr))]
    pub lr: f64,
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().word_ngrams))]
    pub word_ngrams: i32,
    /// Training threads (1 = reproducible model).
    #[cfg_attr(feature = "cli", arg(long, default_value_t = QualitySettings::default().threads))]
    pub threads: i32,
}

impl Default for QualitySettings {
    fn default() -> Self {
        Self { holdout: 0.1, seed: 0, max_per_class: None, epochs: 5, dim: 64, lr: 0.1, word_ngrams: 2, threads: 1 }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassCounts {
    pub hq: usize,
    pub lq: usize,
}

/// Held-out evaluation of the `hq` label (predicted when its probability is ≥ 0.5).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityReport {
    pub model: PathBuf,
    pub train: ClassCounts,
    pub heldout: ClassCounts,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub accuracy: f64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QualityTrainError + '_ {
    move |source| QualityTrainError::Io { path: path.to_path_buf(), source }
}

/// One line of fastText input: no newlines, no label-looking tokens.
fn clean(text: &str) -> String {
    text.split_whitespace().filter(|w| !w.starts_with("__label__")).collect::<Vec<_>>().join(" ")
}

fn is_heldout(id: &str, seed: u64, share: f64) -> bool {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), seed);
    (h as f64 / u64::MAX as f64) < share
}

/// Write one class's training lines to `train`, and return its held-out texts.
fn collect_class(
    inputs: &[PathBuf],
    label: &str,
    options: &QualityTrainOptions,
    train: &Path,
) -> Result<(usize, Vec<String>), QualityTrainError> {
    let mut out = BufWriter::new(File::create(train).map_err(io_err(train))?);
    let (mut trained, mut heldout, mut used) = (0, Vec::new(), 0usize);
    'files: for input in inputs {
        for batch in read::open(input, &options.read)? {
            for doc in batch?.documents {
                if options.settings.max_per_class.is_some_and(|m| used >= m) {
                    break 'files;
                }
                let line = clean(&doc.text);
                if line.is_empty() {
                    continue;
                }
                used += 1;
                if is_heldout(&doc.id, options.settings.seed, options.settings.holdout) {
                    heldout.push(line);
                } else {
                    writeln!(out, "__label__{label} {line}").map_err(io_err(train))?;
                    trained += 1;
                }
            }
        }
    }
    out.flush().map_err(io_err(train))?;
    Ok((trained, heldout))
}

/// Train on the two classes and write the model to `out` (fastText `.bin`).
pub fn train_quality_classifier(options: &QualityTrainOptions, out: &Path) -> Result<QualityReport, QualityTrainError> {
    if !(0.0..1.0).contains(&options.settings.holdout) {
        return Err(QualityTrainError::Holdout(options.settings.holdout));
    }
    let work = tempfile::Builder::new()
        .prefix(".quality-train-")
        .tempdir_in(out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
        .map_err(io_err(out))?;
    let (pos_path, neg_path) = (work.path().join("hq.txt"), work.path().join("lq.txt"));
    let (hq_train, hq_test) = collect_class(&options.positive, "hq", options, &pos_path)?;
    let (lq_train, lq_test) = collect_class(&options.negative, "lq", options, &neg_path)?;
    if hq_train == 0 || lq_train == 0 {
        return Err(QualityTrainError::EmptyClass { positive: hq_train, negative: lq_train });
    }
    // Interleave the classes so SGD never sees a long run of one label.
    let train_path = work.path().join("train.txt");
    {
        let mut train = BufWriter::new(File::create(&train_path).map_err(io_err(&train_path))?);
        let mut a = BufReader::new(File::open(&pos_path).map_err(io_err(&pos_path))?).lines();
        let mut b = BufReader::new(File::open(&neg_path).map_err(io_err(&neg_path))?).lines();
        let (mut a_done, mut b_done) = (false, false);
        while !(a_done && b_done) {
            for (lines, done, path) in [(&mut a, &mut a_done, &pos_path), (&mut b, &mut b_done, &neg_path)] {
                match lines.next() {
                    Some(line) => writeln!(train, "{}", line.map_err(io_err(path))?).map_err(io_err(&train_path))?,
                    None => *done = true,
                }
            }
        }
        train.flush().map_err(io_err(&train_path))?;
    }
    let mut args = Args::default();
    args.apply_supervised_defaults();
    args.input = train_path;
    args.epoch = options.settings.epochs;
    args.dim = options.settings.dim;
    args.lr = options.settings.lr;
    args.word_ngrams = options.settings.word_ngrams;
    args.bucket = if options.settings.word_ngrams > 1 { 2_000_000 } else { 0 };
    args.thread = options.settings.threads.max(1);
    args.seed = options.settings.seed as i32;
    args.verbose = 0;
    let model = FastText::train(args).map_err(|source| QualityTrainError::FastText { action: "training", source })?;
    let tmp = util::fsutil::temp_path(out);
    model.save_model(&tmp).map_err(|source| QualityTrainError::Save { path: out.to_path_buf(), source })?;
    util::fsutil::durable_rename(&tmp, out).map_err(io_err(out))?;

    let says_hq = |text: &str| {
        let best = model.predict(text, 2, 0.0);
        best.iter().find(|p| p.label == "__label__hq").is_some_and(|p| p.prob >= 0.5)
    };
    let tp = hq_test.iter().filter(|t| says_hq(t)).count() as f64;
    let fp = lq_test.iter().filter(|t| says_hq(t)).count() as f64;
    let (fn_, tn) = (hq_test.len() as f64 - tp, lq_test.len() as f64 - fp);
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    Ok(QualityReport {
        model: out.to_path_buf(),
        train: ClassCounts { hq: hq_train, lq: lq_train },
        heldout: ClassCounts { hq: hq_test.len(), lq: lq_test.len() },
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        accuracy: ratio(tp + tn, tp + tn + fp + fn_),
    })
}
