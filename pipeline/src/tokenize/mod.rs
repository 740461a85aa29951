//! Tokenization with HF `tokenizers` from any `tokenizer.json`, plus the document framing
//! (optional BOS, EOS appended) that the shards expect.
//!
//! Two encoders, one contract: the ids of HF `tokenizers` 0.23 (what Python `tokenizers`,
//! datatrove and transformers produce). 0.23 reads, decodes and encodes every tokenizer; 1.x
//! ([`fast`]) encodes the ones it accepts many times faster. A tokenizer goes to 1.x only after
//! it gives 0.23's ids on the [`probes`] at load time; otherwise, and for any text 1.x cannot
//! encode the same way, 0.23 encodes. Long documents are encoded in pieces cut where the
//! tokenizer itself splits ([`cuts`]), so their ids equal encoding them whole.

mod cuts;
mod fast;
pub mod probes;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};
use shards::TokenizerIdentity;
use util::fsutil::bytes_checksum;

/// How both tokenizers releases report their failures.
pub type LibraryError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{path}: cannot read tokenizer: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: LibraryError,
    },
    #[error("{path}: {what} token {token:?} is not in the vocabulary; pass the token string or id your model uses")]
    UnknownToken { path: PathBuf, what: &'static str, token: String },
    #[error("{path}: {what} id {id} is outside the vocabulary of {vocab_size} ids")]
    IdOutOfRange { path: PathBuf, what: &'static str, id: u32, vocab_size: usize },
    #[error("{path}: no end-of-document token given and none of {candidates:?} is in the vocabulary; pass --eos TOKEN")]
    NoEos { path: PathBuf, candidates: &'static [&'static str] },
    #[error("tokenizing {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: LibraryError,
    },
    #[error(
        "the text holds the special token {token:?} as a literal string; set special_tokens_in_text = \"split\" \
         (encode it as text) or \"keep\" (encode it as the special id)"
    )]
    SpecialTokenInText { token: String },
}

/// What a special token's literal string inside a document becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum SpecialTokensInText {
    /// Encoded as ordinary text (tiktoken's `disallowed_special=()`), so no EOS or chat marker
    /// ever lands inside a document.
    #[default]
    Split,
    /// Encoded as the special id, as `tokenizers` does by default.
    Keep,
    /// Refused: the document is an error.
    Error,
}

impl SpecialTokensInText {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Split => "split",
            Self::Keep => "keep",
            Self::Error => "error",
        }
    }
}

/// Which encoder serves a tokenizer, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoder {
    /// `tokenizers` 1.x for every text it encodes like 0.23 (with `sentinels` > 0, the texts
    /// with bytes its vocabulary lacks go to 0.23).
    Fast { sentinels: usize },
    /// `tokenizers` 0.23 for everything: 1.x refused the tokenizer or disagreed on a probe.
    Reference { why: String },
}

/// What encoding one document found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DocumentEncoding {
    /// Literal special-token strings in the text.
    pub special_tokens_in_text: u64,
    /// Pieces 0.23 encoded because 1.x could not encode them alike.
    pub reference_pieces: u64,
}

/// The end-of-document (or beginning) token: a token string or an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EosSpec {
    Token(String),
    Id(u32),
}

impl EosSpec {
    /// A number is an id, anything else a token string.
    pub fn parse(s: &str) -> Self {
        s.parse().map(Self::Id).unwrap_or_else(|_| Self::Token(s.to_string()))
    }
}

/// End-of-text tokens of common tokenizers, tried in order when no EOS is configured.
pub const EOS_CANDIDATES: &[&str] = &["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>", "[SEP]"];

/// A loaded tokenizer with its document framing.
pub struct TextTokenizer {
    reference: tokenizers::Tokenizer,
    /// The same tokenizer with special-token strings in text encoded as text.
    reference_split: tokenizers::Tokenizer,
    fast: Option<fast::FastEncoder>,
    encoder: Encoder,
    specials_in_text: SpecialTokensInText,
    added: AddedTokens,
    cuts: cuts::CutRule,
    path: PathBuf,
    identity: TokenizerIdentity,
}

