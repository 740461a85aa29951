//! The prepare config (TOML): global settings and one `[[domain]]` table per output domain.
//!
//! ```toml
//! output = "out/prepared"      # each domain is written to OUTPUT/NAME
//! batch_size = 1024            # documents per parallel batch (memory bound)
//! on_error = "fail"            # or "skip": record bad rows as removed and go on
//!
//! [[domain]]
//! name = "web"
//! inputs = ["dumps/web/*.parquet"]   # files or globs, parquet / jsonl / jsonl.gz / jsonl.zst
//! text_column = "text"               # default "text"
//! id_column = "id"                   # default "id"; FILE#ROW when absent
//! where = "language_score > 0.9"     # optional row predicate (see read::predicate)
//!
//! [[domain.filters]]                 # run in this order; the first drop decides
//! type = "language"
//! model = "models/lid.bin"
//! languages = ["en"]
//!
//! [[domain.filters]]
//! type = "gopher_quality"
//!
//! [decontaminate]                    # after each domain's filters, before dedup
//! against = ["evals/gsm8k.jsonl"]    # see filter::decontaminate for every setting
//! columns = ["question", "answer"]
//! domains = ["math", "web"]          # default: every domain
//! ```
//!
//! Relative paths are resolved against the config file's folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetError;
use crate::dedup::SettingsError;
use crate::file_error::FileError;
use crate::filter::decontaminate::DecontaminateConfig;
use crate::filter::{FilterConfig, FilterError};
use crate::read::{OnError, Predicate, PredicateError, ReadOptions};
use crate::render::{LossMask, RenderConfig, RenderConfigError, Renderer, TemplateSource};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Read(#[from] FileError),
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: {problem}")]
    Invalid {
        path: PathBuf,
        #[source]
        problem: ConfigProblem,
    },
}

/// What makes a well-formed prepare config unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("no [[domain]] table")]
    NoDomain,
    #[error("batch_size must be at least 1")]
    BatchSize,
    #[error("domain name {0:?} must be a plain folder name")]
    DomainName(String),
    #[error("domain {0:?} appears twice")]
    DomainTwice(String),
    #[error("domain {0:?} has no inputs")]
    NoInputs(String),
    #[error("domain {domain:?}: {source}")]
    Where {
        domain: String,
        #[source]
        source: PredicateError,
    },
    #[error("domain {domain:?}: {source}")]
    Filter {
        domain: String,
        #[source]
        source: FilterError,
    },
    #[error(transparent)]
    Formats(DatasetError),
    #[error("tokenizer.shard_size_mb must be at least 1")]
    ShardSize,
    #[error(transparent)]
    Dedup(SettingsError),
    #[error("{section}.domains is empty: name the domains it covers, or leave it out for all")]
    SectionDomainsEmpty { section: &'static str },
    #[error("{section}.domains: no domain named {name:?}")]
    SectionUnknownDomain { section: &'static str, name: String },
    #[error("dedup.keep_numbers_in: {0:?} is not a deduplicated domain")]
    KeepNumbersUnknownDomain(String),
    #[error(transparent)]
    Decontaminate(FilterError),
    #[error("domain {domain:?}: {source}")]
    Render {
        domain: String,
        #[source]
        source: RenderConfigError,
    },
    #[error(
        "domain {0:?}: loss_mask = \"assistant\" cannot be used with the c4_quality filter, which removes lines \
         (the assistant spans would no longer match the text)"
    )]
    MaskWithLineRemoval(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareConfig {
    pub output: PathBuf,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(rename = "domain")]
    pub domains: Vec<DomainConfig>,
    /// Benchmark decontamination of several domains, after each one's own filters.
    #[serde(default)]
    pub decontaminate: Option<DecontaminateSection>,
    /// Deduplication over the filtered documents of several domains at once.
    #[serde(default)]
    pub dedup: Option<crate::dedup::DedupSettings>,
    /// Tokenization into shards; without it prepare stops at filtered (and deduplicated) text.
    #[serde(default)]
    pub tokenizer: Option<PrepareTokenizerConfig>,
}

/// `[decontaminate]`: one set of evaluation items checked in several domains. Loading the config
/// appends it to each of those domains' filters, so it runs, resumes and reports as their last
/// filter step (`decontaminate` in `stats.json` and `removed.parquet`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct DecontaminateSection {
    /// The domains checked, in any order; default: all.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    #[serde(flatten)]
    pub check: DecontaminateConfig,
}

