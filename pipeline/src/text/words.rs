//! English word splitting, an exact port of datatrove 0.10.1's `split_into_words(text, "eng")`:
//! the tokens of spaCy 3.8.18's `spacy.blank("en")` tokenizer with whitespace tokens dropped.
//! The algorithm is specified in `docs/filters-reference.md` §2; section numbers below refer to it.
//!
//! Pipeline: whitespace chunking (§2.1) → per chunk: special cases, the prefix/suffix loop,
//! URL_MATCH, infixes (§2.2–§2.6) → the special-case matcher post-pass over the whole token list
//! (§2.2 step 4). Every token is a slice of the input text.
//!
//! The regex structure is hand-coded (no regex engine: each rule has bounded look-around, so a
//! direct scan is exact and linear). The data it depends on — the 1347 special cases, the matcher
//! keys, the digit-preceded suffix strings and the character classes enumerated from Python `re` —
//! lives in `data/` and is regenerated with
//!
//! ```text
//! .venv-parity/bin/python scripts/parity/gen_spacy_tables.py
//! ```

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use unicode_general_category::{GeneralCategory, get_general_category};

use super::python::{is_decimal, is_space};

const SPECIALS_JSON: &str = include_str!("data/spacy_en_specials.json");
const CHAR_CLASSES: &str = include_str!("data/spacy_en_char_classes.txt");

/// Words of `text` as datatrove counts them: spaCy tokens minus whitespace tokens.
pub fn split_into_words(text: &str) -> Vec<&str> {
    let mut words = Vec::with_capacity(text.len() / 5 + 1);
    for span in tokenize(text) {
        // Chunk tokens never contain whitespace and whitespace tokens are all whitespace, so the
        // first character decides.
        let tok = &text[span.start..span.end];
        if !tok.starts_with(is_space) {
            words.push(tok);
        }
    }
    words
}

/// All spaCy tokens of `text`, whitespace tokens included (the sentencizer sees those).
pub(crate) fn tokens(text: &str) -> Vec<&str> {
    tokenize(text).into_iter().map(|s| &text[s.start..s.end]).collect()
}

/// Python `unicodedata.category(c).startswith("P")` for every character: spaCy's `is_punct`.
pub(crate) fn is_punct_token(tok: &str) -> bool {
    use GeneralCategory::*;
    tok.chars().all(|c| {
        matches!(
            get_general_category(c),
            ConnectorPunctuation
                | DashPunctuation
                | OpenPunctuation
                | ClosePunctuation
                | InitialPunctuation
                | FinalPunctuation
                | OtherPunctuation
        )
    })
}

