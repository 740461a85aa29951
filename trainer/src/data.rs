//! The data loader: a mixture's blended document order (or one dataset's documents) read from
//! memory-mapped shards, packed into samples of `seq_len + 1` tokens.
//!
//! Samples cross document boundaries as Megatron's do: each takes `seq_len` tokens and peeks one
//! more for the last target. With document masking, positions restart at every document and
//! attention stays inside it. A long/short mix draws whole samples from documents of at least
//! `long_min_tokens` for `long_fraction` of the tokens (largest-deficit choice per sample), the
//! rest from the short ones. The [`Cursor`] says where the next sample starts, so a run resumes
//! exactly; a thread packs ahead so the step never waits on I/O.
//!
//! Memory: 24 bytes per document of the order held in RAM (the corpus's training list and the
//! packer's short/long split of it, a 12-byte [`DocRef`] each; 36 while a mixture's order is
//! read), plus the prefetched batches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use anyhow::{Context, Result, bail, ensure};
use mixtures::build::Mixture;
use serde::{Deserialize, Serialize};
use shards::{ShardReader, TokenSource};

use crate::model::Batch;

/// A document (or its first `take` tokens) in a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocRef {
    pub shard: u32,
    pub doc: u32,
    pub take: u32,
}

/// The documents a run trains on, with a held-out set per domain.
pub struct Corpus {
    pub source: PathBuf,
    shards: Vec<ShardReader>,
    pub domains: Vec<String>,
    /// The training stream, in order.
    pub train: Vec<DocRef>,
    /// Per domain: documents kept out of training for the held-out loss.
    pub heldout: Vec<Vec<DocRef>>,
    /// The largest vocabulary of the tokenizers its datasets' manifests name (`None` for a bare
    /// shard).
    pub vocab_size: Option<usize>,
    /// What the data is, for a resume to recognise it: a mixture's order checksum, a dataset's
    /// manifest checksum, a bare shard's index checksum.
    pub identity: String,
}

impl Corpus {
    /// A mixture folder (`mixture.json`) or a prepared dataset / shard. The last `heldout_docs`
    /// documents of each domain never enter the training stream.
    pub fn open(path: &Path, heldout_docs: usize) -> Result<Self> {
        if path.join("mixture.json").is_file() {
            Self::open_mixture(path, heldout_docs)
        } else {
            Self::open_dataset(path, heldout_docs)
        }
    }

    fn open_mixture(dir: &Path, heldout_docs: usize) -> Result<Self> {
        let mixture = Mixture::load(dir)?;
        mixture.verify_datasets()?;
        let order = mixture.order(dir)?;
        let domains: Vec<String> = mixture.domains.iter().map(|d| d.name.clone()).collect();
        let mut shards = Vec::new();
        let mut shard_domain = Vec::new();
        for s in &mixture.shards {
            shards.push(ShardReader::open(&s.prefix).with_context(|| format!("mixture {}", dir.display()))?);
            let domain = domains.iter().position(|d| *d == s.domain).with_context(|| {
                format!(
                    "{}: shard {} names domain {:?}, which the mixture lacks",
                    dir.display(),
                    s.prefix.display(),
                    s.domain
                )
            })?;
            shard_domain.push(domain);
        }
        let docs: Vec<DocRef> = order.iter().map(|e| DocRef { shard: e.shard, doc: e.doc, take: e.take }).collect();
        for d in &docs {
            ensure!(
                (d.shard as usize) < shards.len() && (d.doc as usize) < shards[d.shard as usize].num_documents(),
                "{}: the order names document {} of shard {}, which does not exist",
                dir.display(),
                d.doc,
                d.shard
            );
        }
        let mut vocab_size = None;
        let mut datasets: Vec<&PathBuf> = mixture.shards.iter().map(|s| &s.dataset).collect();
        datasets.sort();
        datasets.dedup();
        for dataset in datasets {
            let manifest = shards::DatasetManifest::load(dataset)?;
            vocab_size = vocab_size.max(Some(manifest.tokenizer.vocab_size));
        }
        // A document subset (a bucket, a selection) holds out from its own documents, which the
        // order draws, not from the whole shards it shares with its domain's other buckets.
        let subset: Vec<bool> = mixture.domains.iter().map(|d| d.subset.is_some()).collect();
        let mut corpus = Self::split(dir, shards, domains, shard_domain, docs, heldout_docs, &subset);
        corpus.vocab_size = vocab_size;
        corpus.identity = format!("mixture order {}", mixture.order_checksum);
        Ok(corpus)
    }

