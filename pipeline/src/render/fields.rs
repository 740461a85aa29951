//! Flat templates: `"Question: {question}\nAnswer: {answer}"`, where `{name}` is a field of the
//! row (dotted names reach into nested objects and lists: `{meta.source}`, `{choices.0}`) and
//! `{{` / `}}` are literal braces.

use serde_json::Value as Json;

use super::{RenderProblem, lookup};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTemplate {
    pieces: Vec<Piece>,
}

impl FieldTemplate {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = template.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, c)) => name.push(c),
                            None => {
                                return Err(format!("the brace at byte {at} is not closed (a literal brace is {{{{)"));
                            }
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() || name.split('.').any(str::is_empty) {
                        return Err(format!("{{{name}}} at byte {at} is not a field name"));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(name));
                }
                '}' => return Err(format!("a lone }} at byte {at} (a literal brace is }}}})")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Field(_))) {
            return Err("it names no {field}".into());
        }
        Ok(Self { pieces })
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(f) => Some(f.as_str()),
            Piece::Literal(_) => None,
        })
    }

    pub fn render(&self, row: &Json) -> Result<String, RenderProblem> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(name) => match lookup(row, name) {
                    None => return Err(RenderProblem::MissingField(name.clone())),
                    Some(Json::Null) => return Err(RenderProblem::NullField(name.clone())),
                    Some(Json::String(s)) => out.push_str(s),
                    Some(v @ (Json::Number(_) | Json::Bool(_))) => out.push_str(&v.to_string()),
                    Some(_) => {
                        return Err(RenderProblem::Template(format!(
                            "field {name:?} is a list or an object; name one of its items ({name}.0, {name}.key)"
                        )));
                    }
                },
            }
        }
        Ok(out)
    }
}
