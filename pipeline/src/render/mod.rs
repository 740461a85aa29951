//! Documents made from columns: chat `messages` lists rendered with a chat template, and flat
//! fields (`question`/`answer`, …) put into a text template, at read time, so that every later
//! step (filters, dedup, tokenization) sees the text the model will see.
//!
//! A domain renders when its config has `messages_column` (with `chat_template`) or `template`:
//!
//! ```toml
//! [[domain]]
//! name = "chat"
//! inputs = ["dumps/smoltalk/*.parquet"]
//! messages_column = "messages"       # a list of {role, content}
//! chat_template = "models/smollm2"   # a .jinja file, a tokenizer_config.json, a checkpoint
//!                                    # folder, or the built-in "chatml" / "plain"
//! loss_mask = "assistant"            # loss on assistant turns only (a .loss file per shard)
//!
//! [[domain]]
//! name = "qa"
//! inputs = ["dumps/qa.jsonl"]
//! template = "Question: {question}\nAnswer: {answer.text}"   # dotted names reach into fields
//! ```

mod chat;
mod fields;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use chat::{ChatTemplate, TemplateSource};
pub use fields::FieldTemplate;

/// Which tokens a rendered document trains on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossMask {
    /// Every token (no mask file).
    #[default]
    All,
    /// Only the tokens of assistant turns (what the model generates after the generation
    /// prompt, end-of-turn included).
    Assistant,
}

/// How one domain turns a row into text.
#[derive(Debug)]
pub enum Renderer {
    Chat { column: String, template: Box<ChatTemplate>, loss_mask: LossMask },
    Fields(FieldTemplate),
}

/// A rendered document: its text and, with `loss_mask = "assistant"`, the byte ranges of the
/// assistant turns in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub loss_spans: Vec<Range<u32>>,
}

/// Why a row cannot be rendered; the reader makes it a removal (`on_error = "skip"`) or an error.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderProblem {
    /// The reason names the field, so a removal list says which one.
    #[error("template_missing_field: no field {0:?}")]
    MissingField(String),
    #[error("template_null_field: field {0:?} is null")]
    NullField(String),
    #[error("messages_not_a_list: field {field:?} is {found}, not a list of messages")]
    NotMessages { field: String, found: &'static str },
    #[error("template_error: {0}")]
    Template(String),
    #[error(
        "assistant_turn_not_found: the template does not render the conversation turn by turn (turn {turn} is not \
         a continuation of the turns before it), so its assistant tokens cannot be located; use loss_mask = \"all\" \
         or a template with {{% generation %}} blocks"
    )]
    TurnNotLocated { turn: usize },
}

/// A domain's render settings that do not hold together.
#[derive(Debug, thiserror::Error)]
pub enum RenderConfigError {
    #[error("set either messages_column (chat) or template (flat fields), not both")]
    Both,
    #[error("chat_template needs messages_column (the column holding the message lists)")]
    TemplateWithoutMessages,
    #[error(
        "messages_column needs chat_template: a .jinja file, a tokenizer_config.json, a checkpoint folder, or \"chatml\" / \"plain\""
    )]
    MessagesWithoutTemplate,
    #[error("loss_mask = \"assistant\" needs messages_column: only chat turns say which tokens are the assistant's")]
    MaskWithoutMessages,
    #[error("template_date {0:?} is not a YYYY-MM-DD date")]
    Date(String),
    #[error(transparent)]
    Chat(#[from] chat::ChatTemplateError),
    #[error("template: {0}")]
    Fields(String),
}

/// The render keys of a `[[domain]]` table (and of `midtrain tokenize`'s options).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RenderConfig {
    pub messages_column: Option<String>,
    pub chat_template: Option<TemplateSource>,
    pub template: Option<String>,
    pub loss_mask: LossMask,
    /// The date `strftime_now` gives templates that print today's date (a fixed one keeps
    /// prepare deterministic).
    pub template_date: Option<String>,
}

impl RenderConfig {
    pub fn is_set(&self) -> bool {
        self.messages_column.is_some() || self.template.is_some() || self.chat_template.is_some()
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(TemplateSource::Path(p)) = &mut self.chat_template {
            *p = util::fsutil::resolve_against(base, p);
        }
    }