/// The added tokens, to find their literal strings in text.
struct AddedTokens {
    /// Every added token's content; pattern i is `tokens[i]`.
    matcher: Option<AhoCorasick>,
    tokens: Vec<tokenizers::AddedToken>,
    /// Bytes of the longest content.
    longest: usize,
}

impl AddedTokens {
    fn new(reference: &tokenizers::Tokenizer) -> Self {
        let mut decoder: Vec<_> = reference.get_added_tokens_decoder().into_iter().collect();
        decoder.sort_by_key(|(id, _)| *id);
        let tokens: Vec<tokenizers::AddedToken> =
            decoder.into_iter().map(|(_, t)| t).filter(|t| !t.content.is_empty()).collect();
        let matcher = (!tokens.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(tokens.iter().map(|t| t.content.as_str()))
                .expect("added tokens build an automaton")
        });
        let longest = tokens.iter().map(|t| t.content.len()).max().unwrap_or(0);
        Self { matcher, tokens, longest }
    }

    /// Literal special-token strings in `text`: how many, and the first.
    fn specials_in(&self, text: &str) -> (u64, Option<&str>) {
        let Some(matcher) = &self.matcher else { return (0, None) };
        let mut count = 0;
        let mut first = None;
        for m in matcher.find_iter(text) {
            let token = &self.tokens[m.pattern().as_usize()];
            if token.special {
                count += 1;
                first.get_or_insert(token.content.as_str());
            }
        }
        (count, first)
    }
}

thread_local! {
    static FAST_SCRATCH: RefCell<Vec<tokenizers1::pipeline::PipelineToken>> = const { RefCell::new(Vec::new()) };
}

impl TextTokenizer {
    /// Load `tokenizer.json`; `eos` defaults to the first of [`EOS_CANDIDATES`] in the vocabulary.
    pub fn from_file(path: &Path, eos: Option<&EosSpec>, bos: Option<&EosSpec>) -> Result<Self, TokenizeError> {
        Self::load(path, eos, bos, true)
    }

    /// Load with 0.23 only (for comparisons: the benchmark's baseline and the identity tests).
    pub fn reference_only(path: &Path, eos: Option<&EosSpec>, bos: Option<&EosSpec>) -> Result<Self, TokenizeError> {
        Self::load(path, eos, bos, false)
    }

