//! Where a long document may be cut so that encoding the pieces one after another gives the
//! ids of encoding it whole: only where the tokenizer itself starts afresh.
//!
//! Two kinds of places qualify. The end of an added token that the encoder extracts: the text
//! after it is a new segment, normalized and pre-tokenized from its own start. And, inside a
//! segment, the start of a pre-token (a regex split), provided the normalizer does not depend
//! on where a text starts (`Prepend`, `Strip` do) and the pre-token before it ends in a
//! non-space: how a whitespace run splits depends on what follows it (`\s+(?!\S)`), so
//! "!\n\n" then "New" is two pre-tokens "\n", "\n" in the whole text but one "\n\n" at the end
//! of a piece. A window of the text is pre-tokenized from a segment start; its last two
//! pre-tokens may continue past the window, so the cut is at the start of an earlier one. A single pre-token longer than the window (3 MB of letters with no
//! space, a CJK paragraph) is never cut: the window grows until the text ends, and memory then
//! grows with that pre-token. At load the rule is checked on [`super::probes::long_mixed`] cut
//! into small pieces; where it fails, a stricter rule is used, or none.

use tokenizers::{Normalizer, OffsetReferential, OffsetType, PreTokenizer};

use super::{LibraryError, SpecialTokensInText, TextTokenizer, TokenizeError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CutRule {
    /// At segment starts and at pre-token starts inside segments.
    Anywhere,
    /// Only where an extracted added token ends a segment.
    SegmentStarts,
    /// Never: long documents are encoded whole.
    Never(String),
}

impl CutRule {
    /// The rule a tokenizer's structure allows (the load-time check may make it stricter).
    pub(super) fn for_tokenizer(json: &[u8]) -> Self {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(json) else { return Self::SegmentStarts };
        let position_dependent = |n: &serde_json::Value| matches!(n["type"].as_str(), Some("Prepend" | "Strip"));
        let normalizer = &doc["normalizer"];
        let normalizers: Vec<&serde_json::Value> = match normalizer["normalizers"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![normalizer],
        };
        if doc["pre_tokenizer"].is_null() || normalizers.into_iter().any(position_dependent) {
            Self::SegmentStarts
        } else {
            Self::Anywhere
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Anywhere => "cut at pre-tokenizer splits".into(),
            Self::SegmentStarts => "cut only after added tokens (the normalizer depends on where a text starts)".into(),
            Self::Never(why) => format!("encoded whole ({why})"),
        }
    }
}

impl TextTokenizer {
    /// Replace the structural rule by the strictest one that passes the probe, in both
    /// special-token modes.
    pub(super) fn check_cut_rule(&mut self) {
        let probe = super::probes::long_mixed();
        let mut rule = self.cuts.clone();
        loop {
            self.cuts = rule.clone();
            let agrees = [SpecialTokensInText::Split, SpecialTokensInText::Keep].into_iter().all(|m| {
                let (mut whole, mut pieces) = (Vec::new(), Vec::new());
                self.encode_in_pieces(&probe, usize::MAX, m, &mut whole).is_ok()
                    && self.encode_in_pieces(&probe, 200, m, &mut pieces).is_ok()
                    && whole == pieces
            });
            if agrees || matches!(rule, CutRule::Never(_)) {
                break;
            }
            rule = match rule {
                CutRule::Anywhere => CutRule::SegmentStarts,
                _ => CutRule::Never("cutting changed the ids of the load-time probe".into()),
            };
        }
    }

    /// Where to cut `text` so that its first piece is at most about `piece` bytes; `None`: encode
    /// it whole.
    pub(super) fn next_cut(
        &self,
        text: &str,
        piece: usize,
        mode: SpecialTokensInText,
    ) -> Result<Option<usize>, TokenizeError> {
        if text.len() <= piece || matches!(self.cuts, CutRule::Never(_)) {
            return Ok(None);
        }
        let mut window = piece.max(1);
        while window < text.len() {
            if let Some(cut) = self.cut_before(text, floor_char_boundary(text, window), mode)? {
                return Ok(Some(cut));
            }
            window = window.saturating_mul(2);
        }
        Ok(None)
    }

    fn extracts(token: &tokenizers::AddedToken, mode: SpecialTokensInText) -> bool {
        !token.special || mode == SpecialTokensInText::Keep
    }

    /// The last safe cut before `end`.
    fn cut_before(&self, text: &str, end: usize, mode: SpecialTokensInText) -> Result<Option<usize>, TokenizeError> {
        // Segments: the text after the last extracted added token ending before `end`, up to the
        // next one (whose lstrip may eat whitespace before it).
        let (mut restart, mut limit) = (0, end);
        if let Some(matcher) = &self.added.matcher {
            let look = floor_char_boundary(text, end + self.added.longest);
            for m in matcher.find_iter(&text[..look]) {
                let token = &self.added.tokens[m.pattern().as_usize()];
                if !Self::extracts(token, mode) {
                    continue;
                }
                if m.end() <= end {
                    let after = if token.rstrip { whitespace_run(&text[m.end()..]) } else { 0 };
                    restart = m.end() + after;
                } else {
                    let before =
                        if token.lstrip { text[..m.start()].len() - text[..m.start()].trim_end().len() } else { 0 };
                    limit = limit.min(m.start() - before);
                    break;
                }
            }
        }
        if self.cuts == CutRule::Anywhere && restart < limit {
            let starts = self.pre_token_starts(&text[restart..limit])?;
            let segment = &text[restart..limit];
            let ends_a_word = |s: usize| segment[..s].chars().next_back().is_some_and(|c| !c.is_whitespace());
            if starts.len() > 2
                && let Some(&s) = starts[..starts.len() - 2].iter().rev().find(|&&s| s > 0 && ends_a_word(s))
            {
                return Ok(Some(restart + s));
            }
        }
        Ok((restart > 0 && restart <= limit && restart < text.len()).then_some(restart))
    }

    /// Start offsets (in `segment`) of its pre-tokens.
    fn pre_token_starts(&self, segment: &str) -> Result<Vec<usize>, TokenizeError> {
        let err = |source: LibraryError| TokenizeError::Encode {
            what: format!("pre-tokenizing {} bytes", segment.len()),
            source,
        };
        let mut starts = Vec::new();
        if let Some(fast) = self.fast.as_ref().filter(|f| !f.has_normalizers()) {
            fast.pre_token_starts(segment, &mut starts).map_err(err)?;
            return Ok(starts);
        }
        let mut normalized = tokenizers::NormalizedString::from(segment);
        if let Some(normalizer) = self.reference.get_normalizer() {
            normalizer.normalize(&mut normalized).map_err(err)?;
        }
        let mut pre = tokenizers::PreTokenizedString::from(normalized);
        let Some(pre_tokenizer) = self.reference.get_pre_tokenizer() else { return Ok(vec![0]) };
        pre_tokenizer.pre_tokenize(&mut pre).map_err(err)?;
        starts.extend(pre.get_splits(OffsetReferential::Original, OffsetType::Byte).iter().map(|(_, (s, _), _)| *s));
        Ok(starts)
    }
}

fn whitespace_run(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}
