//! `gopher_repetition`: the Gopher repetition rules as datatrove 0.10's
//! `GopherRepetitionFilter` applies them. All character fractions divide by the text's length
//! in code points. Reasons: `empty`, `dup_para_frac`, `dup_para_char_frac`, `dup_line_frac`,
//! `dup_line_char_frac`, `top_{n}_gram` (n = 2..4), `duplicated_{n}_n_grams` (n = 5..10).
//!
//! n-grams are never materialised: prefix hashes over the words joined by spaces (and over
//! their concatenation) give each n-gram's string hash in O(1), with the same equality as
//! Python's strings (122-bit polynomial hashes).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Filter, Verdict};
use crate::document::Document;
use crate::text::python::{self, find_duplicates};
use crate::text::words::split_into_words;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GopherRepetitionConfig {
    pub dup_line_frac: Option<f64>,
    pub dup_para_frac: Option<f64>,
    pub dup_line_char_frac: Option<f64>,
    pub dup_para_char_frac: Option<f64>,
    /// (n, max fraction of text covered by the most frequent n-gram)
    pub top_n_grams: Vec<(usize, f64)>,
    /// (n, max fraction of text in repeated n-grams)
    pub dup_n_grams: Vec<(usize, f64)>,
}

impl Default for GopherRepetitionConfig {
    fn default() -> Self {
        Self {
            dup_line_frac: Some(0.3),
            dup_para_frac: Some(0.3),
            dup_line_char_frac: Some(0.2),
            dup_para_char_frac: Some(0.2),
            top_n_grams: vec![(2, 0.2), (3, 0.18), (4, 0.16)],
            dup_n_grams: vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        }
    }
}

pub struct GopherRepetitionFilter {
    config: GopherRepetitionConfig,
    top_reasons: Vec<String>,
    dup_reasons: Vec<String>,
}

impl GopherRepetitionFilter {
    pub fn new(config: GopherRepetitionConfig) -> Self {
        let top_reasons = config.top_n_grams.iter().map(|(n, _)| format!("top_{n}_gram")).collect();
        let dup_reasons = config.dup_n_grams.iter().map(|(n, _)| format!("duplicated_{n}_n_grams")).collect();
        Self { config, top_reasons, dup_reasons }
    }
}

/// Split on runs of two or more `\n` (Python `re.split(r"\n{2,}", s)`).
fn split_paragraphs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (bytes, mut start, mut i) = (s.as_bytes(), 0, 0);
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let run_end = i + bytes[i..].iter().take_while(|&&b| b == b'\n').count();
            if run_end - i >= 2 {
                out.push(&s[start..i]);
                start = run_end;
            }
            i = run_end;
        } else {
            i += 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Split on runs of `\n` (Python `re.split(r"\n+", s)`: empty first/last pieces are kept).
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('\n') {
        out.push(&rest[..i]);
        rest = rest[i..].trim_start_matches('\n');
    }
    out.push(rest);
    out
}

/// Polynomial hashing of byte strings, two moduli 2^61 − 1 with different bases (122 bits):
/// `absorb` extends a prefix hash by one byte; [`substring`] combines two prefix hashes into the
/// hash of the bytes between them.
const P61: u64 = (1 << 61) - 1;
const BASES: (u64, u64) = (1_000_003, 911_382_323);

type Hash2 = (u64, u64);

fn mul_mod(a: u64, b: u64) -> u64 {
    let x = a as u128 * b as u128;
    let r = (x & P61 as u128) as u64 + (x >> 61) as u64;
    if r >= P61 { r - P61 } else { r }
}

fn absorb(h: Hash2, byte: u8) -> Hash2 {
    ((mul_mod(h.0, BASES.0) + byte as u64 + 1) % P61, (mul_mod(h.1, BASES.1) + byte as u64 + 1) % P61)
}

/// Powers of the bases: a table for short lengths (every n-gram of ordinary text), square and
/// multiply beyond it, so memory stays bounded by the table whatever the document.
struct Powers(Vec<Hash2>);

