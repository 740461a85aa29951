//! Python `str` semantics that the reference filters rely on: `splitlines`, `strip`, `split()`,
//! `isspace`, and `len` in code points.

/// Python's `str.isspace` for one character (includes \x1c–\x1f, which Rust's `is_whitespace` does not).
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `str.isalpha` for one character: general category Lu, Ll, Lt, Lm or Lo.
pub fn is_alpha(c: char) -> bool {
    use unicode_general_category::{GeneralCategory::*, get_general_category};
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter
    )
}

/// Python regex `\d` for one character: general category Nd.
pub fn is_decimal(c: char) -> bool {
    use unicode_general_category::{GeneralCategory, get_general_category};
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == GeneralCategory::DecimalNumber
}

/// `str.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `str.lstrip()`.
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_space)
}

/// `str.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `str.split()` with no argument: runs of whitespace separate, no empty pieces.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `len(s)`: the number of code points.
pub fn len(s: &str) -> usize {
    // Count bytes that start a code point (not 0b10xxxxxx continuation bytes).
    s.bytes().filter(|&b| (b as i8) >= -0x40).count()
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `str.splitlines()`: splits on every Python line boundary (`\r\n` counts once); a final line
/// break does not start an empty line.
pub fn splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_line_break(c) {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Counts of repeated elements, in order: an element seen before adds one duplicate and its
/// length (in code points). datatrove's `find_duplicates`.
pub fn find_duplicates<'a>(elements: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
    let mut seen = std::collections::HashSet::new();
    let (mut duplicates, mut chars) = (0, 0);
    for e in elements {
        if !seen.insert(e) {
            duplicates += 1;
            chars += len(e);
        }
    }
    (duplicates, chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_matches_python() {
        assert_eq!(splitlines("a\nb\r\nc\rd\u{2028}e\u{0c}f\n"), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(splitlines("a\n\nb"), ["a", "", "b"]);
        assert_eq!(splitlines("\n"), [""]);
        assert!(splitlines("").is_empty());
        assert_eq!(splitlines("x\r\r\ny"), ["x", "", "y"]);
    }

    #[test]
    fn strip_len_split_and_duplicates() {
        assert_eq!(strip("\u{1f} \u{a0}hi\u{3000}\t"), "hi");
        assert_eq!(len("héllo…"), 6);
        assert_eq!(split_whitespace(" a  b\u{1c}c ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(find_duplicates(["ab", "c", "ab", "ab", "é"]), (2, 4));
    }
}
