//! Chat templates as transformers renders them (`apply_chat_template(tokenize=False)`): Jinja
//! with `trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`,
//! Python's `tojson` and string/dict methods, the tokenizer's special tokens as variables, and
//! `add_generation_prompt` off.
//!
//! Assistant spans (for loss masks) come from `{% generation %}` blocks where the template has
//! them (what transformers' `return_assistant_tokens_mask` reads), else from rendering the
//! conversation turn by turn: an assistant turn is what the rendering of the turns up to it adds
//! to the rendering of the turns before it with the generation prompt — exactly the tokens the
//! model produces when it answers.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{RenderProblem, Rendered};

/// A template built into midtrain, for datasets whose model has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `<|im_start|>role\ncontent<|im_end|>\n` per message.
    ChatMl,
    /// `User: …\nAssistant: …` (a system message as a first paragraph), for pre-training-style
    /// mixes.
    Plain,
}

impl Builtin {
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatMl => "chatml",
            Self::Plain => "plain",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Self::ChatMl => {
                "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + \
                 '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' \
                 }}{% endif %}"
            }
            Self::Plain => {
                "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' \
                 }}{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\\n' }}{% elif \
                 message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + '\\n' }}{% else %}{{ \
                 raise_exception('the plain template knows the roles system, user and assistant, not ' + \
                 message['role']) }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% \
                 endif %}"
            }
        }
    }
}

/// `chat_template = "chatml" | "plain" | PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    Builtin(Builtin),
    /// A `.jinja` file, a `tokenizer_config.json` / `chat_template.json`, or a model folder.
    Path(PathBuf),
}

impl TemplateSource {
    pub fn parse(s: &str) -> Self {
        match s {
            "chatml" => Self::Builtin(Builtin::ChatMl),
            "plain" => Self::Builtin(Builtin::Plain),
            path => Self::Path(PathBuf::from(path)),
        }
    }
}

impl Serialize for TemplateSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Builtin(b) => s.serialize_str(b.name()),
            Self::Path(p) => s.serialize_str(&p.to_string_lossy()),
        }
    }
}

impl<'de> Deserialize<'de> for TemplateSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("chat_template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("chat_template {path}: not JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("chat_template {path}: {what}")]
    NoTemplate { path: PathBuf, what: String },
    #[error("chat_template {source_name}: the template does not parse: {message}")]
    Syntax { source_name: String, message: String },
}

/// Markers around `{% generation %}` output; stripped from the text.
const GENERATION_START: char = '\u{E000}';
const GENERATION_END: char = '\u{E001}';
const TEMPLATE_NAME: &str = "chat_template";

/// A compiled chat template with the variables transformers gives it.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, … from the tokenizer config beside the template.
    special_tokens: BTreeMap<String, String>,
    has_generation_blocks: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("special_tokens", &self.special_tokens).finish_non_exhaustive()
    }
}

/// The template text and the folder whose `tokenizer_config.json` gives its special tokens.
pub(super) fn load_source(source: &TemplateSource) -> Result<(String, Option<PathBuf>), ChatTemplateError> {
    let path = match source {
        TemplateSource::Builtin(b) => return Ok((b.source().to_string(), None)),
        TemplateSource::Path(p) => p,
    };
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|source| ChatTemplateError::Read { path: p.into(), source });
    let folder = Some(super::config_folder(path));
    if path.is_dir() {
        for name in ["chat_template.jinja", "chat_template.json", "tokenizer_config.json"] {
            let file = path.join(name);
            if file.is_file() {
                return Ok((template_in_file(&file, &read(&file)?)?, folder));
            }
        }
        return Err(ChatTemplateError::NoTemplate {
            path: path.clone(),
            what: "no chat_template.jinja, chat_template.json or tokenizer_config.json in this folder".into(),
        });
    }
    Ok((template_in_file(path, &read(path)?)?, folder))
}

/// A `.json` file holds the template in `chat_template` (a string, or a list of named templates
/// of which transformers uses "default"); any other file is the template.
fn template_in_file(path: &Path, text: &str) -> Result<String, ChatTemplateError> {
    if path.extension().is_none_or(|e| e != "json") {
        return Ok(text.to_string());
    }
    let json: Json =
        serde_json::from_str(text).map_err(|source| ChatTemplateError::Json { path: path.into(), source })?;
    let missing = |what: &str| ChatTemplateError::NoTemplate { path: path.into(), what: what.to_string() };
    match json.get("chat_template") {
        Some(Json::String(t)) => Ok(t.clone()),
        Some(Json::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string))
            .ok_or_else(|| missing("chat_template lists named templates but none named \"default\"")),
        _ => Err(missing("no chat_template key (the model has no chat template: use \"chatml\" or \"plain\")")),
    }
}