const POWER_TABLE: usize = 1 << 12;

impl Powers {
    fn new() -> Self {
        let mut table = Vec::with_capacity(POWER_TABLE);
        let mut p = (1u64, 1u64);
        for _ in 0..POWER_TABLE {
            table.push(p);
            p = (mul_mod(p.0, BASES.0), mul_mod(p.1, BASES.1));
        }
        Self(table)
    }

    fn of(&self, len: usize) -> Hash2 {
        if let Some(&p) = self.0.get(len) {
            return p;
        }
        let (mut result, mut base, mut e) = ((1u64, 1u64), BASES, len);
        while e > 0 {
            if e & 1 == 1 {
                result = (mul_mod(result.0, base.0), mul_mod(result.1, base.1));
            }
            base = (mul_mod(base.0, base.0), mul_mod(base.1, base.1));
            e >>= 1;
        }
        result
    }
}

/// Hash of the `len` bytes after the prefix hashed `lo`, given the longer prefix's hash `hi`.
fn substring(powers: &Powers, lo: Hash2, hi: Hash2, len: usize) -> u128 {
    let pw = powers.of(len);
    let a = (hi.0 + P61 - mul_mod(lo.0, pw.0)) % P61;
    let b = (hi.1 + P61 - mul_mod(lo.1, pw.1)) % P61;
    ((a as u128) << 64) | b as u128
}

/// Keys are already uniform hashes: use their low bits directly.
#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64 ^ (v >> 64) as u64;
    }
}

type KeyBuild = std::hash::BuildHasherDefault<KeyHasher>;

/// The words' n-grams as strings without materialising them: `" ".join` n-grams are substrings
/// of the words joined by single spaces, `"".join` n-grams substrings of their concatenation.
/// Prefix hashes are kept only where a word starts or ends (about 72 bytes per word, not per
/// byte), which is all an n-gram needs.
struct NGrams {
    len: usize,
    /// Code points of words[..i], prefix sums.
    chars: Vec<usize>,
    /// Byte offsets of each word (and the end) in the spaced and the concatenated strings.
    spaced_start: Vec<usize>,
    joined_start: Vec<usize>,
    /// Prefix hashes of the spaced string up to each word's start and up to each word's end,
    /// and of the concatenation up to each word's start (and the end).
    spaced_to_start: Vec<Hash2>,
    spaced_to_end: Vec<Hash2>,
    joined_to_start: Vec<Hash2>,
    powers: Powers,
}

impl NGrams {
    fn new(words: &[&str]) -> Self {
        let n = words.len();
        let mut g = Self {
            len: n,
            chars: Vec::with_capacity(n + 1),
            spaced_start: Vec::with_capacity(n + 1),
            joined_start: Vec::with_capacity(n + 1),
            spaced_to_start: Vec::with_capacity(n),
            spaced_to_end: Vec::with_capacity(n),
            joined_to_start: Vec::with_capacity(n + 1),
            powers: Powers::new(),
        };
        let (mut s, mut j, mut chars) = (0, 0, 0);
        let (mut spaced, mut joined) = ((0u64, 0u64), (0u64, 0u64));
        for (k, w) in words.iter().enumerate() {
            g.chars.push(chars);
            g.spaced_start.push(s);
            g.joined_start.push(j);
            g.spaced_to_start.push(spaced);
            g.joined_to_start.push(joined);
            for b in w.bytes() {
                spaced = absorb(spaced, b);
                joined = absorb(joined, b);
            }
            g.spaced_to_end.push(spaced);
            if k + 1 < n {
                spaced = absorb(spaced, b' ');
            }
            s += w.len() + 1;
            j += w.len();
            chars += python::len(w);
        }
        g.chars.push(chars);
        g.spaced_start.push(s);
        g.joined_start.push(j);
        g.joined_to_start.push(joined);
        g
    }