    fn open_dataset(path: &Path, heldout_docs: usize) -> Result<Self> {
        let source = TokenSource::open_verified(path)?;
        let identity = if source.is_dataset() {
            let manifest = path.join(shards::manifest::MANIFEST_FILE);
            let sum = util::fsutil::file_checksum(&manifest).with_context(|| format!("{}", manifest.display()))?;
            format!("dataset manifest {sum}")
        } else {
            let idx = shards::shard::shard_paths(source.shards[0].prefix()).1;
            let sum = util::fsutil::file_checksum(&idx).with_context(|| format!("{}", idx.display()))?;
            format!("shard index {sum}")
        };
        let name = path.file_name().map_or("data".into(), |n| n.to_string_lossy().into_owned());
        let mut docs = Vec::new();
        for (s, shard) in source.shards.iter().enumerate() {
            for d in 0..shard.num_documents() {
                docs.push(DocRef { shard: s as u32, doc: d as u32, take: shard.document_len(d) as u32 });
            }
        }
        let n = source.shards.len();
        let vocab_size = source.manifest.as_ref().map(|m| m.tokenizer.vocab_size);
        let mut corpus = Self::split(path, source.shards, vec![name], vec![0; n], docs, heldout_docs, &[false]);
        corpus.vocab_size = vocab_size;
        corpus.identity = identity;
        Ok(corpus)
    }

    fn split(
        source: &Path,
        shards: Vec<ShardReader>,
        domains: Vec<String>,
        shard_domain: Vec<usize>,
        docs: Vec<DocRef>,
        heldout_docs: usize,
        subset: &[bool],
    ) -> Self {
        // Held out: the last documents (by shard, then index) each domain has (a subset domain:
        // of those the order draws for it).
        let mut heldout = vec![Vec::new(); domains.len()];
        let mut by_domain: Vec<Vec<(u32, u32)>> = vec![Vec::new(); domains.len()];
        let drawn: std::collections::HashSet<(u32, u32)> =
            docs.iter().filter(|d| subset[shard_domain[d.shard as usize]]).map(|d| (d.shard, d.doc)).collect();
        for (s, shard) in shards.iter().enumerate() {
            for d in 0..shard.num_documents() as u32 {
                if subset[shard_domain[s]] && !drawn.contains(&(s as u32, d)) {
                    continue;
                }
                by_domain[shard_domain[s]].push((s as u32, d));
            }
        }
        let mut excluded = std::collections::HashSet::new();
        for (domain, all) in by_domain.iter().enumerate() {
            for &(s, d) in all.iter().rev().take(heldout_docs).rev() {
                heldout[domain].push(DocRef {
                    shard: s,
                    doc: d,
                    take: shards[s as usize].document_len(d as usize) as u32,
                });
                excluded.insert((s, d));
            }
        }
        let train = docs.into_iter().filter(|d| !excluded.contains(&(d.shard, d.doc)) && d.take > 0).collect();
        Self {
            source: source.to_path_buf(),
            shards,
            domains,
            train,
            heldout,
            vocab_size: None,
            identity: String::new(),
        }
    }

    /// Every token id must be below the model's `vocab_size` (an embedding lookup past it fails
    /// deep inside the model, naming nothing): the error names the shard and the document.
    pub fn check_token_ids(&self, vocab_size: usize) -> Result<()> {
        let limit = u32::try_from(vocab_size).unwrap_or(u32::MAX);
        for shard in &self.shards {
            if let Some((doc, token)) = shard.first_token_at_or_above(limit) {
                bail!(
                    "{}: document {doc} holds token id {token}, but the model's vocab_size is {vocab_size}; \
                     the data was tokenized for another model",
                    shard.prefix().display()
                );
            }
        }
        Ok(())
    }