/// By hand, because serde's `flatten` would let a misspelt setting through unnoticed.
impl TryFrom<toml::Table> for DecontaminateSection {
    type Error = toml::de::Error;

    fn try_from(mut table: toml::Table) -> Result<Self, Self::Error> {
        let domains = table.remove("domains").map(|v| v.try_into()).transpose()?;
        Ok(Self { domains, check: toml::Value::Table(table).try_into()? })
    }
}

/// `[tokenizer]`: how kept documents become token shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareTokenizerConfig {
    /// A Hugging Face `tokenizer.json`.
    pub path: PathBuf,
    /// End-of-document token string or id; default: detected from common names.
    #[serde(default)]
    pub eos: Option<String>,
    /// Beginning-of-document token string or id, when documents should start with one.
    #[serde(default)]
    pub bos: Option<String>,
    /// Target size of a shard's `.bin`, in MiB.
    #[serde(default = "default_shard_size_mb")]
    pub shard_size_mb: u64,
    /// `megatron` (always) and optionally `datatrove` (`.ds` + `.ds.index`).
    #[serde(default = "default_formats")]
    pub formats: Vec<crate::dataset::OutputFormat>,
    /// What a special token's literal string inside a document becomes: `split` (encoded as
    /// text, the default), `keep` (the special id) or `error`.
    #[serde(default)]
    pub special_tokens_in_text: crate::tokenize::SpecialTokensInText,
}

/// Target size of a shard's `.bin` in MiB: 1 GiB, Megatron's usual shard size.
pub fn default_shard_size_mb() -> u64 {
    1024
}

fn default_formats() -> Vec<crate::dataset::OutputFormat> {
    vec![crate::dataset::OutputFormat::Megatron]
}