    /// Hash of `" ".join(words[i..i + n])`.
    fn spaced_hash(&self, i: usize, n: usize) -> u128 {
        let len = self.spaced_start[i + n] - 1 - self.spaced_start[i];
        substring(&self.powers, self.spaced_to_start[i], self.spaced_to_end[i + n - 1], len)
    }

    /// Hash of `"".join(words[i..i + n])`.
    fn joined_hash(&self, i: usize, n: usize) -> u128 {
        let len = self.joined_start[i + n] - self.joined_start[i];
        substring(&self.powers, self.joined_to_start[i], self.joined_to_start[i + n], len)
    }

    /// Code points of words[i..i + n].
    fn chars(&self, i: usize, n: usize) -> usize {
        self.chars[i + n] - self.chars[i]
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// `len(s) * count` of the most frequent `" ".join` n-gram; ties go to the first seen.
fn top_duplicate(grams: &NGrams, n: usize) -> usize {
    // Sized up front: a long document's map would otherwise be rebuilt a dozen times as it grows.
    let mut counts: HashMap<u128, (usize, usize), KeyBuild> =
        HashMap::with_capacity_and_hasher(grams.len() + 1 - n, KeyBuild::default()); // (count, first start)
    for start in 0..=grams.len() - n {
        counts.entry(grams.spaced_hash(start, n)).or_insert((0, start)).0 += 1;
    }
    let (count, first) = counts.values().fold((0, usize::MAX), |best, &(count, first)| {
        if count > best.0 || (count == best.0 && first < best.1) { (count, first) } else { best }
    });
    (grams.chars(first, n) + n - 1) * count
}

/// Characters in repeated `"".join` n-grams, jumping past each repeat (datatrove's `find_all_duplicate`).
fn all_duplicates(grams: &NGrams, n: usize) -> usize {
    let mut seen: HashSet<u128, KeyBuild> =
        HashSet::with_capacity_and_hasher((grams.len() + 1).saturating_sub(n), KeyBuild::default());
    let (mut repeated, mut i) = (0, 0);
    while i + n <= grams.len() {
        if seen.insert(grams.joined_hash(i, n)) {
            i += 1;
        } else {
            repeated += grams.chars(i, n);
            i += n;
        }
    }
    repeated
}

impl Filter for GopherRepetitionFilter {
    fn name(&self) -> &str {
        "gopher_repetition"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let c = &self.config;
        let text = doc.text.as_str();
        if text.is_empty() {
            return Verdict::drop("empty");
        }
        let total = python::len(text) as f64;
        let over = |limit: Option<f64>, value: f64| limit.is_some_and(|l| l != 0.0 && value > l);

        // Repeated paragraphs, then repeated lines: by how many and by how many characters.
        let repeated =
            |pieces: &[&str], by_count: (Option<f64>, &'static str), by_chars: (Option<f64>, &'static str)| {
                let (dup, dup_chars) = find_duplicates(pieces.iter().copied());
                if over(by_count.0, dup as f64 / pieces.len() as f64) {
                    return Some(by_count.1);
                }
                over(by_chars.0, dup_chars as f64 / total).then_some(by_chars.1)
            };
        let paragraphs = split_paragraphs(python::strip(text));
        let para =
            repeated(&paragraphs, (c.dup_para_frac, "dup_para_frac"), (c.dup_para_char_frac, "dup_para_char_frac"));
        if let Some(reason) = para {
            return Verdict::drop(reason);
        }
        let line = repeated(
            &split_lines(text),
            (c.dup_line_frac, "dup_line_frac"),
            (c.dup_line_char_frac, "dup_line_char_frac"),
        );
        if let Some(reason) = line {
            return Verdict::drop(reason);
        }
        let words = split_into_words(text);
        let grams = NGrams::new(&words);
        for (&(n, limit), reason) in c.top_n_grams.iter().zip(&self.top_reasons) {
            if n == 0 || words.len() < n {
                continue;
            }
            if top_duplicate(&grams, n) as f64 / total > limit {
                return Verdict::drop(reason.clone());
            }
        }
        for (&(n, limit), reason) in c.dup_n_grams.iter().zip(&self.dup_reasons) {
            if n > 0 && all_duplicates(&grams, n) as f64 / total > limit {
                return Verdict::drop(reason.clone());
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &str) -> Verdict {
        GopherRepetitionFilter::new(GopherRepetitionConfig::default()).apply(&mut Document::new(
            "d".into(),
            text.into(),
            "f".into(),
            0,
        ))
    }

    /// Distinct words w0 w1 ... so nothing repeats unless a test makes it.
    fn unique_words(from: usize, n: usize) -> String {
        (from..from + n).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn python_splits() {
        assert_eq!(split_paragraphs("a\n\nb\n\n\nc\nd"), ["a", "b", "c\nd"]);
        assert_eq!(split_lines("\na\n\nb\n"), ["", "a", "b", ""]);
        assert_eq!(split_lines("x"), ["x"]);
    }

    #[test]
    fn duplicate_line_fraction_threshold() {
        // 10 lines, 3 of them repeats: 0.3 is not > 0.3; 4 repeats is.
        let mut lines: Vec<String> = (0..7).map(|i| unique_words(i * 20, 20)).collect();
        let repeat = "short line".to_string();
        lines.extend([repeat.clone(), repeat.clone(), repeat.clone()]);
        lines.push(repeat.clone());
        // 11 lines: 3 duplicates (the first "short line" is not a duplicate): 3/11 < 0.3
        assert_eq!(verdict(&lines.join("\n")), Verdict::Keep);
        lines.push(repeat);
        // 12 lines: 4 duplicates: 0.33 > 0.3
        assert_eq!(verdict(&lines.join("\n")), Verdict::drop("dup_line_frac"));
    }

    #[test]
    fn duplicate_paragraph_chars() {
        let long = unique_words(0, 60);
        let text = format!("{long}\n\n{}\n\n{long}", unique_words(100, 200));
        // one duplicate paragraph of 1/3 paragraphs (> 0.3)
        assert_eq!(verdict(&text), Verdict::drop("dup_para_frac"));
    }

    #[test]
    fn top_bigram_ties_go_to_the_first_seen() {
        // "Hello world": the only bigram covers 11/11 of the text.
        assert_eq!(verdict("Hello world"), Verdict::drop("top_2_gram"));
        // Each bigram once; the first one ("aaaaaaaaaa b", 12 chars) decides: 12 / len.
        let text = format!("aaaaaaaaaa b {}", unique_words(0, 20));
        let len = text.chars().count() as f64;
        let words = split_into_words(&text);
        assert_eq!(top_duplicate(&NGrams::new(&words), 2), 12);
        assert!(12.0 / len < 0.2);
    }

    #[test]
    fn repeated_ngrams_jump_and_join_without_separator() {
        let words = ["a", "bc", "ab", "c", "x"];
        // "abc" (a|bc) then "bcab", then "abc" (ab|c) collides with the first: 3 chars
        assert_eq!(all_duplicates(&NGrams::new(&words), 2), 3);
        let words = ["p", "q", "p", "q", "p", "q"];
        // pq, qp, pq (repeat: +2, jump to 4), pq (repeat: +2) = 4
        assert_eq!(all_duplicates(&NGrams::new(&words), 2), 4);
        // " ".join keeps word boundaries: "a bc" and "ab c" differ.
        let words = ["a", "bc", "ab", "c"];
        let grams = NGrams::new(&words);
        assert_ne!(grams.spaced_hash(0, 2), grams.spaced_hash(2, 2));
        assert_eq!(grams.joined_hash(0, 2), grams.joined_hash(2, 2));
        let phrase = "the quick brown fox jumps over the lazy dog";
        // Six copies of a 9-word phrase after 150 distinct words: no single n-gram dominates
        // (top 4-gram 114 / 1014 chars), but repeated 5-grams cover > 15% of the text.
        let text = format!("{} {}", unique_words(0, 150), [phrase; 6].join(" "));
        assert_eq!(verdict(&text), Verdict::drop("duplicated_5_n_grams"));
    }
}