/// `bos_token`, `eos_token`, … of `folder/tokenizer_config.json` (strings or `{"content": …}`).
fn special_tokens(folder: Option<&Path>) -> Result<BTreeMap<String, String>, ChatTemplateError> {
    let mut tokens = BTreeMap::new();
    let Some(path) = folder.map(|f| f.join("tokenizer_config.json")).filter(|p| p.is_file()) else {
        return Ok(tokens);
    };
    let text =
        std::fs::read_to_string(&path).map_err(|source| ChatTemplateError::Read { path: path.clone(), source })?;
    let json: Json = serde_json::from_str(&text).map_err(|source| ChatTemplateError::Json { path, source })?;
    for (key, value) in json.as_object().into_iter().flatten() {
        if !key.ends_with("_token") {
            continue;
        }
        let content = match value {
            Json::String(s) => Some(s.clone()),
            Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
            _ => None,
        };
        if let Some(c) = content {
            tokens.insert(key.clone(), c);
        }
    }
    Ok(tokens)
}

/// `{% generation %}…{% endgeneration %}` (a transformers extension) as a call block of a macro
/// that brackets its output with markers. Both are block tags, so whitespace control is alike.
fn rewrite_generation_blocks(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut found = false;
    while let Some(open) = rest.find("{%") {
        let Some(len) = rest[open..].find("%}") else { break };
        let tag = &rest[open + 2..open + len];
        let inner = tag.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        let replacement = match inner {
            "generation" => Some("call __midtrain_generation()"),
            "endgeneration" => Some("endcall"),
            _ => None,
        };
        out.push_str(&rest[..open + 2]);
        match replacement {
            Some(r) => {
                found = true;
                let lead: String = tag.chars().take_while(|c| *c == '-' || *c == '+').collect();
                let trail: String = tag.chars().rev().take_while(|c| *c == '-' || *c == '+').collect();
                out.push_str(&format!("{lead} {r} {trail}"));
            }
            None => out.push_str(tag),
        }
        out.push_str("%}");
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    if found {
        let mark = |c: char| format!("\\u{:04x}", c as u32);
        let prelude = format!(
            "{{% macro __midtrain_generation() %}}{{{{ \"{}\" }}}}{{{{ caller() }}}}{{{{ \"{}\" }}}}{{% endmacro %}}",
            mark(GENERATION_START),
            mark(GENERATION_END)
        );
        out.insert_str(0, &prelude);
    }
    (out, found)
}

impl ChatTemplate {
    pub fn load(source: &TemplateSource, date: Option<(i32, u32, u32)>) -> Result<Self, ChatTemplateError> {
        let (text, folder) = load_source(source)?;
        let special_tokens = special_tokens(folder.as_deref())?;
        Self::compile(&text, special_tokens, date, &super::describe_source(source))
    }

    pub fn compile(
        text: &str,
        special_tokens: BTreeMap<String, String>,
        date: Option<(i32, u32, u32)>,
        source_name: &str,
    ) -> Result<Self, ChatTemplateError> {
        let (text, has_generation_blocks) = rewrite_generation_blocks(text);
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters build");
        env.set_syntax(syntax);
        env.set_unknown_method_callback(python_methods);
        env.add_filter("trim", |value: Value, chars: Option<String>| {
            python_strip(&python_str(&value), chars.as_deref(), true, true)
        });
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", move |format: String| -> Result<String, Error> {
            match date {
                Some(d) => Ok(strftime(d, &format)),
                None => Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "the template calls strftime_now: set template_date = \"YYYY-MM-DD\" (a fixed date keeps the \
                     rendered text the same on every run)",
                )),
            }
        });
        env.add_filter("tojson", tojson);
        env.set_formatter(python_formatter);
        env.add_template_owned(TEMPLATE_NAME, text)
            .map_err(|e| ChatTemplateError::Syntax { source_name: source_name.to_string(), message: detail(&e) })?;
        Ok(Self { env, special_tokens, has_generation_blocks })
    }

    fn render_text(&self, messages: &[Json], add_generation_prompt: bool) -> Result<String, RenderProblem> {
        let mut context: BTreeMap<&str, Value> =
            self.special_tokens.iter().map(|(k, v)| (k.as_str(), Value::from(v.as_str()))).collect();
        // transformers drops a message's keys whose value is None (`"tool_calls": null` on a plain
        // turn), so `'tool_calls' in message` is false there too.
        let messages: Vec<Json> = messages
            .iter()
            .map(|m| match m {
                Json::Object(fields) => Json::Object(
                    fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
                ),
                other => other.clone(),
            })
            .collect();
        context.insert("messages", Value::from(minijinja::value::Serde(&messages)));
        context.insert("add_generation_prompt", Value::from(add_generation_prompt));
        context.insert("tools", Value::from(()));
        context.insert("documents", Value::from(()));
        let template = self.env.get_template(TEMPLATE_NAME).expect("added at compile");
        template.render(context).map_err(|e| RenderProblem::Template(detail(&e)))
    }

    /// The conversation's text and, with `spans`, the byte ranges of its assistant turns.
    pub fn render(&self, messages: &[Json], spans: bool) -> Result<Rendered, RenderProblem> {
        if self.has_generation_blocks {
            let raw = self.render_text(messages, false)?;
            return Ok(strip_generation_markers(&raw, spans));
        }
        let text = self.render_text(messages, false)?;
        let mut loss_spans = Vec::new();
        if spans {
            for (turn, m) in messages.iter().enumerate() {
                if m.get("role").and_then(Json::as_str) != Some("assistant") {
                    continue;
                }
                let prompt = self.render_text(&messages[..turn], true)?;
                let through = self.render_text(&messages[..=turn], false)?;
                if !through.starts_with(&prompt) || !text.starts_with(&through) || through.len() == prompt.len() {
                    return Err(RenderProblem::TurnNotLocated { turn });
                }
                push_span(&mut loss_spans, prompt.len()..through.len());
            }
        }
        Ok(Rendered { text, loss_spans })
    }
}