/// Whether `tok` is one of the sentencizer's `default_punct_chars` (all single characters).
pub(crate) fn is_sentence_punct(tok: &str) -> bool {
    if let &[b] = tok.as_bytes() {
        return matches!(b, b'!' | b'.' | b'?'); // the only ASCII members
    }
    let mut chars = tok.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => in_ranges(&TABLES.sent_punct, c),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Tables

/// Byte range of a token in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

// Character-class flags; one byte per BMP code point, ranges for the astral planes.
const ALPHA: u8 = 1;
const LOWER: u8 = 1 << 1;
const UPPER: u8 = 1 << 2;
const QUOTE: u8 = 1 << 3;
const ICON: u8 = 1 << 4;
/// Characters after which a final `.` is a suffix (suffix rule 10).
const DOT_LOOKBEHIND: u8 = 1 << 5;
/// Characters the prefix regex splits off alone (`+` needs its lookahead checked separately).
const PREFIX: u8 = 1 << 6;
/// Characters the suffix regex splits off without any lookbehind.
const SUFFIX: u8 = 1 << 7;
const FLAG_CLASSES: [(&str, u8); 8] = [
    ("alpha", ALPHA),
    ("alpha_lower", LOWER),
    ("alpha_upper", UPPER),
    ("quotes", QUOTE),
    ("icons", ICON),
    ("suffix_dot_lookbehind", DOT_LOOKBEHIND),
    ("prefix_char", PREFIX),
    ("suffix_char", SUFFIX),
];

/// rustc's Fx hash: much faster than SipHash for the short keys looked up once per chunk/token.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// A node of the post-pass matcher's trie over token texts.
#[derive(Default)]
struct MatcherNode {
    children: Vec<(Box<str>, usize)>,
    /// A matcher key's pre-tokenization ends here.
    terminal: bool,
}

struct Tables {
    bmp: Box<[u8]>,
    /// Astral-plane code points as sorted, disjoint `(lo, hi, flags)` ranges.
    astral: Vec<(u32, u32, u8)>,
    sent_punct: Vec<(u32, u32)>,
    /// Special case → byte lengths of its tokens.
    specials: HashMap<Box<str>, Box<[u8]>, FxBuild>,
    special_filter: KeyFilter,
    /// CURRENCY and UNITS strings: suffixes only right after an ASCII digit.
    digit_suffixes: HashSet<Box<str>, FxBuild>,
    /// Trie of the matcher keys' token sequences; `matcher_roots` maps a first token to its node.
    matcher_roots: HashMap<Box<str>, usize, FxBuild>,
    matcher_nodes: Vec<MatcherNode>,
    matcher_root_filter: KeyFilter,
}

/// The (byte length, first byte) and (byte length, last byte) pairs of a key set: rejects most
/// non-keys before hashing (about 3 in 4 web chunks for the special cases).
struct KeyFilter {
    first: Vec<[u64; 4]>,
    last: Vec<[u64; 4]>,
}

impl KeyFilter {
    fn new<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> KeyFilter {
        let max_len = keys.clone().map(str::len).max().unwrap_or(0);
        let mut filter = KeyFilter { first: vec![[0; 4]; max_len + 1], last: vec![[0; 4]; max_len + 1] };
        for key in keys {
            let b = key.as_bytes();
            if let (Some(&f), Some(&l)) = (b.first(), b.last()) {
                filter.first[b.len()][usize::from(f >> 6)] |= 1 << (f & 63);
                filter.last[b.len()][usize::from(l >> 6)] |= 1 << (l & 63);
            }
        }
        filter
    }

    #[inline]
    fn may_contain(&self, s: &str) -> bool {
        let b = s.as_bytes();
        let (Some(&f), Some(&l)) = (b.first(), b.last()) else { return false };
        let (Some(first), Some(last)) = (self.first.get(b.len()), self.last.get(b.len())) else { return false };
        first[usize::from(f >> 6)] & (1 << (f & 63)) != 0 && last[usize::from(l >> 6)] & (1 << (l & 63)) != 0
    }
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::load);

fn parse_ranges(body: &str) -> Vec<(u32, u32)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).expect("hex code point in char class table");
    body.split_whitespace()
        .map(|r| match r.split_once('-') {
            Some((a, b)) => (hex(a), hex(b)),
            None => (hex(r), hex(r)),
        })
        .collect()
}

fn in_ranges(ranges: &[(u32, u32)], cp: impl Into<u32>) -> bool {
    let cp = cp.into();
    // First range whose end is >= cp.
    let i = ranges.partition_point(|&(_, hi)| hi < cp);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= cp)
}

fn string_list(v: &serde_json::Value) -> Vec<&str> {
    v.as_array().expect("array of strings").iter().map(|s| s.as_str().expect("string")).collect()
}

