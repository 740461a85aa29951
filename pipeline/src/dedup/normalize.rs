//! Text normalisation before hashing, so that copies differing only in case, digits,
//! punctuation, spacing or accents hash alike.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

use crate::text::punctuation::is_punctuation_string;
use crate::text::python::{self, is_decimal};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// The text as is.
    None,
    /// Whitespace runs folded to one space, ends stripped.
    Whitespace,
    /// datatrove's `simplify_text` (FineWeb): lowercase, numbers → `0`, punctuation → space,
    /// whitespace folded, diacritics stripped (NFD without non-spacing marks).
    #[default]
    Fineweb,
    /// The same with numbers kept: for math and code, where problems or programs that differ
    /// only in their numbers are different documents.
    FinewebKeepNumbers,
}

/// Decimal separators datatrove accepts inside a number (`3.14`, `3,14`, Arabic `٫`, ...).
fn is_number_separator(c: char) -> bool {
    matches!(c, '.' | ',' | '،' | '٫' | '⎖' | '⎗' | '⎘')
}

pub fn normalize(text: &str, mode: Normalization) -> Cow<'_, str> {
    match mode {
        Normalization::None => Cow::Borrowed(text),
        Normalization::Whitespace => Cow::Owned(python::split_whitespace(text).collect::<Vec<_>>().join(" ")),
        Normalization::Fineweb => Cow::Owned(simplify(text, true)),
        Normalization::FinewebKeepNumbers => Cow::Owned(simplify(text, false)),
    }
}

fn simplify(text: &str, numbers_to_zero: bool) -> String {
    if text.is_ascii() {
        return simplify_ascii(text.as_bytes(), numbers_to_zero);
    }
    let lower = text.to_lowercase();
    // numbers → "0", punctuation → " ", in one pass
    let mut replaced = String::with_capacity(lower.len());
    let chars: Vec<char> = lower.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if numbers_to_zero && is_decimal(c) {
            while i < chars.len() && is_decimal(chars[i]) {
                i += 1;
            }
            if i + 1 < chars.len() && is_number_separator(chars[i]) && is_decimal(chars[i + 1]) {
                i += 1;
                while i < chars.len() && is_decimal(chars[i]) {
                    i += 1;
                }
            }
            replaced.push('0');
            continue;
        }
        replaced.push(if is_punctuation_string(c) { ' ' } else { c });
        i += 1;
    }
    let folded = python::split_whitespace(&replaced).collect::<Vec<_>>().join(" ");
    if folded.is_ascii() {
        // NFD leaves ASCII as it is, and ASCII has no non-spacing marks.
        return python::strip(&folded).to_string();
    }
    let stripped: String =
        folded.nfd().filter(|&c| get_general_category(c) != GeneralCategory::NonspacingMark).collect();
    python::strip(&stripped).to_string()
}

/// The words of `normalize(text, FinewebKeepNumbers)` joined by single spaces, in one pass over
/// the characters: lowercase, then punctuation and whitespace end a word, then NFD without
/// non-spacing marks, character by character. Decontamination needs only the words, and
/// lowercasing and decomposing whole texts was most of its time. The words are the same as the
/// normalised text's, except where NFD's canonical reordering would swap two combining marks that
/// are not non-spacing ones (a few musical symbols). A text with a capital sigma, whose lowercase
/// depends on its neighbours, takes the whole-text path.
pub fn words_keeping_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    if text.contains('Σ') {
        let normalised = normalize(text, Normalization::FinewebKeepNumbers);
        for word in normalised.split(' ').filter(|w| !w.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        return out;
    }
    // Whether a word ended since the last character written.
    let mut gap = false;
    let emit = |c: char, gap: &mut bool, out: &mut String| {
        if *gap && !out.is_empty() {
            out.push(' ');
        }
        *gap = false;
        out.push(c);
    };
    for c in text.chars() {
        if c.is_ascii() {
            let c = c.to_ascii_lowercase();
            if is_punctuation_string(c) || python::is_space(c) {
                gap = true;
            } else {
                emit(c, &mut gap, &mut out);
            }
            continue;
        }
        for lower in c.to_lowercase() {
            if is_punctuation_string(lower) || python::is_space(lower) {
                gap = true;
            } else if lower.is_ascii() {
                emit(lower, &mut gap, &mut out);
            } else {
                unicode_normalization::char::decompose_canonical(lower, |d| {
                    if get_general_category(d) != GeneralCategory::NonspacingMark {
                        emit(d, &mut gap, &mut out);
                    }
                });
            }
        }
    }
    out
}

