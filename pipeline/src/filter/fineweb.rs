//! `fineweb_quality`: FineWeb's own line-level rules (Penedo et al. 2024) as datatrove 0.10's
//! `FineWebQualityFilter` applies them. Reasons: `empty`, `line_punct_ratio`,
//! `short_line_ratio`, `char_dup_ratio`, `list_ratio`.

use serde::{Deserialize, Serialize};

use super::{Filter, Verdict};
use crate::document::Document;
use crate::text::punctuation::is_terminal_punctuation;
use crate::text::python::{self, find_duplicates};
use crate::text::words::split_into_words;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineWebConfig {
    pub line_punct_thr: f64,
    pub line_punct_exclude_zero: bool,
    pub short_line_thr: f64,
    pub short_line_length: usize,
    pub char_duplicates_ratio: f64,
    pub new_line_ratio: f64,
}

impl Default for FineWebConfig {
    fn default() -> Self {
        Self {
            line_punct_thr: 0.12,
            line_punct_exclude_zero: false,
            short_line_thr: 0.67,
            short_line_length: 30,
            char_duplicates_ratio: 0.01,
            new_line_ratio: 0.3,
        }
    }
}

pub struct FineWebFilter(pub FineWebConfig);

impl Filter for FineWebFilter {
    fn name(&self) -> &str {
        "fineweb_quality"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let c = &self.0;
        let text = doc.text.as_str();
        let lines: Vec<&str> = text.split('\n').filter(|l| !python::strip(l).is_empty()).collect();
        if lines.is_empty() {
            return Verdict::drop("empty");
        }
        let n = lines.len() as f64;
        let punct = lines.iter().filter(|l| l.chars().next_back().is_some_and(is_terminal_punctuation)).count() as f64;
        let ratio = punct / n;
        if ratio < c.line_punct_thr && !(ratio == 0.0 && c.line_punct_exclude_zero) {
            return Verdict::drop("line_punct_ratio");
        }
        let short = lines.iter().filter(|l| python::len(l) <= c.short_line_length).count() as f64;
        if short / n > c.short_line_thr {
            return Verdict::drop("short_line_ratio");
        }
        let (_, dup_chars) = find_duplicates(lines.iter().copied());
        let chars_without_newlines = python::len(text) - text.matches('\n').count();
        if dup_chars as f64 / chars_without_newlines as f64 > c.char_duplicates_ratio {
            return Verdict::drop("char_dup_ratio");
        }
        let words = split_into_words(text).len();
        if text.matches('\n').count() as f64 / words as f64 > c.new_line_ratio {
            return Verdict::drop("list_ratio");
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Verdict {
        FineWebFilter(FineWebConfig::default()).apply(&mut Document::new("d".into(), text.into(), "f".into(), 0))
    }

    fn sentence(i: usize) -> String {
        format!("Line number {i} is a long enough sentence about topic {i}.")
    }

    #[test]
    fn punctuation_ratio_threshold() {
        assert_eq!(verdict(" \n\n"), Verdict::drop("empty"));
        // 1 of 8 lines ends in punctuation: 0.125 >= 0.12; 1 of 9 = 0.111 < 0.12
        let mut lines: Vec<String> = (0..7).map(|i| format!("{} without a full stop", sentence(i))).collect();
        lines.push(sentence(99));
        assert_eq!(verdict(&lines.join("\n")), Verdict::Keep);
        lines.insert(0, "another long line without punctuation at its end".into());
        assert_eq!(verdict(&lines.join("\n")), Verdict::drop("line_punct_ratio"));
        // A trailing space or \r hides the full stop (lines are not stripped).
        assert_eq!(
            verdict("A long line that ends with a stop. \nAnother long line, also with a stop.\r"),
            Verdict::drop("line_punct_ratio")
        );
    }

    #[test]
    fn short_lines_duplicates_and_lists() {
        let long: Vec<String> = (0..3).map(sentence).collect();
        let mut text = long.join("\n");
        text.push_str("\nShort one.\nShort two.\nShort three.\nShort four.\nShort five.\nShort six.");
        // 6 of 9 short: 0.667 is not > 0.67; 7 of 10 is.
        assert_eq!(verdict(&text), Verdict::Keep);
        assert_eq!(verdict(&format!("{text}\nShort seven.")), Verdict::drop("short_line_ratio"));
        let dup: Vec<String> = (0..20).map(sentence).chain([sentence(3)]).collect();
        assert_eq!(verdict(&dup.join("\n")), Verdict::drop("char_dup_ratio"));
        // More than 0.3 newlines per word.
        let list: Vec<String> = (0..10).map(|i| format!("Item {i}.")).collect();
        let text = format!("{}\n\n\n\n\n\n\n\n{}", sentence(0), list.join("\n"));
        assert_eq!(verdict(&text), Verdict::drop("short_line_ratio"));
        let lines: Vec<String> = (0..5).map(sentence).collect();
        assert_eq!(verdict(&lines.join("\n\n\n\n\n\n\n\n")), Verdict::drop("list_ratio"));
    }
}
