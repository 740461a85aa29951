//! Token shards in Megatron-LM's indexed-dataset format (MMIDIDX, version 1), byte for byte.
//!
//! A shard is `PREFIX.bin` (token ids, concatenated, little-endian) plus `PREFIX.idx` (header,
//! sequence lengths, byte pointers, document index); see `docs/megatron-format.md`.
//! One document is one sequence, EOS already appended by the caller.
//!
//! The writer streams tokens to disk and keeps 4 bytes per document in memory (the lengths) until
//! `finish`, which writes the index and renames both files into place. The `.idx` is renamed
//! last, and an existing `.idx` is removed before the new `.bin` lands, so a crash at any point
//! leaves no pair that looks like a finished shard but isn't (the reader needs both files).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use util::fsutil::{durable_rename, temp_path};

#[cfg(target_endian = "big")]
compile_error!("token shards are little-endian and read zero-copy: big-endian hosts are not supported");

const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
const VERSION: u64 = 1;
const HEADER_LEN: usize = 9 + 8 + 1 + 8 + 8;

/// Megatron's rule: uint16 when the vocabulary is below this, int32 otherwise.
pub const UINT16_VOCAB_LIMIT: usize = 65500;

/// The token dtypes midtrain reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    Uint16,
    Int32,
}

impl TokenDtype {
    /// The dtype Megatron's own writer picks for a vocabulary of `vocab_size` tokens.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size < UINT16_VOCAB_LIMIT { Self::Uint16 } else { Self::Int32 }
    }

    /// Dtype code in the `.idx` header.
    pub fn code(self) -> u8 {
        match self {
            Self::Uint16 => 8,
            Self::Int32 => 4,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            8 => Some(Self::Uint16),
            4 => Some(Self::Int32),
            _ => None,
        }
    }

    /// Bytes per token.
    pub fn item_size(self) -> usize {
        match self {
            Self::Uint16 => 2,
            Self::Int32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uint16 => "uint16",
            Self::Int32 => "int32",
        }
    }

    /// Largest token id the dtype can hold.
    pub fn max_id(self) -> u32 {
        match self {
            Self::Uint16 => u16::MAX as u32,
            Self::Int32 => i32::MAX as u32,
        }
    }
}

/// Errors from writing or reading a shard. Each names the file and what failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: invalid shard: {check}")]
    Invalid { path: PathBuf, check: String },
    #[error(
        "{path}: token id {token} in document {document} does not fit the vocabulary of {vocab_size} (dtype {dtype})"
    )]
    TokenOutOfRange { path: PathBuf, document: u64, token: u32, vocab_size: usize, dtype: &'static str },
    #[error("{path}: document {document} has {len} tokens, more than the format's i32 length field allows")]
    DocumentTooLong { path: PathBuf, document: u64, len: usize },
    #[error("{path}: document {index} out of range (shard has {count})")]
    OutOfRange { path: PathBuf, index: usize, count: usize },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ShardError + '_ {
    move |source| ShardError::Io { path: path.to_path_buf(), source }
}

/// `PREFIX.bin` and `PREFIX.idx` for a shard prefix.
/// `PREFIX.loss`: the shard's loss mask (datatrove's `.loss` layout).
pub fn loss_mask_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(".loss");
    PathBuf::from(s)
}

pub fn shard_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(prefix, ".bin"), with_suffix(prefix, ".idx"))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// What a finished shard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSummary {
    pub prefix: PathBuf,
    pub dtype: TokenDtype,
    pub documents: u64,
    pub tokens: u64,
}

/// Streams documents into a new shard. Nothing is visible at `PREFIX.bin/.idx` until [`finish`].
///
/// [`finish`]: ShardWriter::finish
pub struct ShardWriter {
    prefix: PathBuf,
    bin_tmp: PathBuf,
    bin: BufWriter<File>,
    dtype: TokenDtype,
    vocab_size: usize,
    lengths: Vec<i32>,
    tokens: u64,
    encode_buf: Vec<u8>,
}

