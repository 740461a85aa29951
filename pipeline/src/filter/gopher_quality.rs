//! `gopher_quality`: the Gopher quality rules (Rae et al. 2021) as datatrove 0.10's
//! `GopherQualityFilter` applies them — same order, thresholds, reasons and word definition
//! (spaCy English tokens). Reasons: `gopher_short_doc`, `gopher_long_doc`,
//! `gopher_below_avg_threshold`, `gopher_above_avg_threshold`, `gopher_too_many_hashes`,
//! `gopher_too_many_ellipsis`, `gopher_too_many_bullets`, `gopher_too_many_end_ellipsis`,
//! `gopher_below_alpha_threshold`, `gopher_enough_stop_words`.

use serde::{Deserialize, Serialize};

use super::{Filter, Verdict};
use crate::document::Document;
use crate::text::punctuation::is_punctuation;
use crate::text::python::{self, is_alpha};
use crate::text::words::split_into_words;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherQualityConfig {
    pub min_doc_words: Option<usize>,
    pub max_doc_words: Option<usize>,
    pub min_avg_word_length: Option<f64>,
    pub max_avg_word_length: Option<f64>,
    pub max_symbol_word_ratio: Option<f64>,
    pub max_bullet_lines_ratio: Option<f64>,
    pub max_ellipsis_lines_ratio: Option<f64>,
    /// The minimum share of words with a letter (datatrove's name, despite "max").
    pub max_non_alpha_words_ratio: Option<f64>,
    pub min_stop_words: Option<usize>,
    pub stop_words: Vec<String>,
}

impl Default for GopherQualityConfig {
    fn default() -> Self {
        Self {
            min_doc_words: Some(50),
            max_doc_words: Some(100_000),
            min_avg_word_length: Some(3.0),
            max_avg_word_length: Some(10.0),
            max_symbol_word_ratio: Some(0.1),
            max_bullet_lines_ratio: Some(0.9),
            max_ellipsis_lines_ratio: Some(0.3),
            max_non_alpha_words_ratio: Some(0.8),
            min_stop_words: Some(2),
            stop_words: ["the", "be", "to", "of", "and", "that", "have", "with"].map(String::from).to_vec(),
        }
    }
}

pub struct GopherQualityFilter(pub GopherQualityConfig);

/// datatrove skips a check whose threshold is falsy (None or 0).
fn set<T: PartialEq + Default + Copy>(v: Option<T>) -> Option<T> {
    v.filter(|x| *x != T::default())
}