fn push_span(spans: &mut Vec<Range<u32>>, span: Range<usize>) {
    let span = span.start as u32..span.end as u32;
    match spans.last_mut() {
        Some(last) if last.end == span.start => last.end = span.end,
        _ if span.is_empty() => {}
        _ => spans.push(span),
    }
}

/// The text without the generation markers, and the byte ranges they enclosed.
fn strip_generation_markers(raw: &str, spans: bool) -> Rendered {
    let mut text = String::with_capacity(raw.len());
    let mut loss_spans = Vec::new();
    let mut start = None;
    for c in raw.chars() {
        match c {
            GENERATION_START => start = Some(text.len()),
            GENERATION_END => {
                if let Some(s) = start.take() {
                    push_span(&mut loss_spans, s..text.len());
                }
            }
            c => text.push(c),
        }
    }
    if !spans {
        loss_spans.clear();
    }
    Rendered { text, loss_spans }
}

/// minijinja's error with its cause chain and the template line.
fn detail(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

/// transformers' `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, whose separators are `", "` and `": "` (`","` with an indent).
/// Python's `str.isspace`: Unicode white space and the separators U+001C–U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `strip` / `lstrip` / `rstrip` (and Jinja's `trim`): white space as Python sees it, or
/// the given characters.
fn python_strip(text: &str, chars: Option<&str>, left: bool, right: bool) -> String {
    let strip = |c: char| match chars {
        Some(set) => set.contains(c),
        None => python_space(c),
    };
    let mut out = text;
    if left {
        out = out.trim_start_matches(strip);
    }
    if right {
        out = out.trim_end_matches(strip);
    }
    out.to_string()
}

/// pycompat's Python methods, with `strip`s that agree with Python on what white space is.
fn python_methods(state: &mut minijinja::State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(text), "strip" | "lstrip" | "rstrip") = (value.as_str(), method) {
        let chars = match args {
            [] => None,
            [chars] if chars.is_none() => None,
            [chars] => {
                Some(chars.as_str().ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "strip takes a string"))?)
            }
            _ => return Err(Error::new(ErrorKind::TooManyArguments, "strip takes at most one argument")),
        };
        let (left, right) = (method != "rstrip", method != "lstrip");
        return Ok(Value::from(python_strip(text, chars, left, right)));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Prints values as Python's `str()` does: floats (`1e+20`, `1e-07`) and containers (`{'x': [1.5,