impl Tables {
    fn load() -> Tables {
        let mut classes: HashMap<&str, Vec<(u32, u32)>> = HashMap::new();
        for line in CHAR_CLASSES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (name, body) = line.split_once(':').expect("`name: ranges` line");
            classes.insert(name.trim(), parse_ranges(body));
        }
        let mut bmp = vec![0u8; 0x10000].into_boxed_slice();
        let mut flag_ranges = Vec::new();
        for (name, flag) in FLAG_CLASSES {
            let ranges = classes.get(name).unwrap_or_else(|| panic!("char class {name} missing"));
            for &(lo, hi) in ranges {
                for cp in lo..=hi.min(0xFFFF) {
                    bmp[cp as usize] |= flag;
                }
            }
            flag_ranges.push((flag, ranges));
        }
        // Cut the astral plane at every range boundary and record each piece's flags.
        let mut cuts: Vec<u32> = flag_ranges
            .iter()
            .flat_map(|(_, r)| r.iter().flat_map(|&(lo, hi)| [lo, hi + 1]))
            .filter(|&cp| cp > 0xFFFF)
            .chain([0x10000])
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut astral: Vec<(u32, u32, u8)> = Vec::new();
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1] - 1);
            let flags = flag_ranges.iter().filter(|(_, r)| in_ranges(r, lo)).fold(0, |acc, (f, _)| acc | f);
            match astral.last_mut() {
                Some(last) if last.2 == flags && last.1 + 1 == lo => last.1 = hi,
                _ if flags != 0 => astral.push((lo, hi, flags)),
                _ => {}
            }
        }
        let sent_punct = classes.remove("sent_punct").expect("char class sent_punct missing");

        let json: serde_json::Value = serde_json::from_str(SPECIALS_JSON).expect("valid specials JSON");
        let mut specials: HashMap<Box<str>, Box<[u8]>, FxBuild> = HashMap::default();
        for entry in json["specials"].as_array().expect("specials array") {
            let key = entry[0].as_str().expect("special key");
            let lens: Box<[u8]> = string_list(&entry[1])
                .iter()
                .map(|t| u8::try_from(t.len()).expect("special-case token under 256 bytes"))
                .collect();
            debug_assert_eq!(lens.iter().map(|&l| l as usize).sum::<usize>(), key.len());
            specials.insert(Box::from(key), lens);
        }
        let digit_suffixes = string_list(&json["digit_suffixes"]).into_iter().map(Box::from).collect();

        let mut matcher_roots: HashMap<Box<str>, usize, FxBuild> = HashMap::default();
        let mut matcher_nodes: Vec<MatcherNode> = Vec::new();
        for entry in json["matcher"].as_array().expect("matcher array") {
            let toks = string_list(&entry[1]);
            let Some((first, rest)) = toks.split_first() else { continue };
            let mut node = *matcher_roots.entry(Box::from(*first)).or_insert_with(|| {
                matcher_nodes.push(MatcherNode::default());
                matcher_nodes.len() - 1
            });
            for tok in rest {
                let existing = matcher_nodes[node].children.iter().find(|(t, _)| &**t == *tok).map(|&(_, n)| n);
                node = existing.unwrap_or_else(|| {
                    matcher_nodes.push(MatcherNode::default());
                    let child = matcher_nodes.len() - 1;
                    matcher_nodes[node].children.push((Box::from(*tok), child));
                    child
                });
            }
            matcher_nodes[node].terminal = true;
        }

        Tables {
            bmp,
            astral,
            sent_punct,
            special_filter: KeyFilter::new(specials.keys().map(|k| &**k)),
            specials,
            digit_suffixes,
            matcher_root_filter: KeyFilter::new(matcher_roots.keys().map(|k| &**k)),
            matcher_roots,
            matcher_nodes,
        }
    }

    #[inline]
    fn has(&self, c: char, flag: u8) -> bool {
        let cp = c as u32;
        if cp < 0x10000 {
            self.bmp[cp as usize] & flag != 0
        } else {
            let i = self.astral.partition_point(|&(_, hi, _)| hi < cp);
            self.astral.get(i).is_some_and(|&(lo, _, flags)| lo <= cp && flags & flag != 0)
        }
    }

    #[inline]
    fn has_opt(&self, c: Option<char>, flag: u8) -> bool {
        c.is_some_and(|c| self.has(c, flag))
    }

    #[inline]
    fn special(&self, s: &str) -> Option<&[u8]> {
        if !self.special_filter.may_contain(s) {
            return None;
        }
        self.specials.get(s).map(|l| &**l)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

/// Scratch buffers reused across chunks.
#[derive(Default)]
struct Scratch {
    prefixes: Vec<Span>,
    suffixes: Vec<Span>,
    chars: Vec<char>,
}

/// spaCy `Tokenizer.__call__`: whitespace chunking, per-chunk tokenization, matcher post-pass.
fn tokenize(text: &str) -> Vec<Span> {
    let t = &*TABLES;
    let mut out = Vec::with_capacity(text.len() / 4 + 1);
    let mut scratch = Scratch::default();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut after_chunk = false;
    while i < bytes.len() {
        let ws_start = i;
        i = skip_while(text, i, true);
        if i > ws_start {
            // One ' ' right after a chunk is that token's trailing space, not a token (§2.1).
            let start = if after_chunk && bytes[ws_start] == b' ' { ws_start + 1 } else { ws_start };
            if start < i {
                out.push(Span { start, end: i });
            }
        }
        if i == bytes.len() {
            break;
        }
        let chunk_start = i;
        i = skip_while(text, i, false);
        tokenize_chunk(t, text, chunk_start, i, &mut out, &mut scratch);
        after_chunk = true;
    }
    apply_matcher(t, text, &mut out);
    out
}

/// End of the run starting at byte `i` of characters whose `isspace()` equals `space`.
#[inline]
fn skip_while(text: &str, mut i: usize, space: bool) -> usize {
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        let (is_ws, len) = if b < 0x80 {
            (matches!(b, b'\t'..=b'\r' | 0x1c..=0x1f | b' '), 1)
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            (is_space(c), c.len_utf8())
        };
        if is_ws != space {
            break;
        }
        i += len;
    }
    i
}