    /// The renderer, or `None` when the domain reads a text column.
    pub fn build(&self) -> Result<Option<Renderer>, RenderConfigError> {
        let date = self.template_date.as_deref().map(parse_date).transpose()?;
        match (&self.messages_column, &self.template, &self.chat_template) {
            (Some(_), Some(_), _) => Err(RenderConfigError::Both),
            (None, _, Some(_)) => Err(RenderConfigError::TemplateWithoutMessages),
            (Some(_), None, None) => Err(RenderConfigError::MessagesWithoutTemplate),
            (None, _, None) if self.loss_mask == LossMask::Assistant => Err(RenderConfigError::MaskWithoutMessages),
            (Some(column), None, Some(source)) => Ok(Some(Renderer::Chat {
                column: column.clone(),
                template: Box::new(ChatTemplate::load(source, date)?),
                loss_mask: self.loss_mask,
            })),
            (None, Some(t), None) => {
                Ok(Some(Renderer::Fields(FieldTemplate::parse(t).map_err(RenderConfigError::Fields)?)))
            }
            (None, None, None) => Ok(None),
        }
    }

    /// What identifies the rendering in a run's identity: the settings and the template text.
    pub fn identity(&self) -> Result<serde_json::Value, RenderConfigError> {
        let template = match &self.chat_template {
            Some(source) => Some(chat::load_source(source)?.0),
            None => None,
        };
        Ok(serde_json::json!({ "settings": self, "chat_template_text": template }))
    }
}

/// `YYYY-MM-DD` as (year, month, day).
fn parse_date(s: &str) -> Result<(i32, u32, u32), RenderConfigError> {
    let bad = || RenderConfigError::Date(s.to_string());
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts[..] else { return Err(bad()) };
    let (y, m, d): (i32, u32, u32) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(bad());
    }
    Ok((y, m, d))
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Renderer {
    /// The top-level columns a row must provide (parquet projects these).
    pub fn columns(&self) -> Vec<String> {
        match self {
            Self::Chat { column, .. } => vec![root(column).to_string()],
            Self::Fields(t) => {
                let mut v: Vec<String> = t.fields().map(|f| root(f).to_string()).collect();
                v.sort();
                v.dedup();
                v
            }
        }
    }

    /// Render one row (a JSON object of its columns).
    pub fn render(&self, row: &Json) -> Result<Rendered, RenderProblem> {
        match self {
            Self::Chat { column, template, loss_mask } => {
                let messages = match lookup(row, column) {
                    None => return Err(RenderProblem::MissingField(column.clone())),
                    Some(Json::Null) => return Err(RenderProblem::NullField(column.clone())),
                    Some(Json::Array(m)) => m,
                    Some(other) => {
                        return Err(RenderProblem::NotMessages { field: column.clone(), found: json_kind(other) });
                    }
                };
                template.render(messages, *loss_mask == LossMask::Assistant)
            }
            Self::Fields(t) => Ok(Rendered { text: t.render(row)?, loss_spans: Vec::new() }),
        }
    }

    pub fn loss_mask(&self) -> LossMask {
        match self {
            Self::Chat { loss_mask, .. } => *loss_mask,
            Self::Fields(_) => LossMask::All,
        }
    }
}

fn root(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// `a.b.c` in a JSON object (a list is indexed by a number: `choices.0`).
pub fn lookup<'a>(row: &'a Json, name: &str) -> Option<&'a Json> {
    name.split('.').try_fold(row, |v, key| match v {
        Json::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(key),
    })
}

/// What a JSON value is, for messages ("a list", "null").
pub fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// Where a chat template comes from, for messages.
pub fn describe_source(source: &TemplateSource) -> String {
    match source {
        TemplateSource::Builtin(b) => format!("built-in {}", b.name()),
        TemplateSource::Path(p) => p.display().to_string(),
    }
}

/// The folder whose `tokenizer_config.json` supplies a template's special tokens.
fn config_folder(path: &Path) -> PathBuf {
    if path.is_dir() { path.to_path_buf() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() }
}

#[cfg(test)]
mod tests;
