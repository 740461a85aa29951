//! Tokenization with HF `tokenizers` from any `tokenizer.json`, plus the document framing
//! (optional BOS, EOS appended) that the shards expect.

use std::path::{Path, PathBuf};

use mixtures::TokenizerIdentity;
use mixtures::fsutil::bytes_checksum;

#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    #[error("{path}: cannot read tokenizer: {message}")]
    Load { path: PathBuf, message: String },
    #[error("{path}: {what} token {token:?} is not in the vocabulary; pass the token string or id your model uses")]
    UnknownToken { path: PathBuf, what: &'static str, token: String },
    #[error("{path}: {what} id {id} is outside the vocabulary of {vocab_size} ids")]
    IdOutOfRange { path: PathBuf, what: &'static str, id: u32, vocab_size: usize },
    #[error("{path}: no end-of-document token given and none of {candidates:?} is in the vocabulary; pass --eos TOKEN")]
    NoEos { path: PathBuf, candidates: &'static [&'static str] },
    #[error("tokenizing {what}: {message}")]
    Encode { what: String, message: String },
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
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    identity: TokenizerIdentity,
}

impl TextTokenizer {
    /// Load `tokenizer.json`; `eos` defaults to the first of [`EOS_CANDIDATES`] in the vocabulary.
    pub fn from_file(path: &Path, eos: Option<&EosSpec>, bos: Option<&EosSpec>) -> Result<Self, TokenizeError> {
        let (bytes, inner, vocab_size) = load(path)?;
        let resolve = |spec: &EosSpec, what: &'static str| match spec {
            EosSpec::Id(id) if (*id as usize) < vocab_size => Ok(*id),
            EosSpec::Id(id) => Err(TokenizeError::IdOutOfRange { path: path.to_path_buf(), what, id: *id, vocab_size }),
            EosSpec::Token(t) => inner.token_to_id(t).ok_or_else(|| TokenizeError::UnknownToken {
                path: path.to_path_buf(),
                what,
                token: t.clone(),
            }),
        };
        let eos_id = match eos {
            Some(spec) => resolve(spec, "EOS")?,
            None => EOS_CANDIDATES
                .iter()
                .find_map(|t| inner.token_to_id(t))
                .ok_or(TokenizeError::NoEos { path: path.to_path_buf(), candidates: EOS_CANDIDATES })?,
        };
        let bos_id = bos.map(|b| resolve(b, "BOS")).transpose()?;
        let identity = TokenizerIdentity { content_hash: bytes_checksum(&bytes), vocab_size, eos_id, bos_id };
        Ok(Self { inner, path: path.to_path_buf(), identity })
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

    /// The raw ids `tokenizers` gives for `text` (no special tokens added).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| TokenizeError::Encode {
            what: format!("{} bytes of text", text.len()),
            message: e.to_string(),
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// A document as it goes into a shard: optional BOS, the text's ids, EOS.
    pub fn encode_document(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizeError> {
        out.clear();
        out.extend(self.identity.bos_id);
        out.extend(self.encode_text(text)?);
        out.push(self.identity.eos_id);
        Ok(())
    }

    /// Text of `ids`, special tokens included so that EOS stays visible.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizeError::Encode { what: format!("decoding {} ids", ids.len()), message: e.to_string() })
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Read and parse a tokenizer file; the vocabulary size is the largest id + 1 (ids can have holes).
fn load(path: &Path) -> Result<(Vec<u8>, tokenizers::Tokenizer, usize), TokenizeError> {
    let err = |message: String| TokenizeError::Load { path: path.to_path_buf(), message };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| err(e.to_string()))?;
    let vocab_size = inner.get_vocab(true).values().map(|&id| id as usize + 1).max().unwrap_or(0);
    Ok((bytes, inner, vocab_size))
}

#[cfg(test)]
mod tests {
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