fn push_special(out: &mut Vec<Span>, mut start: usize, lens: &[u8]) {
    for &len in lens {
        let end = start + len as usize;
        out.push(Span { start, end });
        start = end;
    }
}

/// Tokenizes one whitespace-free chunk `text[lo..hi]` (§2.2 steps 1–3).
fn tokenize_chunk(t: &Tables, text: &str, mut lo: usize, mut hi: usize, out: &mut Vec<Span>, scratch: &mut Scratch) {
    if let Some(lens) = t.special(&text[lo..hi]) {
        push_special(out, lo, lens);
        return;
    }
    let Scratch { prefixes, suffixes, chars } = scratch;
    prefixes.clear();
    suffixes.clear();

    // Affix loop (spaCy `_split_affixes`). The chunk itself is known not to be special.
    let mut first = true;
    let mut last_len = 0;
    while lo < hi && hi - lo != last_len {
        let s = &text[lo..hi];
        if !first && t.special(s).is_some() {
            break;
        }
        first = false;
        last_len = s.len();
        let pre = prefix_len(t, s);
        if pre > 0 && pre < s.len() && t.special(&s[pre..]).is_some() {
            prefixes.push(Span { start: lo, end: lo + pre });
            lo += pre;
            break;
        }
        // The suffix is searched after this iteration's prefix, so lookbehinds cannot see it.
        let suf = suffix_len(t, &s[pre..]);
        if suf > 0 && suf < s.len() && t.special(&s[..s.len() - suf]).is_some() {
            suffixes.push(Span { start: hi - suf, end: hi });
            hi -= suf;
            break;
        }
        if pre > 0 {
            prefixes.push(Span { start: lo, end: lo + pre });
            lo += pre;
        }
        if suf > 0 && pre + suf <= s.len() {
            suffixes.push(Span { start: hi - suf, end: hi });
            hi -= suf;
        }
    }

    out.extend_from_slice(prefixes);
    if lo < hi {
        let core = &text[lo..hi];
        // Without affixes the core is the whole chunk, already looked up.
        let special = if prefixes.is_empty() && suffixes.is_empty() { None } else { t.special(core) };
        if let Some(lens) = special {
            push_special(out, lo, lens);
        } else if url_match(t, core, chars) {
            out.push(Span { start: lo, end: hi });
        } else {
            split_infixes(t, core, lo, out);
        }
    }
    out.extend(suffixes.iter().rev());
}

/// `prefix_search`: byte length of the prefix at the start of `s` (0 if none), §2.3.
#[inline]
fn prefix_len(t: &Tables, s: &str) -> usize {
    let bytes = s.as_bytes();
    let Some(c) = s.chars().next() else { return 0 };
    match c {
        '.' => {
            let run = bytes.iter().take_while(|&&b| b == b'.').count();
            if run >= 2 { run } else { 0 }
        }
        '+' => usize::from(!bytes.get(1).is_some_and(u8::is_ascii_digit)),
        'U' if s.starts_with("US$") => 3,
        'C' | 'A' if bytes.get(1) == Some(&b'$') => 2,
        _ if t.has(c, PREFIX) => c.len_utf8(),
        _ => 0,
    }
}

/// `suffix_search`: byte length of the suffix at the end of `s` (0 if none), §2.4. The regex
/// takes the match that starts earliest; apart from a run of dots no alternative is longer than
/// five characters, so only the last five start positions need testing.
#[inline]
fn suffix_len(t: &Tables, s: &str) -> usize {
    let bytes = s.as_bytes();
    let n = bytes.len();
    if n >= 2 && bytes[n - 1] == b'.' && bytes[n - 2] == b'.' {
        return bytes.iter().rev().take_while(|&&b| b == b'.').count();
    }
    // The last seven characters (five candidate starts plus two of lookbehind), last first.
    let mut last = [(0usize, '\0'); 7];
    let mut m = 0;
    for (i, c) in s.char_indices().rev().take(7) {
        last[m] = (i, c);
        m += 1;
    }
    let char_before = |j: usize| if j < m { Some(last[j].1) } else { None };
    // Earliest start first: the candidate covering the last `j` characters.
    for j in (1..=m.min(5)).rev() {
        let start = last[j - 1].0;
        let tail = &s[start..];
        let prev1 = char_before(j);
        let after_digit = prev1.is_some_and(|c| c.is_ascii_digit());
        let hit = if j == 1 {
            let c = last[0].1;
            t.has(c, SUFFIX)
                || (c == '+' && after_digit)
                || (c == '.' && dot_suffix(t, prev1, char_before(j + 1)))
                || (after_digit && t.digit_suffixes.contains(tail))
        } else {
            match tail.chars().next() {
                Some('…') => tail == "……",
                Some('\'' | '’') => matches!(tail, "'s" | "'S" | "’s" | "’S"),
                Some(c) if after_digit && !c.is_ascii_digit() => t.digit_suffixes.contains(tail),
                _ => false,
            }
        };
        if hit {
            return n - start;
        }
    }
    0
}

