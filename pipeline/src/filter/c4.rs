//! `c4_quality`: the C4 line rules (Raffel et al. 2020) as datatrove 0.10's `C4QualityFilter`
//! applies them. It edits the text (kept lines joined by `\n`). `terminal_punct = false` is
//! FineWeb's setting. Reasons: `lorem_ipsum`, `curly_bracket`, `too_few_sentences`.

use serde::{Deserialize, Serialize};

use super::{Filter, Verdict};
use crate::document::Document;
use crate::text::python::{self, is_decimal};
use crate::text::sentences::count_sentences;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct C4Config {
    /// Drop lines that do not end in `.`, `?`, `!`, `"`, `'` or that end in `...`.
    pub terminal_punct: bool,
    pub remove_citations: bool,
    /// −1 disables.
    pub min_num_sentences: i64,
    /// −1 disables.
    pub min_words_per_line: i64,
    /// −1 disables.
    pub max_word_length: i64,
    pub filter_lorem_ipsum: bool,
    pub filter_javascript: bool,
    pub filter_curly_bracket: bool,
    pub filter_policy: bool,
}

impl Default for C4Config {
    fn default() -> Self {
        Self {
            terminal_punct: true,
            remove_citations: true,
            min_num_sentences: 5,
            min_words_per_line: 3,
            max_word_length: 1000,
            filter_lorem_ipsum: true,
            filter_javascript: true,
            filter_curly_bracket: true,
            filter_policy: true,
        }
    }
}

const POLICY: [&str; 6] =
    ["terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"];

pub struct C4Filter(pub C4Config);

/// Remove `[digits]`, `[edit]` and `[citation needed]` (Python `re.sub`, left to right).
fn remove_citations(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('[') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.len() - after.trim_start_matches(is_decimal).len();
        let matched = if after[digits..].starts_with(']') {
            Some(digits + 1)
        } else if after.starts_with("edit]") {
            Some(5)
        } else if after.starts_with("citation needed]") {
            Some(16)
        } else {
            None
        };
        match matched {
            Some(len) => rest = &after[len..],
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.into()
}

impl Filter for C4Filter {
    fn name(&self) -> &str {
        "c4_quality"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let c = &self.0;
        let mut kept: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        let mut sentences = 0i64;
        for line in python::splitlines(&doc.text) {
            let line = python::strip(line);
            let (mut words, mut too_long) = (0i64, false);
            for w in python::split_whitespace(line) {
                words += 1;
                too_long |= c.max_word_length != -1 && python::len(w) as i64 > c.max_word_length;
            }
            if too_long {
                continue;
            }
            let line = if c.remove_citations { remove_citations(line) } else { line.into() };
            if c.terminal_punct && (!line.ends_with(['.', '?', '!', '"', '\'']) || line.ends_with("...")) {
                continue;
            }
            if words < c.min_words_per_line {
                continue;
            }
            let lower = line.to_lowercase();
            if c.filter_lorem_ipsum && lower.contains("lorem ipsum") {
                return Verdict::drop("lorem_ipsum");
            }
            if c.filter_javascript && lower.contains("javascript") {
                continue;
            }
            if c.filter_curly_bracket && line.contains('{') {
                return Verdict::drop("curly_bracket");
            }
            if c.filter_policy && POLICY.iter().any(|p| lower.contains(p)) {
                continue;
            }
            if c.min_num_sentences != -1 {
                sentences += count_sentences(&line) as i64;
            }
            kept.push(line);
        }
        if sentences < c.min_num_sentences {
            return Verdict::drop("too_few_sentences");
        }
        let text = python::strip(&kept.join("\n")).to_string();
        doc.text = text;
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: C4Config, text: &str) -> (Verdict, String) {
        let mut doc = Document::new("d".into(), text.into(), "f".into(), 0);
        let v = C4Filter(config).apply(&mut doc);
        (v, doc.text)
    }

    const GOOD: &str = "This is a sentence. Here is another one.";

    #[test]
    fn five_sentences_needed_and_text_is_rewritten() {
        let text = format!("  {GOOD}\r\nmenu\n{GOOD}\n{GOOD} And a fifth one.  ");
        let (v, out) = run(C4Config::default(), &text);
        assert_eq!(v, Verdict::Keep);
        assert_eq!(out, format!("{GOOD}\n{GOOD}\n{GOOD} And a fifth one."));
        let (v, _) = run(C4Config::default(), &format!("{GOOD}\n{GOOD}"));
        assert_eq!(v, Verdict::drop("too_few_sentences"));
    }

    #[test]
    fn line_rules() {
        let five = format!("{GOOD}\n{GOOD}\n{GOOD}");
        for (line, survives) in [
            ("Two words.", false),
            ("Three short words.", true),
            ("No terminal punctuation here", false),
            ("Ends with an ellipsis...", false),
            ("Ends with a quote.\"", true),
            ("Please enable JavaScript to continue.", false),
            ("We use cookies to improve this site.", false),
            ("See the Privacy Policy for details.", false),
            ("A cited claim holds here.[1]", true),
        ] {
            let (_, out) = run(C4Config::default(), &format!("{five}\n{line}"));
            assert_eq!(out.lines().count() == 4, survives, "{line:?}: {out:?}");
        }
        let long_word = format!("{five}\nword {} more words.", "x".repeat(1001));
        assert_eq!(run(C4Config::default(), &long_word).1.lines().count(), 3);
    }

    #[test]
    fn document_level_drops_only_on_surviving_lines() {
        let five = format!("{GOOD}\n{GOOD}\n{GOOD}");
        assert_eq!(
            run(C4Config::default(), &format!("{five}\nfunction f() {{ return 1; }}.")).0,
            Verdict::drop("curly_bracket")
        );
        // Without terminal punctuation the line is dropped first and the document survives.
        assert_eq!(run(C4Config::default(), &format!("{five}\nfunction f() {{ return 1 }}")).0, Verdict::Keep);
        let no_punct = C4Config { terminal_punct: false, ..C4Config::default() };
        assert_eq!(run(no_punct, &format!("{five}\nfunction f() {{ return 1 }}")).0, Verdict::drop("curly_bracket"));
        assert_eq!(
            run(C4Config::default(), &format!("{five}\nLorem ipsum dolor sit amet.")).0,
            Verdict::drop("lorem_ipsum")
        );
    }

    #[test]
    fn citations_are_removed_before_the_punctuation_check() {
        assert_eq!(remove_citations("Claim.[12] More[edit] and[citation needed][x]"), "Claim. More and[x]");
        assert_eq!(remove_citations("Empty [] too"), "Empty  too");
        assert_eq!(remove_citations("Arabic [١٢]"), "Arabic ");
    }
}
