//! Evaluation on tasks, in the formats lm-evaluation-harness users know:
//!
//! - `multiple_choice`: `context`, `choices` (a list), `gold` (an index, the choice's text, or
//!   its letter): each choice scored by the summed log-probability of its tokens after the
//!   context; `acc`, `acc_norm` (log-probability per character of the choice, as lm-eval does);
//! - `loglikelihood`: `context` + `continuation`: its log-probability, and whether greedy
//!   decoding produces it;
//! - `perplexity`: a whole `text`, scored in windows of the model's length.
//!
//! A task is a `.jsonl`/`.parquet` file (each line's fields decide its kind), or a `.toml` that
//! names its data and sets the format, `{field}` prompt templates and few-shot examples
//! ([`TaskSpec`]). Scoring is in [`scoring`].

mod prompts;
mod scoring;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use pipeline::render::{FieldTemplate, json_kind, lookup};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use scoring::{EvalOptions, ItemResult, TaskScores, evaluate_task};

/// What a task measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    MultipleChoice,
    Loglikelihood,
    Perplexity,
}

/// The choices of a multiple-choice item: a field holding a list, or one template per choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChoicesSpec {
    Field(String),
    Templates(Vec<String>),
}

/// A task's settings: a `.toml` file, or the defaults for a bare data file.
///
/// ```toml
/// data = "math_mc.jsonl"                  # relative to this file
/// format = "multiple_choice"              # default: from each line's fields
/// context = "Question: {question}\nAnswer:"
/// choices = ["{A}", "{B}", "{C}", "{D}"]  # or the name of a list field (default "choices")
/// gold = "answer"                         # an index, a choice's text, or its letter A, B, …
/// fewshot = 3                             # examples drawn (seeded) from fewshot_data or the task
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub data: PathBuf,
    pub format: Option<TaskKind>,
    /// Template of the context (`{field}`, dotted names reach into nested fields); default the
    /// `context` field.
    pub context: Option<String>,
    /// Template of a loglikelihood continuation; default the `continuation` field.
    pub continuation: Option<String>,
    /// Template of a perplexity text; default the `text` field.
    pub text: Option<String>,
    #[serde(default = "default_choices")]
    pub choices: ChoicesSpec,
    #[serde(default = "default_gold")]
    pub gold: String,
    /// Put between the context and a choice or continuation (lm-eval's `target_delimiter`).
    #[serde(default = "default_target_delimiter")]
    pub target_delimiter: String,
    /// Few-shot examples before each item's context.
    #[serde(default)]
    pub fewshot: usize,
    /// Between the examples, and between the last one and the item (lm-eval's
    /// `fewshot_delimiter`).
    #[serde(default = "default_fewshot_separator")]
    pub fewshot_separator: String,
    /// Where examples come from (default: the task's own items, never the item itself).
    pub fewshot_data: Option<PathBuf>,
    /// Text before everything (lm-eval's `description`).
    #[serde(default)]
    pub description: String,
    /// Seed of the few-shot draws.
    #[serde(default)]
    pub seed: u64,
}

fn default_choices() -> ChoicesSpec {
    ChoicesSpec::Field("choices".into())
}
fn default_gold() -> String {
    "gold".into()
}
fn default_target_delimiter() -> String {
    " ".into()
}
fn default_fewshot_separator() -> String {
    "\n\n".into()
}

impl TaskSpec {
    /// The defaults for a bare data file.
    pub fn for_data(data: &Path) -> Self {
        Self {
            data: data.to_path_buf(),
            format: None,
            context: None,
            continuation: None,
            text: None,
            choices: default_choices(),
            gold: default_gold(),
            target_delimiter: default_target_delimiter(),
            fewshot: 0,
            fewshot_separator: default_fewshot_separator(),
            fewshot_data: None,
            description: String::new(),
            seed: 0,
        }
    }
}

/// What an item is scored on.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Choices { choices: Vec<String>, gold: usize },
    Continuation(String),
    Text(String),
}

impl Target {
    fn kind(&self) -> TaskKind {
        match self {
            Target::Choices { .. } => TaskKind::MultipleChoice,
            Target::Continuation(_) => TaskKind::Loglikelihood,
            Target::Text(_) => TaskKind::Perplexity,
        }
    }

    /// The answer a few-shot example shows.
    fn answer(&self) -> &str {
        match self {
            Target::Choices { choices, gold } => &choices[*gold],
            Target::Continuation(c) => c,
            Target::Text(t) => t,
        }
    }
}