/// True, None]}`); minijinja's own Display prints Rust's `1e20` and `100000000000000000000.0`.
fn python_formatter(out: &mut minijinja::Output, state: &mut minijinja::State, value: &Value) -> Result<(), Error> {
    match python_only_str(value) {
        Some(text) => out.write_str(&text).map_err(Error::from),
        None => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str()` where it differs from minijinja's Display (floats and containers).
fn python_only_str(value: &Value) -> Option<String> {
    match value.kind() {
        ValueKind::Number if !value.is_integer() => f64::try_from(value.clone()).ok().map(python_float),
        ValueKind::Map | ValueKind::Seq => Some(python_repr(value)),
        _ => None,
    }
}

/// Python's `str()` of a value, as filters that take text (`trim`) see it.
fn python_str(value: &Value) -> String {
    python_only_str(value).unwrap_or_else(|| value.to_string())
}

/// Python's `repr` of a template value (items of a printed container).
fn python_repr(value: &Value) -> String {
    let items = |v: &Value| -> Vec<Value> { v.try_iter().map(|it| it.collect()).unwrap_or_default() };
    match value.kind() {
        ValueKind::Map => {
            let entries: Vec<String> = items(value)
                .into_iter()
                .map(|key| {
                    let item = value.get_item(&key).unwrap_or_default();
                    format!("{}: {}", python_repr(&key), python_repr(&item))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        ValueKind::Seq => {
            let entries: Vec<String> = items(value).iter().map(python_repr).collect();
            format!("[{}]", entries.join(", "))
        }
        ValueKind::Number if !value.is_integer() => {
            f64::try_from(value.clone()).map(python_float).unwrap_or_else(|_| format!("{value:?}"))
        }
        // minijinja's Debug already prints strings, booleans and None as Python's repr does.
        _ => format!("{value:?}"),
    }
}

/// Python's `repr(float)`: the shortest round-trip digits (as Rust's), in exponent form below 1e-4
/// and from 1e16 on (the same bounds as Rust's Debug), with a signed exponent of at least two
/// digits (`1e+20`, `2.5e-07`).
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf".into() } else { "inf".into() };
    }
    let debug = format!("{x:?}");
    let Some((mantissa, exponent)) = debug.split_once('e') else { return debug };
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => return Err(Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style =
        PyJson { indent, item, key, sort_keys: sort_keys.unwrap_or(false), ascii: ensure_ascii.unwrap_or(false) };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(Value::from(out))
}

struct PyJson {
    indent: Option<usize>,
    item: String,
    key: String,
    sort_keys: bool,
    ascii: bool,
}

impl PyJson {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    }

    fn write(&self, v: &Json, depth: usize, out: &mut String) {
        match v {
            Json::Array(items) if !items.is_empty() => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            Json::Object(map) if !map.is_empty() => {
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(depth + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
            Json::String(s) => self.string(s, out),
            Json::Number(n) if n.is_f64() => out.push_str(&python_float(n.as_f64().expect("an f64 number"))),
            other => out.push_str(&other.to_string()),
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        let escaped = serde_json::to_string(s).expect("strings serialize");
        if !self.ascii {
            out.push_str(&escaped);
            return;
        }
        for c in escaped.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
}

/// Python's `strftime` of a fixed date at midnight, for the directives templates use.
fn strftime((y, m, d): (i32, u32, u32), format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    // Sakamoto's weekday (0 = Sunday).
    let t = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let yy = if m < 3 { y - 1 } else { y };
    let weekday = ((yy + yy / 4 - yy / 100 + yy / 400 + t[m as usize - 1] + d as i32) % 7) as usize;
    let day_of_year: u32 = (1..m).map(|mm| super::days_in_month(y, mm)).sum::<u32>() + d;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('B') => out.push_str(MONTHS[m as usize - 1]),
            Some('b') => out.push_str(&MONTHS[m as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('H' | 'M' | 'S') => out.push_str("00"),
            Some('I') => out.push_str("12"),
            Some('p') => out.push_str("AM"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
pub(super) fn strftime_for_test(date: (i32, u32, u32), format: &str) -> String {
    strftime(date, format)
}