/// Lookbehinds under which a final `.` is a suffix: `°F.`, rule 10's class, or two upper-case
/// letters (`IBM.`).
fn dot_suffix(t: &Tables, prev1: Option<char>, prev2: Option<char>) -> bool {
    let Some(p1) = prev1 else { return false };
    (prev2 == Some('°') && matches!(p1, 'F' | 'f' | 'C' | 'c' | 'K' | 'k'))
        || t.has(p1, DOT_LOOKBEHIND)
        || (t.has(p1, UPPER) && t.has_opt(prev2, UPPER))
}

/// ASCII bytes that can start an infix match.
const INFIX_ASCII: [bool; 128] = {
    let mut table = [false; 128];
    let chars = b".+-*^,~:<>=/";
    let mut i = 0;
    while i < chars.len() {
        table[chars[i] as usize] = true;
        i += 1;
    }
    table
};

/// `infix_finditer` alternatives tried at byte `i` of `core` (§2.5): the match length in bytes.
/// Look-behind and look-ahead see the whole core, including earlier matches.
#[inline]
fn infix_at(t: &Tables, core: &str, i: usize, c: char) -> Option<usize> {
    let prev = core[..i].chars().next_back();
    let after = |k: usize| core[i + k..].chars().next();
    let alpha_or_digit_before = prev.is_some_and(|p| p.is_ascii_digit() || t.has(p, ALPHA));
    let matched = match c {
        '.' => {
            if after(1) == Some('.') {
                return Some(core.as_bytes()[i..].iter().take_while(|&&b| b == b'.').count());
            }
            t.has_opt(prev, LOWER | QUOTE) && t.has_opt(after(1), UPPER | QUOTE)
        }
        '…' => true,
        '+' | '*' | '^' => prev.is_some_and(|p| p.is_ascii_digit()) && digit_or_hyphen(after(1)),
        '-' => {
            if prev.is_some_and(|p| p.is_ascii_digit()) && digit_or_hyphen(after(1)) {
                return Some(1);
            }
            if !alpha_or_digit_before {
                return None;
            }
            // `-`, `--`, `---`, each followed by a letter; at most one can succeed.
            let run = core.as_bytes()[i..].iter().take(4).take_while(|&&b| b == b'-').count();
            return (run <= 3 && t.has_opt(after(run), ALPHA)).then_some(run);
        }
        '–' | '~' => alpha_or_digit_before && t.has_opt(after(c.len_utf8()), ALPHA),
        '—' => {
            if !alpha_or_digit_before {
                return None;
            }
            return if t.has_opt(after(3), ALPHA) {
                Some(3)
            } else if after(3) == Some('—') && t.has_opt(after(6), ALPHA) {
                Some(6)
            } else {
                None
            };
        }
        ',' => t.has_opt(prev, ALPHA) && t.has_opt(after(1), ALPHA),
        ':' | '<' | '>' | '=' | '/' => alpha_or_digit_before && t.has_opt(after(1), ALPHA),
        _ => t.has(c, ICON),
    };
    matched.then_some(c.len_utf8())
}

fn digit_or_hyphen(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit() || c == '-')
}