    fn load(path: &Path, eos: Option<&EosSpec>, bos: Option<&EosSpec>, try_fast: bool) -> Result<Self, TokenizeError> {
        let (bytes, reference, vocab_size) = load(path)?;
        let resolve = |spec: &EosSpec, what: &'static str| match spec {
            EosSpec::Id(id) if (*id as usize) < vocab_size => Ok(*id),
            EosSpec::Id(id) => Err(TokenizeError::IdOutOfRange { path: path.to_path_buf(), what, id: *id, vocab_size }),
            EosSpec::Token(t) => reference.token_to_id(t).ok_or_else(|| TokenizeError::UnknownToken {
                path: path.to_path_buf(),
                what,
                token: t.clone(),
            }),
        };
        let eos_id = match eos {
            Some(spec) => resolve(spec, "EOS")?,
            None => EOS_CANDIDATES
                .iter()
                .find_map(|t| reference.token_to_id(t))
                .ok_or(TokenizeError::NoEos { path: path.to_path_buf(), candidates: EOS_CANDIDATES })?,
        };
        let bos_id = bos.map(|b| resolve(b, "BOS")).transpose()?;
        let mut reference_split = reference.clone();
        reference_split.set_encode_special_tokens(true);
        let mut tokenizer = Self {
            added: AddedTokens::new(&reference),
            cuts: cuts::CutRule::for_tokenizer(&bytes),
            reference,
            reference_split,
            fast: None,
            encoder: Encoder::Reference { why: "not tried".into() },
            specials_in_text: SpecialTokensInText::default(),
            path: path.to_path_buf(),
            identity: TokenizerIdentity::new(bytes_checksum(&bytes), vocab_size, eos_id, bos_id),
        };
        if try_fast {
            tokenizer.encoder = match tokenizer.try_fast(&bytes, vocab_size) {
                Ok(fast) => {
                    let sentinels = fast.sentinels;
                    tokenizer.fast = Some(fast);
                    Encoder::Fast { sentinels }
                }
                Err(refusal) => Encoder::Reference { why: refusal.to_string() },
            };
        } else {
            tokenizer.encoder = Encoder::Reference { why: "asked for the reference encoder".into() };
        }
        tokenizer.check_cut_rule();
        tokenizer.set_identity();
        Ok(tokenizer)
    }

    /// Load 1.x and hold it to 0.23's ids on the probes, in both special-token modes.
    fn try_fast(&self, bytes: &[u8], vocab_size: usize) -> Result<fast::FastEncoder, FastRefusal> {
        let json = std::str::from_utf8(bytes)?;
        let fast = fast::FastEncoder::load(json, vocab_size as u32).map_err(FastRefusal::Refused)?;
        let mut scratch = Vec::new();
        for specials_as_text in [true, false] {
            for probe in probes::adversarial().iter().chain([&probes::long_mixed()]) {
                let want = self.reference_ids(probe, specials_as_text)?;
                let mut got = Vec::new();
                match fast.encode(probe, specials_as_text, &mut scratch, &mut got) {
                    Ok(fast::FastOutcome::Encoded) if got != want => {
                        let head: String = probe.chars().take(40).collect();
                        return Err(FastRefusal::OtherIds { head });
                    }
                    Ok(_) => {}
                    Err(e) => return Err(FastRefusal::Failed(e)),
                }
            }
        }
        Ok(fast)
    }

    fn set_identity(&mut self) {
        self.identity.encoder = Some(self.encoder_name());
        self.identity.special_tokens_in_text = Some(self.specials_in_text.as_str().to_string());
    }

    /// The encoder with its exact version and, where it is not 1.x alone, why: for the log and
    /// the manifest alike.
    fn encoder_name(&self) -> String {
        let fast = fast::VERSION;
        match &self.encoder {
            Encoder::Fast { sentinels: 0 } => format!("tokenizers {fast}"),
            Encoder::Fast { .. } if self.fast.as_ref().is_some_and(|f| f.rewrites_unknown_chars()) => format!(
                "tokenizers {fast} (no <0xNN> byte tokens: characters outside the vocabulary become unk, as in {REFERENCE_VERSION})"
            ),
            Encoder::Fast { sentinels } => {
                format!(
                    "tokenizers {fast} ({sentinels} bytes its vocabulary lacks: texts with them go to {REFERENCE_VERSION})"
                )
            }
            Encoder::Reference { why } => format!("tokenizers {REFERENCE_VERSION} ({why})"),
        }
    }

    /// What a special token's literal string in a document becomes (default: [`SpecialTokensInText::Split`]).
    pub fn with_special_tokens_in_text(mut self, mode: SpecialTokensInText) -> Self {
        self.specials_in_text = mode;
        self.set_identity();
        self
    }

    /// Load a tokenizer only to decode ids; no EOS is needed (the identity's `eos_id` is then 0
    /// unless a common EOS token is found).
    pub fn for_decoding(path: &Path) -> Result<Self, TokenizeError> {
        match Self::from_file(path, None, None) {
            Err(TokenizeError::NoEos { .. }) => Self::from_file(path, Some(&EosSpec::Id(0)), None),
            other => other,
        }
    }

    pub fn identity(&self) -> &TokenizerIdentity {
        &self.identity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn vocab_size(&self) -> usize {
        self.identity.vocab_size
    }

    pub fn eos_id(&self) -> u32 {
        self.identity.eos_id
    }

    /// Which encoder serves this tokenizer, and why.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// One line for logs: the encoder and, for long documents, where they are cut.
    pub fn describe(&self) -> String {
        format!("{}: encoder {}; long documents {}", self.path.display(), self.encoder_name(), self.cuts.describe())
    }

    /// The ids of `text` (no BOS/EOS), special-token strings treated as configured.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut out = Vec::new();
        self.encode_in_pieces(text, ENCODE_PIECE_BYTES, self.specials_in_text, &mut out)?;
        Ok(out)
    }

    /// A document as it goes into a shard: optional BOS, the text's ids, EOS. Long texts are
    /// encoded in pieces with the ids of the whole.
    pub fn encode_document(&self, text: &str, out: &mut Vec<u32>) -> Result<DocumentEncoding, TokenizeError> {
        self.encode_document_as(text, self.specials_in_text, out)
    }

    /// [`Self::encode_document`] with special-token strings treated as `mode` says.
    fn encode_document_as(
        &self,
        text: &str,
        mode: SpecialTokensInText,
        out: &mut Vec<u32>,
    ) -> Result<DocumentEncoding, TokenizeError> {
        out.clear();
        out.extend(self.identity.bos_id);
        let found = self.encode_in_pieces(text, ENCODE_PIECE_BYTES, mode, out)?;
        out.push(self.identity.eos_id);
        Ok(found)
    }

    /// A rendered chat as transformers tokenizes it: special-token strings are the special
    /// tokens (the template's own markers), with the ids [`Self::encode_document`] gives in
    /// `keep` mode. With `spans` (byte ranges of assistant turns), `mask` gets one byte per id: 1
    /// where the token overlaps a span, and on the final EOS when the last span ends the text
    /// (the conversation ends with the assistant's turn), 0 elsewhere (BOS included).
    pub fn encode_chat_document(
        &self,
        text: &str,
        spans: Option<&[std::ops::Range<u32>]>,
        ids: &mut Vec<u32>,
        mask: &mut Vec<u8>,
    ) -> Result<DocumentEncoding, TokenizeError> {
        mask.clear();
        let Some(spans) = spans else {
            return self.encode_document_as(text, SpecialTokensInText::Keep, ids);
        };
        ids.clear();
        ids.extend(self.identity.bos_id);
        mask.extend(self.identity.bos_id.map(|_| 0u8));
        let (specials, _) = self.added.specials_in(text);
        let mut rest = text;
        let mut start = 0usize;
        let overlaps = |s: usize, e: usize| spans.iter().any(|span| s < span.end as usize && e > span.start as usize);
        loop {
            let cut = self.next_cut(rest, ENCODE_PIECE_BYTES, SpecialTokensInText::Keep)?;
            let piece = &rest[..cut.unwrap_or(rest.len())];
            let encoding = self
                .reference
                .encode(piece, false)
                .map_err(|source| TokenizeError::Encode { what: format!("{} bytes of text", piece.len()), source })?;
            ids.extend_from_slice(encoding.get_ids());
            mask.extend(encoding.get_offsets().iter().map(|&(s, e)| u8::from(overlaps(start + s, start + e))));
            let Some(cut) = cut else { break };
            start += cut;
            rest = &rest[cut..];
        }
        ids.push(self.identity.eos_id);
        mask.push(u8::from(spans.last().is_some_and(|s| s.end as usize == text.len())));
        Ok(DocumentEncoding { special_tokens_in_text: specials, reference_pieces: 0 })
    }

    fn encode_in_pieces(
        &self,
        text: &str,
        piece: usize,
        mode: SpecialTokensInText,
        out: &mut Vec<u32>,
    ) -> Result<DocumentEncoding, TokenizeError> {
        let (specials, first) = self.added.specials_in(text);
        if let (SpecialTokensInText::Error, Some(token)) = (mode, first) {
            return Err(TokenizeError::SpecialTokenInText { token: token.to_string() });
        }
        let mut found = DocumentEncoding { special_tokens_in_text: specials, reference_pieces: 0 };
        let mut rest = text;
        let as_text = mode != SpecialTokensInText::Keep;
        while let Some(cut) = self.next_cut(rest, piece, mode)? {
            found.reference_pieces += self.encode_piece(&rest[..cut], as_text, out)? as u64;
            rest = &rest[cut..];
        }
        found.reference_pieces += self.encode_piece(rest, as_text, out)? as u64;
        Ok(found)
    }

    /// Encode one piece; true when 0.23 encoded it.
    fn encode_piece(&self, text: &str, specials_as_text: bool, out: &mut Vec<u32>) -> Result<bool, TokenizeError> {
        if let Some(fast) = &self.fast {
            let outcome = FAST_SCRATCH
                .with_borrow_mut(|scratch| fast.encode(text, specials_as_text, scratch, out))
                .map_err(|source| TokenizeError::Encode { what: format!("{} bytes of text", text.len()), source })?;
            if let fast::FastOutcome::Encoded = outcome {
                return Ok(false);
            }
        }
        out.extend(self.reference_ids(text, specials_as_text)?);
        Ok(true)
    }

    fn reference_ids(&self, text: &str, specials_as_text: bool) -> Result<Vec<u32>, TokenizeError> {
        let tokenizer = if specials_as_text { &self.reference_split } else { &self.reference };
        let encoding = tokenizer
            .encode_fast(text, false)
            .map_err(|source| TokenizeError::Encode { what: format!("{} bytes of text", text.len()), source })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included so that EOS stays visible.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.reference
            .decode(ids, false)
            .map_err(|source| TokenizeError::Encode { what: format!("decoding {} ids", ids.len()), source })
    }

    /// The 0.23 tokenizer (decoding, vocabulary lookups, the benchmark's baseline).
    pub fn reference(&self) -> &tokenizers::Tokenizer {
        &self.reference
    }
}

