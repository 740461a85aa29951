//! `length`: bounds on characters (code points) and whitespace-separated words.

use serde::{Deserialize, Serialize};

use super::{Filter, Verdict};
use crate::document::Document;
use crate::text::python;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthConfig {
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
    pub min_words: Option<usize>,
    pub max_words: Option<usize>,
}

pub struct LengthFilter(pub LengthConfig);

impl Filter for LengthFilter {
    fn name(&self) -> &str {
        "length"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let c = &self.0;
        if c.min_chars.is_some() || c.max_chars.is_some() {
            let chars = python::len(&doc.text);
            if c.min_chars.is_some_and(|m| chars < m) {
                return Verdict::drop("too_few_chars");
            }
            if c.max_chars.is_some_and(|m| chars > m) {
                return Verdict::drop("too_many_chars");
            }
        }
        if c.min_words.is_some() || c.max_words.is_some() {
            let words = python::split_whitespace(&doc.text).count();
            if c.min_words.is_some_and(|m| words < m) {
                return Verdict::drop("too_few_words");
            }
            if c.max_words.is_some_and(|m| words > m) {
                return Verdict::drop("too_many_words");
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(config: LengthConfig, text: &str) -> Verdict {
        LengthFilter(config).apply(&mut Document::new("d".into(), text.into(), "f".into(), 0))
    }

    #[test]
    fn bounds_are_inclusive_and_count_code_points() {
        let c = LengthConfig { min_chars: Some(5), max_chars: Some(6), ..Default::default() };
        assert_eq!(verdict(c.clone(), "héllo"), Verdict::Keep, "5 code points although 6 bytes");
        assert_eq!(verdict(c.clone(), "hell"), Verdict::drop("too_few_chars"));
        assert_eq!(verdict(c.clone(), "hello!"), Verdict::Keep);
        assert_eq!(verdict(c, "hello!!"), Verdict::drop("too_many_chars"));
        let w = LengthConfig { min_words: Some(2), max_words: Some(3), ..Default::default() };
        assert_eq!(verdict(w.clone(), "one"), Verdict::drop("too_few_words"));
        assert_eq!(verdict(w.clone(), " one\ttwo "), Verdict::Keep);
        assert_eq!(verdict(w, "a b c d"), Verdict::drop("too_many_words"));
    }
}
