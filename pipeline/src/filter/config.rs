//! Filter settings as they appear in a prepare config (`[[domain.filters]]` tables, run in
//! order) and on the command line (`--filters a,b`), and how each becomes a [`Filter`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Filter;
use super::c4::{C4Config, C4Filter};
use super::decontaminate::{DecontaminateConfig, DecontaminateFilter};
use super::fineweb::{FineWebConfig, FineWebFilter};
use super::gopher_quality::{GopherQualityConfig, GopherQualityFilter};
use super::gopher_repetition::{GopherRepetitionConfig, GopherRepetitionFilter};
use super::language::{LanguageConfig, LanguageFilter};
use super::length::{LengthConfig, LengthFilter};
use super::quality::{QualityConfig, QualityFilter};
use super::url_blocklist::{UrlBlocklistConfig, UrlBlocklistFilter};

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    File(#[from] crate::file_error::FileError),
    #[error("{path}: not a fastText model: {source}")]
    Model {
        path: PathBuf,
        #[source]
        source: fasttext::FastTextError,
    },
    /// A setting out of range, or a filter that needs a file named without one.
    #[error("{0}")]
    Config(String),
    /// The boilerplate sample could not be read.
    #[error(transparent)]
    Read(#[from] Box<crate::read::ReadError>),
}

/// One filter with its settings; every field has the reference default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FilterConfig {
    Language(LanguageConfig),
    GopherQuality(GopherQualityConfig),
    GopherRepetition(GopherRepetitionConfig),
    C4Quality(C4Config),
    FinewebQuality(FineWebConfig),
    Length(LengthConfig),
    UrlBlocklist(UrlBlocklistConfig),
    Quality(QualityConfig),
    /// Benchmark decontamination (last in a domain's list: after the filters, before dedup).
    Decontaminate(DecontaminateConfig),
}

/// Names accepted by `--filters` (those that need no file).
pub const NAMES_WITHOUT_FILES: &[&str] = &["gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality"];

impl FilterConfig {
    /// The default settings of a filter that needs no model or list file.
    pub fn by_name(name: &str) -> Result<Self, FilterError> {
        Ok(match name {
            "gopher_quality" => Self::GopherQuality(Default::default()),
            "gopher_repetition" => Self::GopherRepetition(Default::default()),
            "c4_quality" => Self::C4Quality(Default::default()),
            "fineweb_quality" => Self::FinewebQuality(Default::default()),
            "language" | "quality" | "url_blocklist" | "length" | "decontaminate" => {
                return Err(FilterError::Config(format!(
                    "filter {name:?} needs settings (a model, a list or bounds): use a prepare config"
                )));
            }
            other => {
                return Err(FilterError::Config(format!(
                    "unknown filter {other:?}; known: {}, language, quality, url_blocklist, length, decontaminate",
                    NAMES_WITHOUT_FILES.join(", ")
                )));
            }
        })
    }

