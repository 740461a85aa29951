//! The fast encoder: HF `tokenizers` 1.x (`tokenizers1`), which reads a `tokenizer.json` after
//! converting it to its 2.0 format and encodes ids only, many times faster than 0.23.
//!
//! Some vocabularies it refuses although 0.23 encodes them: a byte-level BPE without a token for
//! every byte (SmolLM2 has none for 0x04, 0x06, ...) and a byte-fallback BPE without every
//! `<0xNN>` token (TinyStories). For those it is given the missing entries under ids past the
//! real vocabulary ("sentinels"). A sentinel in the output means the text holds what only 0.23
//! knows how to encode (it drops or maps such bytes its own way), so that text goes to 0.23 —
//! every other text, the vast majority, stays on the fast path with the same ids.
//!
//! One case is common enough to emulate instead: a byte-fallback BPE with no `<0xNN>` token at
//! all (TinyStories), where 0.23 turns every character outside the vocabulary into `unk`
//! (consecutive ones fused into one with `fuse_unk`). Each such character comes out of 1.x as
//! its UTF-8 bytes in sentinels, which are rewritten to 0.23's `unk` ids; the load-time probe
//! holds the rewrite to 0.23's ids like everything else.

use serde_json::Value;

use super::LibraryError;
use tokenizers1::pipeline::{EncodeOptions, Override, PipelineToken, PipelineTokenizer};

/// The exact version, written into every manifest that used it.
pub const VERSION: &str = "1.0.0-rc.3";

#[derive(Clone, Copy)]
struct UnknownChars {
    unk_id: u32,
    fuse: bool,
}

pub struct FastEncoder {
    inner: PipelineTokenizer,
    /// Ids at or above this were added by the loader; see the module comment.
    first_sentinel: u32,
    /// How many entries the loader added (0: the vocabulary was taken as it is).
    pub sentinels: usize,
    /// Set when the sentinels are all 256 `<0xNN>` (id `first_sentinel + byte`) and can be
    /// rewritten to 0.23's `unk`.
    unknown_chars: Option<UnknownChars>,
    options_split: EncodeOptions,
    options_keep: EncodeOptions,
}

/// What the fast encoder made of one text.
pub enum FastOutcome {
    Encoded,
    /// The text needs an entry 0.23 encodes its own way; nothing was appended.
    NeedsReference,
}

impl FastEncoder {
    /// Load `json` (a 0.2x `tokenizer.json`) into 1.x. `first_free_id` is one past the largest
    /// id of the vocabulary and its added tokens. An error is 1.x's reason to refuse it.
    pub fn load(json: &str, first_free_id: u32) -> Result<Self, LibraryError> {
        let canonical = tokenizers1::canonicalize_str(json)?;
        let mut doc: Value = serde_json::from_str(&canonical)?;
        let mut next_id = first_free_id;
        let fallback_added = add_missing_byte_fallback(&mut doc, &mut next_id);
        let unknown_chars = unknown_chars_rule(&doc, fallback_added);
        let mut added_atoms = false;
        let inner = loop {
            let text = serde_json::to_string(&doc)?;
            match tokenizers1::from_json(&text) {
                Ok(t) => break t,
                Err(e) => match e.downcast_ref::<tokenizers1::models::bpe::Error>() {
                    Some(tokenizers1::models::bpe::Error::ByteAtomOutOfVocabulary(bytes)) if !added_atoms => {
                        add_byte_atoms(&mut doc, bytes, &mut next_id);
                        added_atoms = true;
                    }
                    _ => return Err(e),
                },
            }
        };
        let no_extras = EncodeOptions {
            add_special_tokens: false,
            encode_special_tokens: false,
            padding: Override::Off,
            truncation: Override::Off,
        };
        let options_split = EncodeOptions { encode_special_tokens: true, ..no_extras.clone() };
        Ok(Self {
            inner,
            first_sentinel: first_free_id,
            sentinels: (next_id - first_free_id) as usize,
            unknown_chars,
            options_split,
            options_keep: no_extras,
        })
    }

    /// Append the ids of `text` to `out` (special-token strings in it encoded as text when
    /// `specials_as_text`), or say that 0.23 must encode it.
    pub fn encode(
        &self,
        text: &str,
        specials_as_text: bool,
        scratch: &mut Vec<PipelineToken>,
        out: &mut Vec<u32>,
    ) -> Result<FastOutcome, LibraryError> {
        scratch.clear();
        let options = if specials_as_text { &self.options_split } else { &self.options_keep };
        self.inner.encode_into(text, options, scratch)?;
        let ids = PipelineToken::cast_slice(scratch);
        if self.sentinels == 0 || !ids.iter().any(|&id| id >= self.first_sentinel) {
            out.extend_from_slice(ids);
            return Ok(FastOutcome::Encoded);
        }
        match self.unknown_chars {
            Some(rule) => {
                self.rewrite_unknown_chars(ids, rule, out);
                Ok(FastOutcome::Encoded)
            }
            None => Ok(FastOutcome::NeedsReference),
        }
    }