impl ShardWriter {
    /// Start a shard at `prefix` for a tokenizer with `vocab_size` ids; the dtype follows Megatron's rule.
    pub fn create(prefix: impl Into<PathBuf>, vocab_size: usize) -> Result<Self, ShardError> {
        let prefix = prefix.into();
        let (bin_path, _) = shard_paths(&prefix);
        let bin_tmp = temp_path(&bin_path);
        let file = File::create(&bin_tmp).map_err(io_err(&bin_tmp))?;
        Ok(Self {
            prefix,
            bin: BufWriter::with_capacity(1 << 20, file),
            bin_tmp,
            dtype: TokenDtype::for_vocab(vocab_size),
            vocab_size,
            lengths: Vec::new(),
            tokens: 0,
            encode_buf: Vec::new(),
        })
    }

    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    pub fn documents(&self) -> u64 {
        self.lengths.len() as u64
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Bytes of `.bin` written so far (to cut shards at a target size).
    pub fn bin_bytes(&self) -> u64 {
        self.tokens * self.dtype.item_size() as u64
    }

    /// Append one document (its token ids, EOS included).
    pub fn append(&mut self, tokens: &[u32]) -> Result<(), ShardError> {
        let document = self.lengths.len() as u64;
        let len = i32::try_from(tokens.len()).map_err(|_| ShardError::DocumentTooLong {
            path: self.bin_tmp.clone(),
            document,
            len: tokens.len(),
        })?;
        let limit = (self.vocab_size as u64).min(self.dtype.max_id() as u64 + 1);
        if let Some(&token) = tokens.iter().find(|&&t| t as u64 >= limit) {
            return Err(ShardError::TokenOutOfRange {
                path: self.bin_tmp.clone(),
                document,
                token,
                vocab_size: self.vocab_size,
                dtype: self.dtype.name(),
            });
        }
        self.encode_buf.clear();
        match self.dtype {
            TokenDtype::Uint16 => {
                tokens.iter().for_each(|&t| self.encode_buf.extend_from_slice(&(t as u16).to_le_bytes()))
            }
            TokenDtype::Int32 => {
                tokens.iter().for_each(|&t| self.encode_buf.extend_from_slice(&(t as i32).to_le_bytes()))
            }
        }
        self.bin.write_all(&self.encode_buf).map_err(io_err(&self.bin_tmp))?;
        self.lengths.push(len);
        self.tokens += tokens.len() as u64;
        Ok(())
    }

    /// Write the index, fsync both files and rename them into place (`.idx` last).
    pub fn finish(self) -> Result<ShardSummary, ShardError> {
        let Self { prefix, bin_tmp, bin, dtype, lengths, tokens, .. } = self;
        let (bin_path, idx_path) = shard_paths(&prefix);
        let file = bin.into_inner().map_err(|e| ShardError::Io { path: bin_tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&bin_tmp))?;
        drop(file);

        let idx_tmp = temp_path(&idx_path);
        {
            let file = File::create(&idx_tmp).map_err(io_err(&idx_tmp))?;
            let mut idx = BufWriter::with_capacity(1 << 20, file);
            write_index(&mut idx, dtype, &lengths).map_err(io_err(&idx_tmp))?;
            let file =
                idx.into_inner().map_err(|e| ShardError::Io { path: idx_tmp.clone(), source: e.into_error() })?;
            file.sync_all().map_err(io_err(&idx_tmp))?;
        }
        // An old index next to a new .bin would look finished: remove it before the .bin lands.
        match fs::remove_file(&idx_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ShardError::Io { path: idx_path, source: e }),
        }
        durable_rename(&bin_tmp, &bin_path).map_err(io_err(&bin_path))?;
        durable_rename(&idx_tmp, &idx_path).map_err(io_err(&idx_path))?;
        Ok(ShardSummary { prefix, dtype, documents: lengths.len() as u64, tokens })
    }
}