    /// Resolve relative file paths against `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| *p = util::fsutil::resolve_against(base, p);
        match self {
            Self::Language(c) => fix(&mut c.model),
            Self::Quality(c) => fix(&mut c.model),
            Self::UrlBlocklist(c) => fix(&mut c.file),
            Self::Decontaminate(c) => {
                c.against.iter_mut().for_each(|p| *p = super::decontaminate::resolve_eval_set(base, p));
                c.boilerplate.iter_mut().flatten().for_each(fix);
            }
            _ => {}
        }
    }

    /// The files this filter reads (a model, a list, evaluation sets; not the boilerplate
    /// sample, which is the inputs or named by path like them).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Language(c) => vec![c.model.clone()],
            Self::Quality(c) => vec![c.model.clone()],
            Self::UrlBlocklist(c) => vec![c.file.clone()],
            Self::Decontaminate(c) => c.against.iter().map(|e| super::decontaminate::eval_set(e).1).collect(),
            _ => Vec::new(),
        }
    }

    /// Settings that no document could satisfy, or that are out of their range.
    pub fn check(&self) -> Result<(), FilterError> {
        let bad = |m: String| Err(FilterError::Config(m));
        let probability = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                bad(format!("{name}: threshold {v} is not a probability (0 to 1)"))
            }
        };
        match self {
            Self::Length(c) => {
                for (what, min, max) in [("chars", c.min_chars, c.max_chars), ("words", c.min_words, c.max_words)] {
                    if let (Some(min), Some(max)) = (min, max)
                        && min > max
                    {
                        return bad(format!(
                            "length: min_{what} {min} is above max_{what} {max}: every document would go"
                        ));
                    }
                }
                Ok(())
            }
            Self::Quality(c) => c.threshold.map_or(Ok(()), |t| probability("quality", t)),
            Self::Language(c) => probability("language", c.threshold),
            Self::Decontaminate(c) => c.check(),
            _ => Ok(()),
        }
    }

    pub fn build(&self) -> Result<Box<dyn Filter>, FilterError> {
        self.check()?;
        Ok(match self {
            Self::Language(c) => Box::new(LanguageFilter::new(c)?),
            Self::GopherQuality(c) => Box::new(GopherQualityFilter(c.clone())),
            Self::GopherRepetition(c) => Box::new(GopherRepetitionFilter::new(c.clone())),
            Self::C4Quality(c) => Box::new(C4Filter(c.clone())),
            Self::FinewebQuality(c) => Box::new(FineWebFilter(c.clone())),
            Self::Length(c) => Box::new(LengthFilter(c.clone())),
            Self::Decontaminate(c) => Box::new(DecontaminateFilter::new(c)?),
            Self::UrlBlocklist(c) => Box::new(UrlBlocklistFilter::from_file(&c.file)?),
            Self::Quality(c) => Box::new(QualityFilter::new(c)?),
        })
    }
}

/// Add `file_checksums` (path → checksum of each file the filters read) to a run's identity
/// `settings`, so that a rerun after a model, list or evaluation set changed in place is a
/// different run, not a resume. Filters that read no file leave the identity as it was.
pub fn add_file_checksums(
    settings: &mut serde_json::Value,
    configs: &[FilterConfig],
) -> Result<(), crate::file_error::FileError> {
    let mut sums = serde_json::Map::new();
    for path in configs.iter().flat_map(FilterConfig::files) {
        let sum = util::fsutil::file_checksum(&path).map_err(crate::file_error::FileError::at(&path))?;
        sums.insert(path.to_string_lossy().into_owned(), sum.into());
    }
    if !sums.is_empty() {
        settings["file_checksums"] = sums.into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_tables_become_filters_with_defaults() {
        #[derive(Deserialize)]
        struct Doc {
            filters: Vec<FilterConfig>,
        }
        let doc: Doc = toml::from_str(
            r#"
            [[filters]]
            type = "c4_quality"
            terminal_punct = false

            [[filters]]
            type = "gopher_quality"
            min_doc_words = 20

            [[filters]]
            type = "length"
            max_chars = 100000
            "#,
        )
        .unwrap();
        assert_eq!(doc.filters[0], FilterConfig::C4Quality(C4Config { terminal_punct: false, ..Default::default() }));
        let FilterConfig::GopherQuality(g) = &doc.filters[1] else { panic!() };
        assert_eq!((g.min_doc_words, g.max_doc_words), (Some(20), Some(100_000)));
        let bad: Result<Doc, _> = toml::from_str("[[filters]]\ntype = \"gopher_quality\"\nmin_doc_wrds = 3\n");
        assert!(bad.err().unwrap().to_string().contains("min_doc_wrds"));
    }

    #[test]
    fn names_resolve_or_explain() {
        assert!(matches!(FilterConfig::by_name("fineweb_quality"), Ok(FilterConfig::FinewebQuality(_))));
        assert!(FilterConfig::by_name("language").err().unwrap().to_string().contains("prepare config"));
        assert!(FilterConfig::by_name("gopher").err().unwrap().to_string().contains("known"));
    }
}