    /// Each run of sentinel bytes spelling one character becomes one `unk` (adjacent ones one
    /// `unk` in all with `fuse`), as 0.23's byte fallback does when the `<0xNN>` are missing.
    fn rewrite_unknown_chars(&self, ids: &[u32], rule: UnknownChars, out: &mut Vec<u32>) {
        let mut i = 0;
        let mut after_unknown = false;
        while i < ids.len() {
            let id = ids[i];
            if id < self.first_sentinel {
                out.push(id);
                after_unknown = false;
                i += 1;
                continue;
            }
            let lead = (id - self.first_sentinel) as u8;
            let len = match lead {
                0xF0..=0xFF => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
            if !(after_unknown && rule.fuse) {
                out.push(rule.unk_id);
            }
            after_unknown = true;
            i += len;
        }
    }

    /// True when the sentinels are rewritten to `unk` rather than sent to 0.23.
    pub fn rewrites_unknown_chars(&self) -> bool {
        self.unknown_chars.is_some()
    }

    /// True when the tokenizer normalizes before pre-tokenizing (the cut finder then uses 0.23,
    /// which maps normalized positions back to the text).
    pub fn has_normalizers(&self) -> bool {
        !self.inner.get_normalizers().is_empty()
    }

    /// Start offsets of the pre-tokens of `text` (no normalizers; see [`Self::has_normalizers`]).
    pub fn pre_token_starts(&self, text: &str, out: &mut Vec<usize>) -> Result<(), LibraryError> {
        use tokenizers1::pipeline::{PreTokenizer, PreTokenizerScratch};
        let mut scratch = PreTokenizerScratch::default();
        let mut spans = Vec::new();
        self.inner.get_pre_tokenizer().pre_tokenize(text, &mut scratch, &mut spans)?;
        out.clear();
        out.extend(spans.iter().map(|s| s.start as usize));
        Ok(())
    }
}

/// A byte-fallback BPE (not byte-level) must hold all 256 `<0xNN>` tokens in 1.x. Returns how
/// many were added.
fn add_missing_byte_fallback(doc: &mut Value, next_id: &mut u32) -> usize {
    let model = &mut doc["model"];
    let wanted = model["byte_fallback"].as_bool() == Some(true) && model["byte_level"].as_bool() != Some(true);
    let mut added = 0;
    if let (true, Some(vocab)) = (wanted, model["vocab"].as_object_mut()) {
        for byte in 0..=255u8 {
            let token = format!("<0x{byte:02X}>");
            if !vocab.contains_key(&token) {
                vocab.insert(token, Value::from(*next_id));
                *next_id += 1;
                added += 1;
            }
        }
    }
    added
}

/// When 0.23's handling of characters outside the vocabulary can be rebuilt from 1.x's output:
/// every `<0xNN>` was missing, there is an `unk`, and fused `unk`s cannot span two pre-tokens
/// (no pre-tokenizer, or no fusing).
fn unknown_chars_rule(doc: &Value, fallback_added: usize) -> Option<UnknownChars> {
    let model = &doc["model"];
    let unk_id = model["vocab"].get(model["unk_token"].as_str()?)?.as_u64()? as u32;
    let fuse = model["fuse_unk"].as_bool() == Some(true);
    (fallback_added == 256 && (!fuse || doc["pre_tokenizer"].is_null())).then_some(UnknownChars { unk_id, fuse })
}

/// Give a byte-level BPE single-byte tokens for `bytes`, in GPT-2's byte-to-character spelling.
fn add_byte_atoms(doc: &mut Value, bytes: &[u8], next_id: &mut u32) {
    if let Some(vocab) = doc["model"]["vocab"].as_object_mut() {
        for &b in bytes {
            let token = byte_level_char(b).to_string();
            if !vocab.contains_key(&token) {
                vocab.insert(token, Value::from(*next_id));
                *next_id += 1;
            }
        }
    }
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the others for
/// U+0100 onwards in byte order.
fn byte_level_char(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).expect("below U+0200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_spelling_is_gpt2s() {
        assert_eq!(byte_level_char(b' '), 'Ġ');
        assert_eq!(byte_level_char(b'\n'), 'Ċ');
        assert_eq!(byte_level_char(0), '\u{100}');
        assert_eq!(byte_level_char(b'a'), 'a');
        assert_eq!(byte_level_char(0xAD), 'Ń');
    }
}