    /// Whether token `i` of `doc` counts in the loss (its shard's `.loss` mask; every token
    /// without one).
    fn counts_in_loss(&self, doc: &DocRef, i: u32) -> bool {
        let shard = &self.shards[doc.shard as usize];
        shard.document_loss_mask(doc.doc as usize).is_none_or(|mask| mask.get(i as usize).is_none_or(|&b| b != 0))
    }

    fn token(&self, doc: &DocRef, i: u32) -> u32 {
        // Indices were validated when the corpus opened.
        self.shards[doc.shard as usize].document(doc.doc as usize).expect("document index checked").get(i as usize)
    }
}

/// How samples are packed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackOptions {
    pub seq_len: usize,
    pub document_masking: bool,
    /// No loss on the token after a document's last token (it cannot be predicted).
    pub mask_loss_across_documents: bool,
    pub long_mix: Option<LongMix>,
}

/// `fraction` of the tokens from documents of at least `min_tokens`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LongMix {
    pub fraction: f64,
    pub min_tokens: u32,
}

/// Where a stream stands: its `index`-th document (counting past the end: epochs), `offset`
/// tokens into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    pub index: u64,
    pub offset: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub short: StreamCursor,
    pub long: StreamCursor,
    /// Input tokens produced so far, and how many came from the long stream.
    pub tokens: u64,
    pub long_tokens: u64,
}

/// Packs samples from a corpus.
pub struct Packer {
    corpus: Arc<Corpus>,
    options: PackOptions,
    short: Vec<DocRef>,
    long: Vec<DocRef>,
}

impl Packer {
    pub fn new(corpus: Arc<Corpus>, options: PackOptions) -> Result<Self> {
        Self::check(&corpus, &options)?;
        let (long, short): (Vec<DocRef>, Vec<DocRef>) = match options.long_mix {
            Some(mix) => corpus.train.iter().partition(|d| d.take >= mix.min_tokens),
            None => (Vec::new(), corpus.train.clone()),
        };
        Ok(Self { corpus, options, short, long })
    }

    /// Whether `corpus` can be packed with `options` (documents left after the held-out ones,
    /// both sides of a long/short mix present), without building the packer.
    pub fn check(corpus: &Corpus, options: &PackOptions) -> Result<()> {
        ensure!(options.seq_len >= 2, "seq_len must be at least 2");
        if corpus.train.is_empty() {
            bail!("{}: no documents to train on (after holding out the evaluation documents)", corpus.source.display());
        }
        if let Some(mix) = options.long_mix {
            ensure!((0.0..=1.0).contains(&mix.fraction), "long_fraction {} is not in [0, 1]", mix.fraction);
            let long = corpus.train.iter().filter(|d| d.take >= mix.min_tokens).count();
            if mix.fraction > 0.0 && long == 0 {
                bail!("long_fraction is {} but no document has {} tokens or more", mix.fraction, mix.min_tokens);
            }
            if mix.fraction < 1.0 && long == corpus.train.len() {
                bail!("long_fraction is {} but every document has {} tokens or more", mix.fraction, mix.min_tokens);
            }
        }
        Ok(())
    }