/// Splits `core` (at byte offset `base` of the text) on infixes, as spaCy's `_attach_tokens`.
fn split_infixes(t: &Tables, core: &str, base: usize, out: &mut Vec<Span>) {
    let bytes = core.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let c = if b < 0x80 {
            if !INFIX_ASCII[b as usize] {
                i += 1;
                continue;
            }
            b as char
        } else {
            core[i..].chars().next().unwrap_or_default()
        };
        let Some(len) = infix_at(t, core, i, c) else {
            i += c.len_utf8();
            continue;
        };
        // A match at position 0 is skipped: it stays at the start of the first piece.
        if i != 0 {
            if i != start {
                out.push(Span { start: base + start, end: base + i });
            }
            out.push(Span { start: base + i, end: base + i + len });
            start = i + len;
        }
        i += len;
    }
    if start < bytes.len() {
        out.push(Span { start: base + start, end: base + bytes.len() });
    }
}

// ---------------------------------------------------------------------------------------------
// URL_MATCH (§2.6), hand-written. On a whitespace-free string the pattern reduces to
// `^(scheme://)?(userinfo@)?host(:port)?([/?#].*)?$`; the host may start at 0, right after a
// scheme, or after any '@' (the userinfo `\S+...@` can end at any '@').

fn url_match(t: &Tables, core: &str, chars: &mut Vec<char>) -> bool {
    // Both host forms contain a '.'.
    if !core.contains('.') {
        return false;
    }
    chars.clear();
    chars.extend(core.chars());
    let s = &chars[..];
    if host_matches(t, s, 0) {
        return true;
    }
    if let Some(h) = scheme_end(s)
        && host_matches(t, s, h)
    {
        return true;
    }
    (1..s.len()).any(|p| s[p] == '@' && host_matches(t, s, p + 1))
}

/// `[\w\+\-\.]{2,}://` at the start: the host position after it.
fn scheme_end(s: &[char]) -> Option<usize> {
    let run = s.iter().take_while(|&&c| matches!(c, '+' | '-' | '.') || is_word(c)).count();
    (run >= 2 && s[run..].starts_with(&[':', '/', '/'])).then_some(run + 3)
}

/// Python `\w`: general category L* or N*, or `_` (verified identical for Unicode 14).
fn is_word(c: char) -> bool {
    use GeneralCategory::*;
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    matches!(
        get_general_category(c),
        UppercaseLetter
            | LowercaseLetter
            | TitlecaseLetter
            | ModifierLetter
            | OtherLetter
            | DecimalNumber
            | LetterNumber
            | OtherNumber
    )
}

fn host_matches(t: &Tables, s: &[char], h: usize) -> bool {
    ipv4_matches(s, h) || domain_matches(t, s, h)
}

/// `(?::\d{2,5})?(?:[/?#]\S*)?$` at `p`.
fn url_tail(s: &[char], p: usize) -> bool {
    match s.get(p) {
        None => true,
        Some('/' | '?' | '#') => true,
        Some(':') => {
            let digits = s[p + 1..].iter().take(6).take_while(|&&c| is_decimal(c)).count();
            (2..=5).contains(&digits) && matches!(s.get(p + 1 + digits), None | Some('/' | '?' | '#'))
        }
        _ => false,
    }
}

/// `[A-Za-z0-9\u00a1-\uffff]`.
fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ('\u{a1}'..='\u{ffff}').contains(&c)
}

/// `(?:(?:L[L_-]{0,62})?L\.)+[ALPHA_LOWER]{2,63}` then the tail. Labels cannot contain '.', so
/// for each label count the split is forced; try the TLD after every label.
fn domain_matches(t: &Tables, s: &[char], h: usize) -> bool {
    let mut p = h;
    let mut labels = 0;
    loop {
        if labels > 0 {
            let tld = s[p..].iter().take(64).take_while(|&&c| t.has(c, LOWER)).count();
            if (2..=63).contains(&tld) && url_tail(s, p + tld) {
                return true;
            }
        }
        let len = s[p..].iter().take_while(|&&c| is_label_char(c) || c == '_' || c == '-').count();
        let end = p + len;
        if len == 0 || len > 64 || s.get(end) != Some(&'.') || !is_label_char(s[p]) || !is_label_char(s[end - 1]) {
            return false;
        }
        labels += 1;
        p = end + 1;
    }
}