/// [`simplify`] for ASCII text in one pass over the bytes (most web text is ASCII): the same
/// output, at several times the speed.
fn simplify_ascii(bytes: &[u8], numbers_to_zero: bool) -> String {
    let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let mut out = String::with_capacity(bytes.len());
    let mut space = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i].to_ascii_lowercase();
        let kept = if numbers_to_zero && c.is_ascii_digit() {
            while digit(i) {
                i += 1;
            }
            if matches!(bytes.get(i), Some(b'.' | b',')) && digit(i + 1) {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            Some('0')
        } else {
            i += 1;
            let c = char::from(c);
            (!is_punctuation_string(c) && !python::is_space(c)).then_some(c)
        };
        match kept {
            Some(c) => {
                if space && !out.is_empty() {
                    out.push(' ');
                }
                space = false;
                out.push(c);
            }
            None => space = true,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general path, for comparing the ASCII one with it.
    fn simplify_general(text: &str, numbers_to_zero: bool) -> String {
        let padded = format!("{text}\u{e9}");
        let out = simplify(&padded, numbers_to_zero);
        out.strip_suffix('e').map(|s| s.trim_end().to_string()).unwrap_or(out)
    }

    /// 20,000 strings of up to 23 characters drawn from `alphabet`.
    fn random_strings(alphabet: &str, seed: u64) -> Vec<String> {
        let alphabet: Vec<char> = alphabet.chars().collect();
        let mut state = seed;
        let mut pick = move || util::rng::splitmix64(&mut state);
        (0..20_000)
            .map(|_| {
                let len = (pick() % 24) as usize;
                (0..len).map(|_| alphabet[(pick() % alphabet.len() as u64) as usize]).collect()
            })
            .collect()
    }

    #[test]
    fn the_ascii_path_gives_what_the_general_one_gives() {
        for text in random_strings("aZ09.,;:!?-_ ()[]$%+=/'\"\t\n\r\u{b}\u{c}\u{1c}\u{1f}\u{7f}\u{1}x5", 7) {
            for zero in [true, false] {
                assert_eq!(simplify_ascii(text.as_bytes(), zero), simplify_general(&text, zero), "{text:?} {zero}");
            }
        }
    }

    #[test]
    fn words_in_one_pass_are_the_normalised_texts_words() {
        for text in random_strings(
            "aZ09.,;:!?-_ ()$+/'\"\t\n\u{a0}\u{2000}\u{3000}éÉñÑüß\u{301}\u{308}İIıΣσςΑάΆ—–“”‘’…·ﬁ漢字٣٤ÅÅẞǅ\u{1c}",
            11,
        ) {
            let normalised = normalize(&text, Normalization::FinewebKeepNumbers);
            let wanted: Vec<&str> = normalised.split(' ').filter(|w| !w.is_empty()).collect();
            assert_eq!(words_keeping_numbers(&text), wanted.join(" "), "{text:?}");
        }
    }

    #[test]
    fn fineweb_normalisation_matches_simplify_text() {
        assert_eq!(normalize("  Hello,   WORLD!\n\tCafé déjà-vu ", Normalization::Fineweb), "hello world cafe deja vu");
        assert_eq!(normalize("Pay 3.50 or 1,000 (٣٤) now", Normalization::Fineweb), "pay 0 or 0 0 now");
        assert_eq!(normalize("a1b22c", Normalization::Fineweb), "a0b0c");
        assert_eq!(normalize("x.", Normalization::Fineweb), "x");
        assert_eq!(normalize(" a \n b ", Normalization::Whitespace), "a b");
        assert_eq!(normalize(" a ", Normalization::None), " a ");
        let keep = Normalization::FinewebKeepNumbers;
        assert_eq!(normalize("Pay 3.50 or 1,000 (٣٤) now", keep), "pay 3 50 or 1 000 ٣٤ now");
        assert_eq!(normalize("Simplify $(2x+5)-(-3x+8)$.", keep), "simplify 2x 5 3x 8");
    }
}