fn write_index(out: &mut impl Write, dtype: TokenDtype, lengths: &[i32]) -> io::Result<()> {
    let count = lengths.len() as u64;
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&[dtype.code()])?;
    out.write_all(&count.to_le_bytes())?;
    out.write_all(&(count + 1).to_le_bytes())?;
    for len in lengths {
        out.write_all(&len.to_le_bytes())?;
    }
    let mut pointer = 0i64;
    for &len in lengths {
        out.write_all(&pointer.to_le_bytes())?;
        pointer += len as i64 * dtype.item_size() as i64;
    }
    for doc in 0..=count as i64 {
        out.write_all(&doc.to_le_bytes())?;
    }
    Ok(())
}

/// Token ids of one document, borrowed from the memory-mapped `.bin`.
#[derive(Clone, Copy, Debug)]
pub enum Tokens<'a> {
    Uint16(&'a [u16]),
    Int32(&'a [i32]),
}

impl<'a> Tokens<'a> {
    pub fn len(&self) -> usize {
        match self {
            Self::Uint16(t) => t.len(),
            Self::Int32(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i` as u32 (int32 shards hold non-negative ids).
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Self::Uint16(t) => t[i] as u32,
            Self::Int32(t) => t[i] as u32,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let this = *self;
        (0..this.len()).map(move |i| this.get(i))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

/// A validated, memory-mapped shard.
pub struct ShardReader {
    prefix: PathBuf,
    dtype: TokenDtype,
    sequences: usize,
    documents: usize,
    idx: Mmap,
    bin: Option<Mmap>,
    tokens: u64,
    /// `PREFIX.loss` when present: one byte per token, 1 where the loss counts the token.
    loss_mask: Option<Mmap>,
}

impl std::fmt::Debug for ShardReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardReader")
            .field("prefix", &self.prefix)
            .field("dtype", &self.dtype)
            .field("documents", &self.documents)
            .field("tokens", &self.tokens)
            .finish()
    }
}

fn map(path: &Path) -> Result<Option<Mmap>, ShardError> {
    let file = File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    if len == 0 {
        return Ok(None); // mapping an empty file fails on some platforms; nothing to map
    }
    // SAFETY: shards are immutable once renamed into place; midtrain never writes to a finished
    // shard, and a concurrent external writer is outside what the format supports.
    let mmap = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
    Ok(Some(mmap))
}

impl ShardReader {
    /// Open and validate `PREFIX.idx` / `PREFIX.bin`. `prefix` may also name either file.
    pub fn open(prefix: impl AsRef<Path>) -> Result<Self, ShardError> {
        let prefix = strip_shard_extension(prefix.as_ref());
        let (bin_path, idx_path) = shard_paths(&prefix);
        let invalid = |path: &Path, check: String| ShardError::Invalid { path: path.to_path_buf(), check };
        for path in [&idx_path, &bin_path] {
            if !path.is_file() {
                return Err(invalid(path, "file is missing (a shard needs both .bin and .idx)".into()));
            }
        }
        let idx = map(&idx_path)?.ok_or_else(|| invalid(&idx_path, "file is empty".into()))?;
        if idx.len() < HEADER_LEN {
            return Err(invalid(&idx_path, format!("truncated header: {} bytes, need {HEADER_LEN}", idx.len())));
        }
        if &idx[..9] != MAGIC {
            return Err(invalid(&idx_path, "bad magic: not an MMIDIDX index".into()));
        }
        let version = u64::from_le_bytes(idx[9..17].try_into().unwrap());
        if version != VERSION {
            return Err(invalid(&idx_path, format!("unsupported version {version} (expected 1)")));
        }
        let code = idx[17];
        let dtype = TokenDtype::from_code(code).ok_or_else(|| {
            invalid(&idx_path, format!("unsupported dtype code {code} (token shards are uint16 = 8 or int32 = 4)"))
        })?;
        let sequences = u64::from_le_bytes(idx[18..26].try_into().unwrap());
        let doc_entries = u64::from_le_bytes(idx[26..34].try_into().unwrap());
        let expected = (sequences as u128) * 12 + (doc_entries as u128) * 8 + HEADER_LEN as u128;
        if idx.len() as u128 != expected {
            let with_modes = expected + sequences as u128;
            let why = if idx.len() as u128 == with_modes {
                "it carries sequence modes (a multimodal dataset), which token shards never have".to_string()
            } else {
                format!(
                    "size {} bytes does not match {sequences} sequences and {doc_entries} document-index entries \
                     (expected {expected}): truncated or corrupted",
                    idx.len()
                )
            };
            return Err(invalid(&idx_path, why));
        }
        if doc_entries == 0 {
            return Err(invalid(&idx_path, "document index is empty (it must hold at least the leading 0)".into()));
        }
        let bin = map(&bin_path)?;
        let bin_len = bin.as_ref().map_or(0, |m| m.len()) as u64;
        let mut reader = Self {
            prefix,
            dtype,
            sequences: sequences as usize,
            documents: doc_entries as usize - 1,
            idx,
            bin,
            tokens: 0,
            loss_mask: None,
        };
        reader.tokens = reader.validate(&idx_path, &bin_path, bin_len)?;
        let mask_path = loss_mask_path(&reader.prefix);
        if mask_path.is_file() {
            let mask = map(&mask_path)?;
            let len = mask.as_ref().map_or(0, |m| m.len()) as u64;
            if len != reader.tokens {
                return Err(invalid(
                    &mask_path,
                    format!(
                        "{len} bytes for a shard of {} tokens: a loss mask holds one byte per token",
                        reader.tokens
                    ),
                ));
            }
            reader.loss_mask = mask;
        }
        Ok(reader)
    }

    /// Check lengths, pointers and the document index against each other and the `.bin` size.
    fn validate(&self, idx_path: &Path, bin_path: &Path, bin_len: u64) -> Result<u64, ShardError> {
        let invalid = |path: &Path, check: String| ShardError::Invalid { path: path.to_path_buf(), check };
        let item = self.dtype.item_size() as u64;
        let mut expected_pointer = 0u64;
        for i in 0..self.sequences {
            let len = self.raw_length(i);
            if len < 0 {
                return Err(invalid(idx_path, format!("sequence {i} has negative length {len}")));
            }
            let pointer = self.raw_pointer(i);
            if pointer < 0 || pointer as u64 != expected_pointer {
                return Err(invalid(
                    idx_path,
                    format!("sequence {i} pointer {pointer} is not the running byte offset {expected_pointer}"),
                ));
            }
            expected_pointer += len as u64 * item;
            if expected_pointer > bin_len {
                return Err(invalid(
                    bin_path,
                    format!(
                        "sequence {i} ends at byte {expected_pointer}, past the end of the file ({bin_len} bytes): truncated"
                    ),
                ));
            }
        }
        if expected_pointer != bin_len {
            return Err(invalid(
                bin_path,
                format!("file has {bin_len} bytes but the index describes {expected_pointer}"),
            ));
        }
        let mut previous = 0i64;
        for d in 0..=self.documents {
            let entry = self.raw_doc_index(d);
            let bad = (d == 0 && entry != 0) || entry < previous || entry as u64 > self.sequences as u64;
            if bad || (d == self.documents && entry as u64 != self.sequences as u64) {
                return Err(invalid(
                    idx_path,
                    format!("document index entry {d} = {entry} is not a boundary in 0..={} in order", self.sequences),
                ));
            }
            previous = entry;
        }
        Ok(expected_pointer / item)
    }

    fn read_i32(&self, offset: usize) -> i32 {
        i32::from_le_bytes(self.idx[offset..offset + 4].try_into().unwrap())
    }

    fn read_i64(&self, offset: usize) -> i64 {
        i64::from_le_bytes(self.idx[offset..offset + 8].try_into().unwrap())
    }

    fn raw_length(&self, i: usize) -> i32 {
        self.read_i32(HEADER_LEN + 4 * i)
    }

    fn raw_pointer(&self, i: usize) -> i64 {
        self.read_i64(HEADER_LEN + 4 * self.sequences + 8 * i)
    }

    fn raw_doc_index(&self, d: usize) -> i64 {
        self.read_i64(HEADER_LEN + 12 * self.sequences + 8 * d)
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Number of documents (entries of the document index minus one).
    pub fn num_documents(&self) -> usize {
        self.documents
    }

    /// Number of sequences; equals the documents for GPT-style shards.
    pub fn num_sequences(&self) -> usize {
        self.sequences
    }

    pub fn num_tokens(&self) -> u64 {
        self.tokens
    }

    /// Token count of document `i`.
    pub fn document_len(&self, i: usize) -> usize {
        let (start, end) = self.document_span(i);
        ((end - start) / self.dtype.item_size() as u64) as usize
    }

    /// Byte range of document `i` in `.bin` (its sequences are contiguous).
    fn document_span(&self, i: usize) -> (u64, u64) {
        let first = self.raw_doc_index(i) as usize;
        let last = self.raw_doc_index(i + 1) as usize;
        if first == last {
            return (0, 0);
        }
        let start = self.raw_pointer(first) as u64;
        let end = self.raw_pointer(last - 1) as u64 + self.raw_length(last - 1) as u64 * self.dtype.item_size() as u64;
        (start, end)
    }

    /// Document `i`'s loss mask (one byte per token, 1 = counted), when the shard has one.
    pub fn document_loss_mask(&self, i: usize) -> Option<&[u8]> {
        let mask = self.loss_mask.as_ref()?;
        if i >= self.documents {
            return None;
        }
        let (start, end) = self.document_span(i);
        let item = self.dtype.item_size() as u64;
        Some(&mask[(start / item) as usize..(end / item) as usize])
    }

    pub fn has_loss_mask(&self) -> bool {
        self.loss_mask.is_some()
    }

    /// Zero-copy token ids of document `i`.
    pub fn document(&self, i: usize) -> Result<Tokens<'_>, ShardError> {
        if i >= self.documents {
            return Err(ShardError::OutOfRange { path: self.prefix.clone(), index: i, count: self.documents });
        }
        Ok(self.tokens_in(self.document_span(i)))
    }

    fn tokens_in(&self, (start, end): (u64, u64)) -> Tokens<'_> {
        let bytes: &[u8] = match &self.bin {
            Some(bin) => &bin[start as usize..end as usize],
            None => &[],
        };
        // An empty `&[u8]` may sit at an address no u16/i32 slice may have (a dangling 0x1).
        if bytes.is_empty() {
            return match self.dtype {
                TokenDtype::Uint16 => Tokens::Uint16(&[]),
                TokenDtype::Int32 => Tokens::Int32(&[]),
            };
        }
        // SAFETY: the mapping is page-aligned and validation proved every pointer is a multiple of
        // the item size and inside the file; u16/i32 have no invalid bit patterns.
        unsafe {
            match self.dtype {
                TokenDtype::Uint16 => {
                    Tokens::Uint16(std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 2))
                }
                TokenDtype::Int32 => Tokens::Int32(std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 4)),
            }
        }
    }

    /// All documents in order.
    /// The first (document, token) whose id is `limit` or more: ids a model of `limit` ids
    /// cannot embed.
    pub fn first_token_at_or_above(&self, limit: u32) -> Option<(usize, u32)> {
        (0..self.num_documents()).find_map(|d| {
            let tokens = self.document(d).ok()?;
            tokens.iter().find(|&t| t >= limit).map(|t| (d, t))
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Tokens<'_>> + '_ {
        (0..self.documents).map(move |i| self.tokens_in(self.document_span(i)))
    }
}

/// `data/web_00000.bin` → `data/web_00000`; a prefix without extension is returned as is.
pub fn strip_shard_extension(path: &Path) -> PathBuf {
    match path.extension().and_then(|e| e.to_str()) {
        Some("bin" | "idx") => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(prefix: &Path, vocab: usize, docs: &[Vec<u32>]) -> ShardSummary {
        let mut w = ShardWriter::create(prefix, vocab).unwrap();
        for d in docs {
            w.append(d).unwrap();
        }
        w.finish().unwrap()
    }

    fn docs_strategy(max_id: u32) -> impl Strategy<Value = Vec<Vec<u32>>> {
        prop::collection::vec(prop::collection::vec(0..max_id, 0..300), 0..40)
    }

    #[test]
    fn a_shard_of_empty_documents_reads_back_empty_ones() {
        // Its .bin is empty, so there is no mapping: the empty slices must still be well-aligned.
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        for (vocab, dtype) in [(65_000, TokenDtype::Uint16), (i32::MAX as usize, TokenDtype::Int32)] {
            assert_eq!(write(&prefix, vocab, &[vec![], vec![]]).dtype, dtype);
            let r = ShardReader::open(&prefix).unwrap();
            assert_eq!(r.num_documents(), 2);
            assert!(r.document(1).unwrap().to_vec().is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn round_trip_uint16(docs in docs_strategy(65_000)) {
            let dir = tempfile::tempdir().unwrap();
            let prefix = dir.path().join("s");
            let summary = write(&prefix, 65_000, &docs);
            prop_assert_eq!(summary.dtype, TokenDtype::Uint16);
            let r = ShardReader::open(&prefix).unwrap();
            prop_assert_eq!(r.num_documents(), docs.len());
            prop_assert_eq!(r.num_tokens(), docs.iter().map(|d| d.len() as u64).sum::<u64>());
            for (i, d) in docs.iter().enumerate() {
                prop_assert_eq!(&r.document(i).unwrap().to_vec(), d);
            }
            prop_assert_eq!(r.iter().map(|t| t.to_vec()).collect::<Vec<_>>(), docs);
        }

        #[test]
        fn round_trip_int32(docs in docs_strategy(i32::MAX as u32)) {
            let dir = tempfile::tempdir().unwrap();
            let prefix = dir.path().join("s");
            let summary = write(&prefix, i32::MAX as usize, &docs);
            prop_assert_eq!(summary.dtype, TokenDtype::Int32);
            let r = ShardReader::open(&prefix).unwrap();
            prop_assert_eq!(r.dtype(), TokenDtype::Int32);
            prop_assert_eq!(r.iter().map(|t| t.to_vec()).collect::<Vec<_>>(), docs);
        }
    }

    #[test]
    fn dtype_follows_megatron_rule() {
        assert_eq!(TokenDtype::for_vocab(65_499), TokenDtype::Uint16);
        assert_eq!(TokenDtype::for_vocab(65_500), TokenDtype::Int32);
        assert_eq!(TokenDtype::for_vocab(128_256), TokenDtype::Int32);
    }

    #[test]
    fn index_bytes_match_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        write(&prefix, 1000, &[vec![1, 2, 3], vec![], vec![7]]);
        let (bin, idx) = shard_paths(&prefix);
        assert_eq!(fs::read(bin).unwrap(), [1, 0, 2, 0, 3, 0, 7, 0]);
        let mut expected = b"MMIDIDX\x00\x00".to_vec();
        expected.extend(1u64.to_le_bytes());
        expected.push(8);
        expected.extend(3u64.to_le_bytes());
        expected.extend(4u64.to_le_bytes());
        for len in [3i32, 0, 1] {
            expected.extend(len.to_le_bytes());
        }
        for ptr in [0i64, 6, 6] {
            expected.extend(ptr.to_le_bytes());
        }
        for d in 0..4i64 {
            expected.extend(d.to_le_bytes());
        }
        assert_eq!(fs::read(idx).unwrap(), expected);
    }

    #[test]
    fn token_outside_vocabulary_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::create(dir.path().join("s"), 100).unwrap();
        let err = w.append(&[5, 100]).unwrap_err().to_string();
        assert!(err.contains("token id 100") && err.contains("vocabulary of 100"), "{err}");
    }

    #[test]
    fn unfinished_shard_does_not_exist() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        let mut w = ShardWriter::create(&prefix, 100).unwrap();
        w.append(&[1, 2]).unwrap();
        drop(w); // killed before finish
        let err = ShardReader::open(&prefix).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    type Mutation = Box<dyn FnOnce(&mut Vec<u8>, &mut Vec<u8>)>;

    fn corrupt(mutate: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        write(&prefix, 1000, &[vec![1, 2, 3], vec![4, 5], vec![6]]);
        let (bin_path, idx_path) = shard_paths(&prefix);
        let (mut bin, mut idx) = (fs::read(&bin_path).unwrap(), fs::read(&idx_path).unwrap());
        mutate(&mut bin, &mut idx);
        fs::write(&bin_path, bin).unwrap();
        fs::write(&idx_path, idx).unwrap();
        ShardReader::open(&prefix).unwrap_err().to_string()
    }

    #[test]
    fn corrupted_shards_are_rejected_with_the_failed_check() {
        let cases: Vec<(&str, Mutation)> = vec![
            ("bad magic", Box::new(|_, idx| idx[0] = b'X')),
            ("unsupported version", Box::new(|_, idx| idx[9] = 2)),
            ("unsupported dtype code 6", Box::new(|_, idx| idx[17] = 6)),
            ("truncated header", Box::new(|_, idx| idx.truncate(20))),
            ("truncated or corrupted", Box::new(|_, idx| idx.truncate(idx.len() - 3))),
            ("negative length", Box::new(|_, idx| idx[HEADER_LEN + 3] = 0xff)),
            ("not the running byte offset", Box::new(|_, idx| idx[HEADER_LEN + 12 + 8] = 2)),
            ("past the end of the file", Box::new(|bin, _| bin.truncate(4))),
            ("but the index describes", Box::new(|bin, _| bin.extend([0, 0]))),
            (
                "document index entry",
                Box::new(|_, idx| {
                    let n = idx.len();
                    idx[n - 8] = 9;
                }),
            ),
        ];
        for (expected, mutate) in cases {
            let err = corrupt(mutate);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
            assert!(err.contains("s.idx") || err.contains("s.bin"), "error names the file: {err}");
        }
    }

    #[test]
    fn empty_shard_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        write(&prefix, 1000, &[]);
        let r = ShardReader::open(&prefix).unwrap();
        assert_eq!((r.num_documents(), r.num_tokens()), (0, 0));
        assert!(ShardReader::open(&prefix).unwrap().document(0).is_err());
    }

    #[test]
    fn documents_may_span_several_sequences() {
        // Megatron's document index may group sequences; a document is their contiguous tokens.
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("s");
        write(&prefix, 1000, &[vec![1, 2], vec![3], vec![4, 5, 6]]);
        let (_, idx_path) = shard_paths(&prefix);
        let mut idx = fs::read(&idx_path).unwrap();
        // document index [0, 1, 2, 3] -> [0, 2, 3] (two documents): rewrite D and the entries
        let s = 3usize;
        idx[26..34].copy_from_slice(&3u64.to_le_bytes());
        idx.truncate(HEADER_LEN + 12 * s);
        for d in [0i64, 2, 3] {
            idx.extend(d.to_le_bytes());
        }
        fs::write(&idx_path, idx).unwrap();
        let r = ShardReader::open(&prefix).unwrap();
        assert_eq!((r.num_documents(), r.num_sequences()), (2, 3));
        assert_eq!(r.document(0).unwrap().to_vec(), vec![1, 2, 3]);
        assert_eq!(r.document(1).unwrap().to_vec(), vec![4, 5, 6]);
    }
}
