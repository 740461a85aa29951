//! Sentence counting, an exact port of `len(split_into_sentences(text, "eng"))` in datatrove
//! 0.10.1: spaCy's rule-based `Sentencizer` over the tokens of [`super::words`]
//! (`docs/filters-reference.md` §3).

use super::words::{is_punct_token, is_sentence_punct, tokens};

/// Number of sentences datatrove's English splitter finds in `text`. datatrove returns one
/// (possibly empty) piece for a text without tokens, so this is never 0.
pub fn count_sentences(text: &str) -> usize {
    let mut sentences = 1;
    let mut seen_period = false;
    // Token 0 cannot start a new sentence: `seen_period` is still false there.
    for tok in tokens(text) {
        let is_period = is_sentence_punct(tok);
        // Whitespace tokens are not punctuation, so they can start a sentence.
        if seen_period && !is_period && !is_punct_token(tok) {
            sentences += 1;
            seen_period = false;
        } else if is_period {
            seen_period = true;
        }
    }
    sentences
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_vectors() {
        let data = include_str!("../filter/testdata/sentences.jsonl");
        let mut failures = Vec::new();
        let mut total = 0;
        for line in data.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
            let text = v["text"].as_str().expect("text");
            let expected = v["sentences"].as_array().expect("sentences").len();
            total += 1;
            let got = count_sentences(text);
            if got != expected {
                failures.push(format!("{text:?}: expected {expected}, got {got}"));
            }
        }
        assert!(failures.is_empty(), "{}/{total} vectors differ:\n{}", failures.len(), failures.join("\n"));
    }

    #[test]
    fn empty_and_whitespace_texts_are_one_sentence() {
        assert_eq!(count_sentences(""), 1);
        assert_eq!(count_sentences("  \n"), 1);
        assert_eq!(count_sentences("Wait.  ! Really."), 3);
        assert_eq!(count_sentences("Wait. ! Really."), 2);
    }
}