/// One item of a task, before few-shot examples are put in front of its context.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// Row in the data file (0-based; the line for jsonl).
    pub row: u64,
    pub context: String,
    pub target: Target,
}

/// A loaded task: its items with their prompts (few-shot examples included).
#[derive(Debug)]
pub struct Task {
    /// The file's stem.
    pub name: String,
    pub kind: TaskKind,
    pub spec: TaskSpec,
    pub items: Vec<Item>,
    /// Each item's full context: description, few-shot examples, the item's own context.
    pub prompts: Vec<String>,
}

impl Task {
    /// Load a `.toml` task or a bare `.jsonl` / `.parquet` one; `limit` keeps the first items.
    pub fn load(path: &Path, limit: Option<usize>) -> Result<Self> {
        let name = task_name(path);
        let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let spec = if is_toml {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let mut spec: TaskSpec = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
            let base = path.parent().unwrap_or(Path::new("."));
            spec.data = base.join(&spec.data);
            spec.fewshot_data = spec.fewshot_data.map(|f| base.join(f));
            spec
        } else {
            TaskSpec::for_data(path)
        };
        Self::from_spec(name, spec, limit).with_context(|| format!("task {}", path.display()))
    }

    pub fn from_spec(name: String, spec: TaskSpec, limit: Option<usize>) -> Result<Self> {
        let mut items = read_items(&spec.data, &spec)?;
        ensure!(!items.is_empty(), "{}: no items", spec.data.display());
        let kind = items[0].target.kind();
        if let Some(bad) = items.iter().find(|i| i.target.kind() != kind) {
            bail!(
                "{}: row {} is a {:?} item, row {} a {kind:?} one: a task holds one kind (set `format`)",
                spec.data.display(),
                bad.row,
                bad.target.kind(),
                items[0].row
            );
        }
        let pool = match &spec.fewshot_data {
            Some(path) => read_items(path, &spec)?,
            None => items.clone(),
        };
        let own_pool = spec.fewshot_data.is_none();
        if let Some(limit) = limit {
            items.truncate(limit);
        }
        let prompts = prompts::assemble(&spec, kind, &items, &pool, own_pool)?;
        Ok(Self { name, kind, spec, items, prompts })
    }
}

/// A task's name in reports: its file's stem (`math_mc.jsonl` → `math_mc`).
pub fn task_name(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = [".jsonl.gz", ".jsonl.zst", ".jsonl", ".json", ".ndjson", ".parquet", ".toml"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(&file);
    stem.to_string()
}

fn read_items(path: &Path, spec: &TaskSpec) -> Result<Vec<Item>> {
    let records = pipeline::read::read_records(path)?;
    let templates = Templates::parse(spec)?;
    records
        .into_iter()
        .map(|(row, record)| {
            let record = Json::Object(record);
            item(&record, row, spec, &templates).with_context(|| pipeline::read::row_name(path, row))
        })
        .collect()
}

struct Templates {
    context: Option<FieldTemplate>,
    continuation: Option<FieldTemplate>,
    text: Option<FieldTemplate>,
    choices: Option<Vec<FieldTemplate>>,
}

impl Templates {
    fn parse(spec: &TaskSpec) -> Result<Self> {
        let one = |name: &str, t: &Option<String>| -> Result<_> {
            t.as_deref()
                .map(|t| FieldTemplate::parse(t).map_err(|e| anyhow::anyhow!("`{name}` template: {e}")))
                .transpose()
        };
        let choices = match &spec.choices {
            ChoicesSpec::Field(_) => None,
            ChoicesSpec::Templates(ts) => {
                ensure!(ts.len() >= 2, "`choices` lists {} template(s): a multiple-choice item needs two", ts.len());
                let parse =
                    |t: &String| FieldTemplate::parse(t).map_err(|e| anyhow::anyhow!("`choices` template {t:?}: {e}"));
                Some(ts.iter().map(parse).collect::<Result<Vec<_>>>()?)
            }
        };
        Ok(Self {
            context: one("context", &spec.context)?,
            continuation: one("continuation", &spec.continuation)?,
            text: one("text", &spec.text)?,
            choices,
        })
    }
}

/// A field as text (`None` when absent), or a template rendered over the row.
fn text_of(record: &Json, template: &Option<FieldTemplate>, field: &str) -> Result<Option<String>> {
    if let Some(t) = template {
        return Ok(Some(t.render(record)?));
    }
    match record.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("field {field:?} is {}, not a string", json_kind(other)),
    }
}