    /// Append one sample to `batch` and advance the cursor.
    pub fn pack(&self, cursor: &mut Cursor, batch: &mut Batch) {
        let t = self.options.seq_len as u64;
        let use_long = match self.options.long_mix {
            Some(mix) if !self.long.is_empty() => {
                if self.short.is_empty() {
                    true
                } else {
                    let total = (cursor.tokens + t) as f64;
                    let with_long = ((cursor.long_tokens + t) as f64 / total - mix.fraction).abs();
                    let without = (cursor.long_tokens as f64 / total - mix.fraction).abs();
                    with_long < without
                }
            }
            _ => false,
        };
        let (docs, stream) = if use_long { (&self.long, &mut cursor.long) } else { (&self.short, &mut cursor.short) };
        cursor.tokens += t;
        if use_long {
            cursor.long_tokens += t;
        }
        let doc_at = |s: &StreamCursor| docs[(s.index % docs.len() as u64) as usize];
        let mut segment = 0u32;
        let mut position = 0u32;
        let start = batch.ids.len();
        for i in 0..t {
            let doc = doc_at(stream);
            if i > 0 && stream.offset == 0 && self.options.document_masking {
                segment += 1;
                position = 0;
            }
            let id = self.corpus.token(&doc, stream.offset);
            stream.offset += 1;
            let last_of_doc = stream.offset == doc.take;
            if last_of_doc {
                stream.index += 1;
                stream.offset = 0;
            }
            batch.ids.push(id);
            batch.positions.push(position);
            batch.segments.push(segment);
            position += 1;
            // The target of this input is the next token; it is a document's first when the
            // input is a document's last. A shard's loss mask (chat data: assistant turns only)
            // says whether that target counts.
            let masked = self.options.mask_loss_across_documents && last_of_doc;
            let counted = if last_of_doc {
                self.corpus.counts_in_loss(&doc_at(stream), 0)
            } else {
                self.corpus.counts_in_loss(&doc, stream.offset)
            };
            batch.loss_mask.push(if masked || !counted { 0.0 } else { 1.0 });
        }
        // Targets: the inputs shifted by one, plus one peeked token.
        let peek = self.corpus.token(&doc_at(stream), stream.offset);
        batch.targets.extend_from_slice(&batch.ids[start + 1..]);
        batch.targets.push(peek);
        batch.batch += 1;
        batch.seq = self.options.seq_len;
    }

    /// `rows` samples as one batch.
    pub fn batch(&self, cursor: &mut Cursor, rows: usize) -> Batch {
        let mut batch = Batch::default();
        for _ in 0..rows {
            self.pack(cursor, &mut batch);
        }
        batch
    }
}

/// Fixed evaluation batches for one set of documents (each packed from its own start).
pub fn eval_batches(corpus: &Arc<Corpus>, docs: &[DocRef], seq_len: usize, rows: usize, max_tokens: u64) -> Vec<Batch> {
    if docs.is_empty() {
        return Vec::new();
    }
    let available: u64 = docs.iter().map(|d| d.take as u64).sum();
    let tokens = available.saturating_sub(1).min(max_tokens);
    let samples = (tokens / seq_len as u64) as usize;
    let packer = Packer {
        corpus: Arc::clone(corpus),
        options: PackOptions { seq_len, document_masking: true, mask_loss_across_documents: true, long_mix: None },
        short: docs.to_vec(),
        long: Vec::new(),
    };
    let mut cursor = Cursor::default();
    let mut batches = Vec::new();
    let mut left = samples;
    while left > 0 {
        let n = left.min(rows);
        batches.push(packer.batch(&mut cursor, n));
        left -= n;
    }
    batches
}