/// Why 1.x does not encode a tokenizer (the text goes into the manifest's encoder name).
#[derive(Debug, thiserror::Error)]
enum FastRefusal {
    #[error("{0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    #[error("1.x refused it: {0}")]
    Refused(LibraryError),
    #[error("{0}")]
    Reference(#[from] TokenizeError),
    #[error("1.x gave other ids than 0.23 for the probe {head:?}")]
    OtherIds { head: String },
    #[error("1.x failed on a probe: {0}")]
    Failed(LibraryError),
}

/// The 0.23 release the ids are held to.
pub const REFERENCE_VERSION: &str = "0.23.2";

/// Documents above this are encoded in pieces (cut where the tokenizer splits anyway).
pub const ENCODE_PIECE_BYTES: usize = 1 << 20;

/// Read and parse a tokenizer file; the vocabulary size is the largest id + 1 (ids can have
/// holes). Truncation and padding in the file are switched off: a document is never cut short.
fn load(path: &Path) -> Result<(Vec<u8>, tokenizers::Tokenizer, usize), TokenizeError> {
    let err = |source: LibraryError| TokenizeError::Load { path: path.to_path_buf(), source };
    let bytes = std::fs::read(path).map_err(|e| err(e.into()))?;
    let mut inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(err)?;
    inner.with_truncation(None).map_err(err)?;
    inner.with_padding(None);
    let vocab_size = inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
    Ok((bytes, inner, vocab_size))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn eos_spec_parses_ids_and_tokens() {
        assert_eq!(EosSpec::parse("0"), EosSpec::Id(0));
        assert_eq!(EosSpec::parse("</s>"), EosSpec::Token("</s>".into()));
    }

    #[test]
    fn missing_and_invalid_tokenizer_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = TextTokenizer::from_file(&missing, None, None).err().unwrap().to_string();
        assert!(err.contains("nope.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        let err = TextTokenizer::from_file(&bad, None, None).err().unwrap().to_string();
        assert!(err.contains("bad.json") && err.contains("cannot read tokenizer"), "{err}");
    }
}