fn item(record: &Json, row: u64, spec: &TaskSpec, templates: &Templates) -> Result<Item> {
    let kind = match spec.format {
        Some(kind) => kind,
        None => infer_kind(record, spec, templates)?,
    };
    let context = text_of(record, &templates.context, "context")?;
    let target = match kind {
        TaskKind::MultipleChoice => {
            let choices = match (&templates.choices, &spec.choices) {
                (Some(ts), _) => ts.iter().map(|t| t.render(record)).collect::<Result<Vec<_>, _>>()?,
                (None, ChoicesSpec::Field(field)) => match lookup(record, field) {
                    Some(Json::Array(list)) => list
                        .iter()
                        .enumerate()
                        .map(|(i, c)| match c {
                            Json::String(s) => Ok(s.clone()),
                            other => bail!("choice {i} of {field:?} is {}, not a string", json_kind(other)),
                        })
                        .collect::<Result<Vec<_>>>()?,
                    Some(other) => bail!("field {field:?} is {}, not a list of choices", json_kind(other)),
                    None => bail!("no field {field:?} (the choices)"),
                },
                (None, ChoicesSpec::Templates(_)) => unreachable!("parsed with the spec"),
            };
            ensure!(choices.len() >= 2, "{} choice(s): a multiple-choice item needs two", choices.len());
            let gold = gold_index(lookup(record, &spec.gold), &choices)
                .with_context(|| format!("field {:?} (the gold answer)", spec.gold))?;
            Target::Choices { choices, gold }
        }
        TaskKind::Loglikelihood => match text_of(record, &templates.continuation, "continuation")? {
            Some(c) if !c.is_empty() => Target::Continuation(c),
            _ => bail!("no continuation (a loglikelihood item scores a `continuation` after its `context`)"),
        },
        TaskKind::Perplexity => {
            ensure!(context.is_none() || spec.context.is_none(), "a perplexity item has a text, not a context");
            match text_of(record, &templates.text, "text")? {
                Some(t) if !t.is_empty() => Target::Text(t),
                _ => bail!("no text (a perplexity item scores its `text`)"),
            }
        }
    };
    let context = if kind == TaskKind::Perplexity { String::new() } else { context.unwrap_or_default() };
    Ok(Item { row, context, target })
}

/// lm-eval's item shapes: `choices` + `gold` is multiple choice, `continuation` loglikelihood,
/// `text` perplexity.
fn infer_kind(record: &Json, spec: &TaskSpec, templates: &Templates) -> Result<TaskKind> {
    let has = |f: &str| lookup(record, f).is_some_and(|v| !v.is_null());
    let choices = templates.choices.is_some() || matches!(&spec.choices, ChoicesSpec::Field(f) if has(f));
    if choices && has(&spec.gold) {
        Ok(TaskKind::MultipleChoice)
    } else if templates.continuation.is_some() || has("continuation") {
        Ok(TaskKind::Loglikelihood)
    } else if templates.text.is_some() || has("text") {
        Ok(TaskKind::Perplexity)
    } else {
        let fields: Vec<&str> = record.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        bail!(
            "cannot tell the item's kind from its fields {fields:?}: multiple choice has `choices` and `gold`, \
             loglikelihood `context` and `continuation`, perplexity `text` (or set `format` in a task .toml)"
        )
    }
}

/// The gold choice: an index, a choice's exact text, or its letter (A = 0).
fn gold_index(gold: Option<&Json>, choices: &[String]) -> Result<usize> {
    let n = choices.len();
    let index = match gold {
        Some(Json::Number(v)) => match v.as_u64() {
            Some(i) => i as usize,
            None => bail!("{v} is not a choice index"),
        },
        Some(Json::String(s)) => match choices.iter().position(|c| c == s) {
            Some(i) => i,
            None => match s.trim().as_bytes() {
                [letter @ b'A'..=b'Z'] => (letter - b'A') as usize,
                _ => bail!("{s:?} is neither one of the {n} choices nor a letter A…"),
            },
        },
        Some(other) => bail!("it is {}, not an index, a choice or a letter", json_kind(other)),
        None => bail!("missing"),
    };
    ensure!(index < n, "gold {index} is not below the {n} choices");
    Ok(index)
}
