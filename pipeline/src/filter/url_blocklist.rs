//! `url_blocklist`: drop documents whose URL is on a blocklist file.
//!
//! One entry per line; blank lines and `#` comments are ignored; matching is case-insensitive.
//! An entry that looks like a host name (has a `.`, no `/` and no spaces) blocks that host and
//! its subdomains (`example.com` blocks `www.example.com`, not `notexample.com`); any other
//! entry blocks URLs containing it as a substring (`casino`, `/wp-login`). Documents without a
//! URL pass.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Filter, FilterError, Verdict};
use crate::document::Document;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlBlocklistConfig {
    pub file: PathBuf,
}

pub struct UrlBlocklistFilter {
    domains: HashSet<String>,
    substrings: Vec<String>,
}

impl UrlBlocklistFilter {
    pub fn from_file(path: &Path) -> Result<Self, FilterError> {
        let text = std::fs::read_to_string(path).map_err(crate::file_error::FileError::at(path))?;
        Ok(Self::from_entries(text.lines()))
    }

    pub fn from_entries<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let (mut domains, mut substrings) = (HashSet::new(), Vec::new());
        for line in lines {
            let entry = line.split('#').next().unwrap_or("").trim().to_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry.contains('.') && !entry.contains('/') && !entry.contains(char::is_whitespace) {
                domains.insert(entry.trim_start_matches("*.").to_string());
            } else {
                substrings.push(entry);
            }
        }
        substrings.sort();
        Self { domains, substrings }
    }
}

/// The host of a URL, lowercased, without scheme, credentials or port.
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.split(':').next().unwrap_or("").trim_end_matches('.')
}

impl Filter for UrlBlocklistFilter {
    fn name(&self) -> &str {
        "url_blocklist"
    }

    fn apply(&self, doc: &mut Document) -> Verdict {
        let Some(url) = &doc.url else { return Verdict::Keep };
        let url = url.to_lowercase();
        let mut host = host(&url);
        loop {
            if self.domains.contains(host) {
                return Verdict::drop("blocked_domain");
            }
            match host.split_once('.') {
                Some((_, parent)) if parent.contains('.') || self.domains.contains(parent) => host = parent,
                _ => break,
            }
        }
        if self.substrings.iter().any(|s| url.contains(s.as_str())) {
            return Verdict::drop("blocked_substring");
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(filter: &UrlBlocklistFilter, url: Option<&str>) -> Verdict {
        let mut doc = Document::new("d".into(), "t".into(), "f".into(), 0);
        doc.url = url.map(str::to_string);
        filter.apply(&mut doc)
    }

    #[test]
    fn domains_block_subdomains_and_substrings_match_anywhere() {
        let f = UrlBlocklistFilter::from_entries(["# adult", "Example.com", "", "casino  # spam", "*.bad.org"]);
        assert_eq!(verdict(&f, Some("https://www.example.com/a")), Verdict::drop("blocked_domain"));
        assert_eq!(verdict(&f, Some("http://user@EXAMPLE.com:8080/")), Verdict::drop("blocked_domain"));
        assert_eq!(verdict(&f, Some("https://notexample.com/")), Verdict::Keep);
        assert_eq!(verdict(&f, Some("https://x.y.bad.org")), Verdict::drop("blocked_domain"));
        assert_eq!(verdict(&f, Some("https://news.site/best-Casino-bonus")), Verdict::drop("blocked_substring"));
        assert_eq!(verdict(&f, Some("https://news.site/")), Verdict::Keep);
        assert_eq!(verdict(&f, None), Verdict::Keep);
    }
}