/// The dotted-IPv4 host alternative, with its negative lookaheads for private ranges.
fn ipv4_matches(s: &[char], h: usize) -> bool {
    let at = |p: usize| s.get(p).copied();
    let d = |p: usize| at(p).is_some_and(is_decimal);
    let lit = |p: usize, l: &str| l.chars().enumerate().all(|(k, c)| at(p + k) == Some(c));
    let in_range = |p: usize, lo: char, hi: char| at(p).is_some_and(|c| (lo..=hi).contains(&c));
    // `(?:\.\d{1,3}){k}` at p (inside a lookahead: what follows does not matter).
    let groups = |mut p: usize, k: usize| {
        for g in 0..k {
            if at(p) != Some('.') {
                return false;
            }
            let run = s[p + 1..].iter().take(4).take_while(|&&c| is_decimal(c)).count();
            if run == 0 || (g + 1 < k && run > 3) {
                return false;
            }
            p += 1 + run;
        }
        true
    };
    if (lit(h, "10") && groups(h + 2, 3)) || (lit(h, "127") && groups(h + 3, 3)) {
        return false;
    }
    if (lit(h, "169.254") || lit(h, "192.168")) && groups(h + 7, 2) {
        return false;
    }
    if lit(h, "172.")
        && ((at(h + 4) == Some('1') && in_range(h + 5, '6', '9'))
            || (at(h + 4) == Some('2') && d(h + 5))
            || (at(h + 4) == Some('3') && in_range(h + 5, '0', '1')))
        && groups(h + 6, 2)
    {
        return false;
    }
    // Bit k set: the octet can be k characters long.
    let first = |p: usize| {
        let mut m = 0u8;
        if in_range(p, '1', '9') {
            m |= 2 | if d(p + 1) { 4 } else { 0 };
        }
        if (at(p) == Some('1') && d(p + 1) && d(p + 2))
            || (at(p) == Some('2') && in_range(p + 1, '0', '1') && d(p + 2))
            || (lit(p, "22") && in_range(p + 2, '0', '3'))
        {
            m |= 8;
        }
        m
    };
    let middle = |p: usize| {
        let mut m = 0u8;
        if d(p) {
            m |= 2 | if d(p + 1) { 4 } else { 0 };
        }
        if (at(p) == Some('1') && d(p + 1) && d(p + 2))
            || (at(p) == Some('2') && in_range(p + 1, '0', '4') && d(p + 2))
            || (lit(p, "25") && in_range(p + 2, '0', '5'))
        {
            m |= 8;
        }
        m
    };
    let last = |p: usize| {
        let mut m = 0u8;
        if in_range(p, '1', '9') {
            m |= 2 | if d(p + 1) { 4 } else { 0 };
        }
        if (at(p) == Some('1') && d(p + 1) && d(p + 2))
            || (at(p) == Some('2') && in_range(p + 1, '0', '4') && d(p + 2))
            || (lit(p, "25") && in_range(p + 2, '0', '4'))
        {
            m |= 8;
        }
        m
    };
    let lens = |m: u8| (1..=3).filter(move |k| m & (1 << k) != 0);
    for l1 in lens(first(h)) {
        let p1 = h + l1;
        if at(p1) != Some('.') {
            continue;
        }
        for l2 in lens(middle(p1 + 1)) {
            let p2 = p1 + 1 + l2;
            if at(p2) != Some('.') {
                continue;
            }
            for l3 in lens(middle(p2 + 1)) {
                let p3 = p2 + 1 + l3;
                if at(p3) != Some('.') {
                    continue;
                }
                if lens(last(p3 + 1)).any(|l4| url_tail(s, p3 + 1 + l4)) {
                    return true;
                }
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Special-case matcher post-pass (§2.2 step 4, spaCy `_apply_special_cases`).

fn apply_matcher(t: &Tables, text: &str, tokens: &mut Vec<Span>) {
    let tok = |i: usize| &text[tokens[i].start..tokens[i].end];
    // Every occurrence of every key's token sequence, as (start, end) token indices.
    let mut matches: Vec<(usize, usize)> = Vec::new();
    for i in 0..tokens.len() {
        let first = tok(i);
        if !t.matcher_root_filter.may_contain(first) {
            continue;
        }
        let Some(&root) = t.matcher_roots.get(first) else { continue };
        let mut node = root;
        let mut j = i + 1;
        loop {
            if t.matcher_nodes[node].terminal {
                matches.push((i, j));
            }
            if j == tokens.len() {
                break;
            }
            let next = tok(j);
            match t.matcher_nodes[node].children.iter().find(|(k, _)| **k == *next) {
                Some(&(_, child)) => {
                    node = child;
                    j += 1;
                }
                None => break,
            }
        }
    }
    if matches.is_empty() {
        return;
    }
    // Longest first, then earliest; an occurrence is kept unless its first or last token was
    // covered by an earlier-considered one (kept or not). Kept occurrences never overlap.
    matches.sort_unstable_by_key(|&(s, e)| (std::cmp::Reverse(e - s), s));
    let mut seen = vec![false; tokens.len()];
    let mut kept: Vec<(usize, usize, &[u8])> = Vec::new();
    for &(s, e) in &matches {
        if !seen[s] && !seen[e - 1] {
            // The covered text includes any whitespace between the tokens, so an occurrence that
            // spans chunks never equals a special case.
            let covered = &text[tokens[s].start..tokens[e - 1].end];
            if let Some(lens) = t.special(covered)
                && !same_split(&tokens[s..e], lens)
            {
                kept.push((s, e, lens));
            }
        }
        seen[s..e].iter_mut().for_each(|x| *x = true);
    }
    if kept.is_empty() {
        return;
    }
    kept.sort_unstable_by_key(|&(s, _, _)| s);
    let old = std::mem::take(tokens);
    tokens.reserve(old.len() + 8);
    let mut next = 0;
    for (s, e, lens) in kept {
        tokens.extend_from_slice(&old[next..s]);
        push_special(tokens, old[s].start, lens);
        next = e;
    }
    tokens.extend_from_slice(&old[next..]);
}

/// Whether contiguous `spans` already have the token lengths `lens`.
fn same_split(spans: &[Span], lens: &[u8]) -> bool {
    spans.len() == lens.len() && spans.iter().zip(lens).all(|(s, &l)| s.end - s.start == l as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacy_word_vectors() {
        let data = include_str!("../filter/testdata/spacy_words.jsonl");
        let mut failures = Vec::new();
        let mut total = 0;
        for line in data.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
            let text = v["text"].as_str().expect("text");
            let expected = string_list(&v["words"]);
            total += 1;
            let got = split_into_words(text);
            if got != expected {
                failures.push(format!("{text:?}\n  expected {expected:?}\n  got      {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}/{total} vectors differ:\n{}", failures.len(), failures.join("\n"));
    }

    #[test]
    fn cases_found_by_differential_fuzzing() {
        // Outputs of spaCy 3.8.18. Astral ALPHA_UPPER (uncased) lookahead, IPv4 with non-ASCII
        // digits after userinfo, private IPv4 ranges, matcher re-joins, digit-preceded suffixes.
        let cases: [(&str, &[&str]); 6] = [
            ("-aé.ßß.-ßA-9a.\u{1EE00}\u{1EE01}", &["-aé.ßß.-ßA-9a", ".", "\u{1EE00}\u{1EE01}"]),
            ("x:@168.100.169.1٢٣.16:80)", &["x:@168.100.169.1٢٣.16:80", ")"]),
            ("192.168.1.1/x 10.0.0.1. 8.8.8.8:53/", &["192.168.1.1", "/", "x", "10.0.0.1", ".", "8.8.8.8:53/"]),
            ("ftp://user@中-.ß-._.be,", &["ftp://user@中-.ß-._.be", ","]),
            ("hello:)) x.\"Y (:)", &["hello", ":))", "x.", "\"Y", "(", ":)"]),
            ("100°F. °F. 5km². 10US$", &["100", "°", "F", ".", "°", "F", ".", "5", "km²", ".", "10", "US$"]),
        ];
        for (text, expected) in cases {
            assert_eq!(split_into_words(text), expected, "{text:?}");
        }
    }

    #[test]
    fn tokens_are_slices_and_cover_the_text() {
        let text = " a  b\u{a0}don't\n(x.)  e.g.,";
        let toks = tokens(text);
        assert_eq!(toks, [" ", "a", " ", "b", "\u{a0}", "do", "n't", "\n", "(", "x.", ")", " ", "e.g.", ","]);
        // Only single absorbed spaces are missing from the concatenation.
        assert_eq!(toks.concat().len() + 2, text.len());
    }

    #[test]
    fn corner_cases_do_not_panic_and_stay_linear() {
        for text in
            ["", " ", "\u{1f}", "\u{0}\u{1}", "@", "a@", "@.", "1.", ".", "..", "—", "——a", "a-", "US$", "1.2.3.4:"]
        {
            let _ = split_into_words(text);
        }
        let long = "a@".repeat(200_000) + "x.com";
        assert_eq!(split_into_words(&long).len(), 1);
        let parens = "(".repeat(100_000) + "x" + &")".repeat(100_000);
        assert_eq!(split_into_words(&parens).len(), 200_001);
        let dots = "a.".repeat(300_000);
        assert!(!split_into_words(&dots).is_empty());
    }
}