/// Micro-batches packed on a thread, `depth` ahead, each with the cursor after it.
pub struct Prefetcher {
    receiver: Receiver<(Batch, Cursor)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Prefetcher {
    pub fn spawn(packer: Packer, mut cursor: Cursor, rows: usize, depth: usize) -> Self {
        let (tx, receiver) = sync_channel(depth);
        let handle = std::thread::Builder::new()
            .name("midtrain-loader".into())
            .spawn(move || {
                loop {
                    let batch = packer.batch(&mut cursor, rows);
                    if tx.send((batch, cursor)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the loader thread");
        Self { receiver, handle: Some(handle) }
    }

    pub fn next(&self) -> (Batch, Cursor) {
        self.receiver.recv().expect("the loader thread runs until dropped")
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Unblock the thread's pending send, then join it.
        let (_, dummy) = sync_channel(0);
        let receiver = std::mem::replace(&mut self.receiver, dummy);
        drop(receiver);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::ShardWriter;

    /// A dataset of documents `[k·1000, k·1000 + 1, …]` of the given lengths.
    pub(crate) fn dataset(dir: &Path, lengths: &[u32]) -> PathBuf {
        let prefix = dir.join("docs");
        let mut w = ShardWriter::create(&prefix, 100_000).unwrap();
        for (k, &n) in lengths.iter().enumerate() {
            let doc: Vec<u32> = (0..n).map(|i| k as u32 * 1000 + i).collect();
            w.append(&doc).unwrap();
        }
        w.finish().unwrap();
        prefix
    }

    fn options(seq_len: usize) -> PackOptions {
        PackOptions { seq_len, document_masking: true, mask_loss_across_documents: true, long_mix: None }
    }

    /// Two buckets of one shard: each holds out the last of the documents the order draws for
    /// it; a whole domain holds out the shard's last documents.
    #[test]
    fn a_subset_domain_holds_out_from_its_own_documents() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dataset(dir.path(), &[3; 6]);
        let reader = || ShardReader::open(&prefix).unwrap();
        let drawn = |pairs: &[(u32, u32)]| -> Vec<DocRef> {
            pairs.iter().map(|&(shard, doc)| DocRef { shard, doc, take: 3 }).collect()
        };
        // Shard 0 is bucket q00's (documents 0, 2), shard 1 the same file as bucket q01's (1, 3).
        let docs = drawn(&[(0, 0), (1, 1), (0, 2), (1, 3), (0, 0)]);
        let domains = vec!["web/q00".to_string(), "web/q01".to_string()];
        let corpus =
            Corpus::split(dir.path(), vec![reader(), reader()], domains, vec![0, 1], docs.clone(), 1, &[true; 2]);
        let held: Vec<Vec<(u32, u32)>> =
            corpus.heldout.iter().map(|h| h.iter().map(|d| (d.shard, d.doc)).collect()).collect();
        assert_eq!(held, [vec![(0, 2)], vec![(1, 3)]]);
        let train: Vec<(u32, u32)> = corpus.train.iter().map(|d| (d.shard, d.doc)).collect();
        assert_eq!(train, [(0, 0), (1, 1), (0, 0)], "held-out documents are not trained on");

        let whole = Corpus::split(
            dir.path(),
            vec![reader(), reader()],
            vec!["a".into(), "b".into()],
            vec![0, 1],
            docs,
            1,
            &[false; 2],
        );
        let held: Vec<(u32, u32)> = whole.heldout.iter().flatten().map(|d| (d.shard, d.doc)).collect();
        assert_eq!(held, [(0, 5), (1, 5)]);
    }

    #[test]
    fn packs_across_documents_with_restarting_positions() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = Arc::new(Corpus::open(&dataset(dir.path(), &[3, 4, 5]), 0).unwrap());
        let packer = Packer::new(corpus, options(4)).unwrap();
        let mut cursor = Cursor::default();
        let b = packer.batch(&mut cursor, 2);
        assert_eq!(b.ids, [0, 1, 2, 1000, 1001, 1002, 1003, 2000]);
        assert_eq!(b.targets, [1, 2, 1000, 1001, 1002, 1003, 2000, 2001]);
        assert_eq!(b.positions, [0, 1, 2, 0, 0, 1, 2, 0]);
        assert_eq!(b.segments, [0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(b.loss_mask, [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]);
        // The stream wraps around (second epoch) after the last document.
        let b = packer.batch(&mut cursor, 1);
        assert_eq!(b.ids, [2001, 2002, 2003, 2004]);
        assert_eq!(b.targets, [2002, 2003, 2004, 0]);
        assert_eq!(cursor.short, StreamCursor { index: 3, offset: 0 });
    }

    #[test]
    fn a_shard_loss_mask_decides_which_targets_count() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dataset(dir.path(), &[3, 4]);
        // Document 0 counts only its last token; document 1 its middle two.
        std::fs::write(shards::shard::loss_mask_path(&prefix), [0u8, 0, 1, 0, 1, 1, 0]).unwrap();
        let corpus = Arc::new(Corpus::open(&prefix, 0).unwrap());
        let packer = Packer::new(Arc::clone(&corpus), options(6)).unwrap();
        let b = packer.batch(&mut Cursor::default(), 1);
        assert_eq!(b.targets, [1, 2, 1000, 1001, 1002, 1003]);
        // Targets 1 (masked), 2 (counted), 1000 (across documents), 1001, 1002 (counted), 1003.
        assert_eq!(b.loss_mask, [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
        let unmasked = Packer::new(corpus, PackOptions { mask_loss_across_documents: false, ..options(6) }).unwrap();
        let b = unmasked.batch(&mut Cursor::default(), 1);
        assert_eq!(
            b.loss_mask,
            [0.0, 1.0, 0.0, 1.0, 1.0, 0.0],
            "the next document's first token is masked by its own mask"
        );
        std::fs::write(shards::shard::loss_mask_path(&prefix), [1u8; 5]).unwrap();
        let err = Corpus::open(&prefix, 0).err().unwrap().to_string();
        assert!(err.contains("one byte per token"), "{err}");
    }

    #[test]
    fn a_cursor_resumes_the_same_stream() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = Arc::new(Corpus::open(&dataset(dir.path(), &[7, 3, 9, 2, 11]), 0).unwrap());
        let packer = Packer::new(corpus, options(5)).unwrap();
        let mut whole = Cursor::default();
        let all = packer.batch(&mut whole, 6);
        let mut c = Cursor::default();
        let first = packer.batch(&mut c, 2);
        let saved: Cursor = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        let mut resumed = saved;
        let rest = packer.batch(&mut resumed, 4);
        assert_eq!([first.ids, rest.ids.clone()].concat(), all.ids);
        assert_eq!([first.targets, rest.targets].concat(), all.targets);
        assert_eq!(resumed, whole);
        // Through the prefetch thread too.
        let pre = Prefetcher::spawn(Packer::new(packer.corpus.clone(), options(5)).unwrap(), saved, 2, 2);
        let (b1, _) = pre.next();
        let (b2, after) = pre.next();
        assert_eq!([b1.ids, b2.ids].concat(), rest.ids);
        assert_eq!(after, whole);
    }

    #[test]
    fn without_document_masking_a_row_is_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = Arc::new(Corpus::open(&dataset(dir.path(), &[3, 4]), 0).unwrap());
        let options = PackOptions { document_masking: false, mask_loss_across_documents: false, ..options(6) };
        let b = Packer::new(corpus, options).unwrap().batch(&mut Cursor::default(), 1);
        assert_eq!(b.positions, [0, 1, 2, 3, 4, 5]);
        assert_eq!(b.segments, [0; 6]);
        assert_eq!(b.loss_mask, [1.0; 6]);
    }

    #[test]
    fn heldout_documents_never_enter_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = Corpus::open(&dataset(dir.path(), &[3, 4, 5, 6]), 2).unwrap();
        assert_eq!(corpus.train.iter().map(|d| d.doc).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(corpus.heldout[0].iter().map(|d| d.doc).collect::<Vec<_>>(), [2, 3]);
        let corpus = Arc::new(corpus);
        let heldout = corpus.heldout[0].clone();
        let batches = eval_batches(&corpus, &heldout, 4, 2, 1000);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].ids, [2000, 2001, 2002, 2003, 2004, 3000, 3001, 3002]);
    }

    #[test]
    fn long_share_follows_the_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let lengths: Vec<u32> = (0..40).map(|i| if i % 4 == 0 { 70 } else { 9 }).collect();
        let corpus = Arc::new(Corpus::open(&dataset(dir.path(), &lengths), 0).unwrap());
        let mix = LongMix { fraction: 0.3, min_tokens: 64 };
        let packer = Packer::new(corpus.clone(), PackOptions { long_mix: Some(mix), ..options(16) }).unwrap();
        let mut cursor = Cursor::default();
        for _ in 0..200 {
            let b = packer.batch(&mut cursor, 1);
            let long = b.ids.iter().all(|&id| (id / 1000) % 4 == 0);
            let short = b.ids.iter().all(|&id| (id / 1000) % 4 != 0);
            assert!(long || short, "a sample comes from one stream: {:?}", b.ids);
        }
        let share = cursor.long_tokens as f64 / cursor.tokens as f64;
        assert!((share - 0.3).abs() < 0.01, "long share {share}");
        let none = LongMix { fraction: 0.3, min_tokens: 1000 };
        assert!(Packer::new(corpus, PackOptions { long_mix: Some(none), ..options(16) }).is_err());
    }
}