impl Filter for GopherQualityFilter {
    fn name(&self) -> &str {
        "gopher_quality"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let c = &self.0;
        let text = doc.text.as_str();
        let words = split_into_words(text);
        let n_words = words.len() as f64;
        let (mut non_symbol, mut non_symbol_chars) = (0usize, 0usize);
        for w in &words {
            if w.chars().any(|ch| !is_punctuation(ch)) {
                non_symbol += 1;
                non_symbol_chars += python::len(w);
            }
        }
        if set(c.min_doc_words).is_some_and(|m| non_symbol < m) {
            return Verdict::drop("gopher_short_doc");
        }
        if set(c.max_doc_words).is_some_and(|m| non_symbol > m) {
            return Verdict::drop("gopher_long_doc");
        }
        // mean of an empty list raises in Python; only reachable with min_doc_words unset.
        let avg = if non_symbol == 0 { f64::NAN } else { non_symbol_chars as f64 / non_symbol as f64 };
        if set(c.min_avg_word_length).is_some_and(|m| avg < m) {
            return Verdict::drop("gopher_below_avg_threshold");
        }
        if set(c.max_avg_word_length).is_some_and(|m| avg > m) {
            return Verdict::drop("gopher_above_avg_threshold");
        }
        if let Some(m) = set(c.max_symbol_word_ratio) {
            if text.matches('#').count() as f64 / n_words > m {
                return Verdict::drop("gopher_too_many_hashes");
            }
            let ellipses = text.matches("...").count() + text.matches('…').count();
            if ellipses as f64 / n_words > m {
                return Verdict::drop("gopher_too_many_ellipsis");
            }
        }
        let lines = python::splitlines(text);
        let n_lines = lines.len() as f64;
        if let Some(m) = set(c.max_bullet_lines_ratio) {
            let bullets = lines.iter().filter(|l| python::lstrip(l).starts_with(['•', '-'])).count();
            if bullets as f64 / n_lines > m {
                return Verdict::drop("gopher_too_many_bullets");
            }
        }
        if let Some(m) = set(c.max_ellipsis_lines_ratio) {
            let ending =
                lines.iter().filter(|l| python::rstrip(l).ends_with("...") || python::rstrip(l).ends_with('…'));
            if ending.count() as f64 / n_lines > m {
                return Verdict::drop("gopher_too_many_end_ellipsis");
            }
        }
        if let Some(m) = set(c.max_non_alpha_words_ratio) {
            let alpha = words.iter().filter(|w| w.chars().any(is_alpha)).count();
            if (alpha as f64) / n_words < m {
                return Verdict::drop("gopher_below_alpha_threshold");
            }
        }
        if let Some(m) = set(c.min_stop_words) {
            let found = c.stop_words.iter().filter(|s| words.contains(&s.as_str())).count();
            if found < m {
                return Verdict::drop("gopher_enough_stop_words");
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Verdict {
        GopherQualityFilter(GopherQualityConfig::default()).apply(&mut Document::new(
            "d".into(),
            text.into(),
            "f".into(),
            0,
        ))
    }

    /// `n` words of 4 letters with the two stop words "the" and "of" among them.
    fn prose(n: usize) -> String {
        let mut words = vec!["the", "of"];
        words.extend(std::iter::repeat_n("word", n - 2));
        words.join(" ")
    }

    #[test]
    fn word_count_bounds() {
        assert_eq!(verdict(&prose(50)), Verdict::Keep);
        assert_eq!(verdict(&prose(49)), Verdict::drop("gopher_short_doc"));
        // Symbol words do not count toward the 50.
        assert_eq!(verdict(&format!("{} ...", prose(49))), Verdict::drop("gopher_short_doc"));
    }

    #[test]
    fn average_word_length_bounds() {
        // 48 words of 3 letters + "the" (3) + "of" (2): mean (144 + 5) / 50 = 2.98 < 3
        let short = format!("the of {}", vec!["abc"; 48].join(" "));
        assert_eq!(verdict(&short), Verdict::drop("gopher_below_avg_threshold"));
        let ok = format!("the of {}", vec!["abcd"; 48].join(" "));
        assert_eq!(verdict(&ok), Verdict::Keep);
        // (48 * 11 + 5) / 50 = 10.66 > 10
        let long = format!("the of {}", vec!["abcdefghijk"; 48].join(" "));
        assert_eq!(verdict(&long), Verdict::drop("gopher_above_avg_threshold"));
    }

    #[test]
    fn hashes_and_ellipses_ratio() {
        // 100 words + k "#" words: '#' count / all words
        let base = prose(100);
        assert_eq!(verdict(&format!("{base}{}", " #".repeat(11))), Verdict::Keep, "11/111 = 0.099");
        assert_eq!(verdict(&format!("{base}{}", " #".repeat(12))), Verdict::drop("gopher_too_many_hashes"));
        assert_eq!(verdict(&format!("{base}{}", " …".repeat(12))), Verdict::drop("gopher_too_many_ellipsis"));
    }

    #[test]
    fn bullet_and_end_ellipsis_lines() {
        let line = "the of word word word word word word word word";
        let bulleted: Vec<String> = (0..10).map(|_| format!("- {line}")).collect();
        assert_eq!(verdict(&bulleted.join("\n")), Verdict::drop("gopher_too_many_bullets"));
        let nine: Vec<String> = (0..10).map(|i| if i < 9 { format!("• {line}") } else { line.into() }).collect();
        assert_eq!(verdict(&nine.join("\n")), Verdict::Keep, "9 of 10 bullet lines is not > 0.9");
        let dots: Vec<String> = (0..10).map(|i| if i < 4 { format!("{line} …") } else { line.into() }).collect();
        assert_eq!(verdict(&dots.join("\n")), Verdict::drop("gopher_too_many_end_ellipsis"));
        let three: Vec<String> = (0..10).map(|i| if i < 3 { format!("{line}...") } else { line.into() }).collect();
        assert_eq!(verdict(&three.join("\n")), Verdict::Keep);
    }

    #[test]
    fn alpha_ratio_and_stop_words() {
        // 80 alphabetic words and 20 numbers: 0.8 is not < 0.8
        let mut words = vec!["the".to_string(), "of".to_string()];
        words.extend((0..78).map(|_| "word".to_string()));
        words.extend((0..20).map(|i| format!("{}", 1000 + i)));
        assert_eq!(verdict(&words.join(" ")), Verdict::Keep);
        words.push("2024".into());
        assert_eq!(verdict(&words.join(" ")), Verdict::drop("gopher_below_alpha_threshold"));
        let one_stop = format!("the {}", vec!["word"; 60].join(" "));
        assert_eq!(verdict(&one_stop), Verdict::drop("gopher_enough_stop_words"));
        let capitalised = format!("The Of {}", vec!["word"; 60].join(" "));
        assert_eq!(verdict(&capitalised), Verdict::drop("gopher_enough_stop_words"), "case-sensitive");
    }
}