fn default_batch_size() -> usize {
    ReadOptions::default().batch_size
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    pub name: String,
    pub inputs: Vec<String>,
    #[serde(default = "default_text_column")]
    pub text_column: String,
    #[serde(default = "default_id_column")]
    pub id_column: Option<String>,
    #[serde(default = "default_url_column")]
    pub url_column: Option<String>,
    #[serde(default, rename = "where")]
    pub where_: Option<String>,
    /// Chat data: the column of message lists, rendered with `chat_template` (see [`crate::render`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<TemplateSource>,
    /// Flat fields: `"Question: {question}\nAnswer: {answer}"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub loss_mask: LossMask,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_date: Option<String>,
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_text_column() -> String {
    "text".into()
}

fn default_id_column() -> Option<String> {
    Some("id".into())
}

fn default_url_column() -> Option<String> {
    Some("url".into())
}

impl PrepareConfig {
    /// Read and check a config file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(FileError::at(path))?;
        let mut config: Self =
            toml::from_str(&text).map_err(|source| ConfigError::Toml { path: path.to_path_buf(), source })?;
        let base = util::fsutil::config_folder(path).map_err(FileError::at(path))?;
        config.resolve_paths(&base);
        config.validate().map_err(|problem| ConfigError::Invalid { path: path.to_path_buf(), problem })?;
        config.append_decontamination();
        Ok(config)
    }

    /// `[decontaminate]` as the last filter of each domain it names.
    fn append_decontamination(&mut self) {
        if let Some(section) = &self.decontaminate {
            for d in &mut self.domains {
                if section.domains.as_ref().is_none_or(|names| names.contains(&d.name)) {
                    d.filters.push(FilterConfig::Decontaminate(section.check.clone()));
                }
            }
        }
        // A decontamination step learns a domain's boilerplate from its own inputs unless told
        // otherwise.
        for d in &mut self.domains {
            for f in &mut d.filters {
                if let FilterConfig::Decontaminate(c) = f
                    && c.boilerplate.is_none()
                {
                    c.boilerplate = Some(d.inputs.iter().map(PathBuf::from).collect());
                    c.boilerplate_text_column = d.text_column.clone();
                }
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        use util::fsutil::resolve_against;
        self.output = resolve_against(base, &self.output);
        if let Some(t) = &mut self.tokenizer {
            t.path = resolve_against(base, &t.path);
        }
        for d in &mut self.domains {
            for input in &mut d.inputs {
                *input = resolve_against(base, Path::new(input.as_str())).to_string_lossy().into_owned();
            }
            for f in &mut d.filters {
                f.resolve_paths(base);
            }
            if let Some(TemplateSource::Path(p)) = &mut d.chat_template {
                *p = resolve_against(base, p);
            }
        }
        if let Some(section) = &mut self.decontaminate {
            let check = &mut section.check;
            for entry in &mut check.against {
                *entry = crate::filter::decontaminate::resolve_eval_set(base, entry);
            }
            for path in check.boilerplate.iter_mut().flatten() {
                *path = resolve_against(base, path);
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigProblem> {
        if self.domains.is_empty() {
            return Err(ConfigProblem::NoDomain);
        }
        if self.batch_size == 0 {
            return Err(ConfigProblem::BatchSize);
        }
        let mut names = std::collections::HashSet::new();
        for d in &self.domains {
            if d.name.is_empty() || d.name.contains(['/', '\\']) || d.name.starts_with('.') {
                return Err(ConfigProblem::DomainName(d.name.clone()));
            }
            if !names.insert(&d.name) {
                return Err(ConfigProblem::DomainTwice(d.name.clone()));
            }
            if d.inputs.is_empty() {
                return Err(ConfigProblem::NoInputs(d.name.clone()));
            }
            if let Some(w) = &d.where_ {
                Predicate::parse(w).map_err(|source| ConfigProblem::Where { domain: d.name.clone(), source })?;
            }
            for f in &d.filters {
                f.check().map_err(|source| ConfigProblem::Filter { domain: d.name.clone(), source })?;
            }
            d.renderer()?;
            if d.loss_mask == LossMask::Assistant && d.filters.iter().any(|f| matches!(f, FilterConfig::C4Quality(_))) {
                return Err(ConfigProblem::MaskWithLineRemoval(d.name.clone()));
            }
        }
        if let Some(section) = &self.decontaminate {
            check_domain_list("decontaminate", &section.domains, &names)?;
            section.check.check().map_err(ConfigProblem::Decontaminate)?;
        }
        if let Some(t) = &self.tokenizer {
            crate::dataset::Formats::from_list(&t.formats).map_err(ConfigProblem::Formats)?;
            if t.shard_size_mb == 0 {
                return Err(ConfigProblem::ShardSize);
            }
        }
        if let Some(dedup) = &self.dedup {
            dedup.resolve().map_err(ConfigProblem::Dedup)?;
            check_domain_list("dedup", &dedup.domains, &names)?;
            let deduplicated = dedup.domain_names(&self.domains);
            if let Some(unknown) = dedup.keep_numbers_in.iter().flatten().find(|n| !deduplicated.contains(&n.as_str()))
            {
                return Err(ConfigProblem::KeepNumbersUnknownDomain(unknown.clone()));
            }
        }
        Ok(())
    }
}

/// A section's `domains` list, when given, names at least one domain and only known ones.
fn check_domain_list(
    section: &'static str,
    list: &Option<Vec<String>>,
    known: &std::collections::HashSet<&String>,
) -> Result<(), ConfigProblem> {
    let Some(list) = list else { return Ok(()) };
    if list.is_empty() {
        return Err(ConfigProblem::SectionDomainsEmpty { section });
    }
    match list.iter().find(|n| !known.contains(n)) {
        Some(name) => Err(ConfigProblem::SectionUnknownDomain { section, name: name.clone() }),
        None => Ok(()),
    }
}

impl DomainConfig {
    pub fn render_config(&self) -> RenderConfig {
        RenderConfig {
            messages_column: self.messages_column.clone(),
            chat_template: self.chat_template.clone(),
            template: self.template.clone(),
            loss_mask: self.loss_mask,
            template_date: self.template_date.clone(),
        }
    }

    /// The domain's renderer (`None`: it reads `text_column`).
    pub fn renderer(&self) -> Result<Option<std::sync::Arc<Renderer>>, ConfigProblem> {
        let built = self.render_config().build();
        built
            .map(|r| r.map(std::sync::Arc::new))
            .map_err(|source| ConfigProblem::Render { domain: self.name.clone(), source })
    }

    pub fn read_options(&self, batch_size: usize, on_error: OnError) -> Result<ReadOptions, ConfigProblem> {
        Ok(ReadOptions {
            text_column: self.text_column.clone(),
            id_column: self.id_column.clone(),
            url_column: self.url_column.clone(),
            predicate: self.where_.as_deref().map(|w| Predicate::parse(w).expect("validated on load")),
            carry: Vec::new(),
            keep_provenance: false,
            render: self.renderer()?,
            batch_size,
            on_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_resolves_and_validates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prepare.toml");
        std::fs::write(
            &path,
            r#"
            output = "out"
            [[domain]]
            name = "web"
            inputs = ["dumps/*.parquet"]
            where = "language_score > 0.9"
            [[domain.filters]]
            type = "gopher_quality"
            [[domain.filters]]
            type = "url_blocklist"
            file = "lists/block.txt"
            "#,
        )
        .unwrap();
        let c = PrepareConfig::load(&path).unwrap();
        assert_eq!(c.output, dir.path().join("out"));
        assert_eq!(c.domains[0].inputs, [dir.path().join("dumps/*.parquet").to_string_lossy()]);
        let FilterConfig::UrlBlocklist(b) = &c.domains[0].filters[1] else { panic!() };
        assert_eq!(b.file, dir.path().join("lists/block.txt"));
        assert_eq!(c.batch_size, 1024);

        std::fs::write(&path, "output = \"o\"\n[[domain]]\nname = \"w\"\ninputs = [\"a\"]\nwhere = \"x >\"\n").unwrap();
        let err = PrepareConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("prepare.toml") && err.contains("where"), "{err}");
        std::fs::write(&path, "output = \"o\"\n[[domain]]\nname = \"w\"\ninputs = [\"a\"]\ntext_col = \"t\"\n")
            .unwrap();
        assert!(PrepareConfig::load(&path).unwrap_err().to_string().contains("text_col"));
    }

    #[test]
    fn a_decontaminate_section_becomes_the_last_filter_of_the_domains_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prepare.toml");
        let base = "output = \"out\"\n[[domain]]\nname = \"web\"\ninputs = [\"w\"]\n[[domain.filters]]\ntype = \"gopher_quality\"\n[[domain]]\nname = \"math\"\ninputs = [\"m\"]\n";
        let load = |section: &str| {
            std::fs::write(&path, format!("{base}[decontaminate]\n{section}")).unwrap();
            PrepareConfig::load(&path)
        };
        let c = load("against = [\"evals/gsm8k.jsonl\"]\nmode = \"mark\"\n").unwrap();
        for d in &c.domains {
            let Some(FilterConfig::Decontaminate(last)) = d.filters.last() else {
                panic!("{}: {:?}", d.name, d.filters)
            };
            assert_eq!(last.against, [dir.path().join("evals/gsm8k.jsonl")]);
            assert_eq!((last.mode, last.ngram), (crate::filter::decontaminate::Mode::Mark, 13));
            let own = dir.path().join(if d.name == "web" { "w" } else { "m" });
            assert_eq!(last.boilerplate, Some(vec![own]), "the boilerplate sample is the domain's inputs");
        }
        let c = load("against = [\"e.jsonl\"]\nboilerplate = [\"sample/*.parquet\"]\n").unwrap();
        let Some(FilterConfig::Decontaminate(last)) = c.domains[1].filters.last() else { panic!() };
        assert_eq!(last.boilerplate, Some(vec![dir.path().join("sample/*.parquet")]));
        assert_eq!(c.domains[0].filters.len(), 2, "after the domain's own filters");
        let c = load("against = [\"e.jsonl\"]\ndomains = [\"math\"]\n").unwrap();
        assert_eq!((c.domains[0].filters.len(), c.domains[1].filters.len()), (1, 1));
        assert!(matches!(c.domains[1].filters[0], FilterConfig::Decontaminate(_)));
        for (section, wanted) in [
            ("against = [\"e.jsonl\"]\ndomains = [\"code\"]\n", "no domain named \"code\""),
            ("against = [\"e.jsonl\"]\ndomains = []\n", "decontaminate.domains is empty"),
            ("against = []\n", "against lists no evaluation set"),
            ("against = [\"e.jsonl\"]\nn_gram = 8\n", "n_gram"),
        ] {
            let err = load(section).map(|_| ()).unwrap_err();
            let text = format!("{err}: {}", std::error::Error::source(&err).map(|e| e.to_string()).unwrap_or_default());
            assert!(text.contains(wanted), "{section}: {text}");
        }
    }
}
