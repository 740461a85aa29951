//! Row predicates over metadata columns, applied while reading (`where = "..."` in a config).
//!
//! Syntax (case-insensitive keywords):
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | compare
//! compare := column op literal | column ["not"] "in" "[" literal ("," literal)* "]"
//! op      := "=" | "==" | "!=" | "<" | "<=" | ">" | ">="
//! literal := number | 'string' | "string" | true | false | null
//! column  := name, with dots for nested fields (jsonl: metadata.int_score)
//! ```
//!
//! Examples: `language_score > 0.9 and int_score >= 3`, `lang in ["Python", "Rust"]`,
//! `not (dump = "CC-MAIN-2013-20") or url = null`.
//! A missing column or a null value makes a comparison false (except `= null` / `!= null`);
//! numbers compare as numbers, strings as strings, and a number never equals a string.

use std::cmp::Ordering;
use std::fmt;

/// A value from a row, or a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
    Compare { column: String, op: Op, value: Value },
    In { column: String, values: Vec<Value>, negated: bool },
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid where expression at character {position}: {message}\n  {expression}")]
pub struct PredicateError {
    pub expression: String,
    pub position: usize,
    pub message: String,
}

impl Predicate {
    pub fn parse(expression: &str) -> Result<Self, PredicateError> {
        let tokens = lex(expression)?;
        let mut parser = Parser { tokens, pos: 0, expression };
        let predicate = parser.or()?;
        if let Some(t) = parser.tokens.get(parser.pos) {
            return Err(parser.error(t.1, format!("unexpected {} after a complete expression", t.0)));
        }
        Ok(predicate)
    }

    /// Every column the predicate reads (to project them when reading).
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Predicate::And(a, b) | Predicate::Or(a, b) => {
                a.collect_columns(out);
                b.collect_columns(out);
            }
            Predicate::Not(a) => a.collect_columns(out),
            Predicate::Compare { column, .. } | Predicate::In { column, .. } => out.push(column),
        }
    }

    /// Evaluate against a row; `lookup` gives a column's value (`None` when the row lacks it).
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<Value>) -> bool {
        match self {
            Predicate::And(a, b) => a.eval(lookup) && b.eval(lookup),
            Predicate::Or(a, b) => a.eval(lookup) || b.eval(lookup),
            Predicate::Not(a) => !a.eval(lookup),
            Predicate::Compare { column, op, value } => {
                let actual = lookup(column).unwrap_or(Value::Null);
                compare(&actual, *op, value)
            }
            Predicate::In { column, values, negated } => {
                let actual = lookup(column).unwrap_or(Value::Null);
                if actual == Value::Null {
                    return false;
                }
                values.iter().any(|v| compare(&actual, Op::Eq, v)) != *negated
            }
        }
    }
}

fn compare(actual: &Value, op: Op, expected: &Value) -> bool {
    let ordering = match (actual, expected) {
        (Value::Null, Value::Null) => return op == Op::Eq,
        (Value::Null, _) | (_, Value::Null) => return op == Op::Ne && expected == &Value::Null,
        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
        (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match ordering {
        None => op == Op::Ne,
        Some(o) => match op {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        },
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Value),
    Op(Op),
    And,
    Or,
    Not,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "column {s:?}"),
            Tok::Lit(v) => write!(f, "literal {v}"),
            Tok::Op(o) => write!(f, "operator {o:?}"),
            Tok::And => write!(f, "'and'"),
            Tok::Or => write!(f, "'or'"),
            Tok::Not => write!(f, "'not'"),
            Tok::In => write!(f, "'in'"),
            Tok::LParen => write!(f, "'('"),
            Tok::RParen => write!(f, "')'"),
            Tok::LBracket => write!(f, "'['"),
            Tok::RBracket => write!(f, "']'"),
            Tok::Comma => write!(f, "','"),
        }
    }
}

fn lex(expression: &str) -> Result<Vec<(Tok, usize)>, PredicateError> {
    let err = |position, message: &str| PredicateError {
        expression: expression.to_string(),
        position,
        message: message.to_string(),
    };
    let chars: Vec<(usize, char)> = expression.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            ',' => Some(Tok::Comma),
            _ => None,
        };
        if c.is_whitespace() {
            i += 1;
        } else if let Some(t) = single {
            out.push((t, pos));
            i += 1;
        } else if matches!(c, '=' | '!' | '<' | '>') {
            let (op, len) = match (c, next) {
                ('=', Some('=')) => (Op::Eq, 2),
                ('=', _) => (Op::Eq, 1),
                ('!', Some('=')) => (Op::Ne, 2),
                ('<', Some('=')) => (Op::Le, 2),
                ('<', _) => (Op::Lt, 1),
                ('>', Some('=')) => (Op::Ge, 2),
                ('>', _) => (Op::Gt, 1),
                _ => return Err(err(pos, "'!' must be followed by '='")),
            };
            out.push((Tok::Op(op), pos));
            i += len;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(pos, "unterminated string")),
                    Some(&(_, '\\')) if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1].1);
                        i += 2;
                    }
                    Some(&(_, q)) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&(_, ch)) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Lit(Value::Str(s)), pos));
        } else if c.is_ascii_digit() || (c == '-' || c == '.') && next.is_some_and(|n| n.is_ascii_digit() || n == '.') {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|&(_, ch)| ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '_'))
                || (chars.get(i).is_some_and(|&(_, ch)| ch == '-' || ch == '+') && matches!(chars[i - 1].1, 'e' | 'E'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().map(|&(_, ch)| ch).filter(|&ch| ch != '_').collect();
            let n = text.parse::<f64>().map_err(|_| err(pos, &format!("bad number {text:?}")))?;
            out.push((Tok::Lit(Value::Number(n)), pos));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars.get(i).is_some_and(|&(_, ch)| ch.is_alphanumeric() || ch == '_' || ch == '.') {
                i += 1;
            }
            let word: String = chars[start..i].iter().map(|&(_, ch)| ch).collect();
            let tok = match word.to_ascii_lowercase().as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                "in" => Tok::In,
                "true" => Tok::Lit(Value::Bool(true)),
                "false" => Tok::Lit(Value::Bool(false)),
                "null" | "none" => Tok::Lit(Value::Null),
                _ => Tok::Ident(word),
            };
            out.push((tok, pos));
        } else {
            return Err(err(pos, &format!("unexpected character {c:?}")));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<(Tok, usize)>,
    pos: usize,
    expression: &'a str,
}

impl Parser<'_> {
    fn error(&self, position: usize, message: String) -> PredicateError {
        PredicateError { expression: self.expression.to_string(), position, message }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.0)
    }

    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.expression.len(), |t| t.1)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), PredicateError> {
        if self.peek() == Some(&tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(self.here(), format!("expected {what}")))
        }
    }

    fn or(&mut self) -> Result<Predicate, PredicateError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            left = Predicate::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Predicate, PredicateError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            left = Predicate::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Predicate, PredicateError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Predicate::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(inner)
            }
            Some(Tok::Ident(_)) => self.compare(),
            _ => Err(self.error(self.here(), "expected a column name, 'not' or '('".into())),
        }
    }

    fn literal(&mut self) -> Result<Value, PredicateError> {
        match self.peek() {
            Some(Tok::Lit(v)) => {
                let v = v.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => Err(self.error(self.here(), "expected a number, string, true, false or null".into())),
        }
    }

    fn compare(&mut self) -> Result<Predicate, PredicateError> {
        let Some(Tok::Ident(column)) = self.peek().cloned() else { unreachable!("checked by unary") };
        self.pos += 1;
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                let value = self.literal()?;
                Ok(Predicate::Compare { column, op, value })
            }
            Some(Tok::In) | Some(Tok::Not) => {
                let negated = self.peek() == Some(&Tok::Not);
                if negated {
                    self.pos += 1;
                    self.expect(Tok::In, "'in' after 'not'")?;
                } else {
                    self.pos += 1;
                }
                self.expect(Tok::LBracket, "'[' to start a list")?;
                let mut values = vec![self.literal()?];
                while self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                    values.push(self.literal()?);
                }
                self.expect(Tok::RBracket, "']' or ','")?;
                Ok(Predicate::In { column, values, negated })
            }
            _ => Err(self.error(self.here(), format!("expected a comparison operator or 'in' after {column:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(pairs: &'a [(&'a str, Value)]) -> impl Fn(&str) -> Option<Value> + 'a {
        move |c| pairs.iter().find(|(k, _)| *k == c).map(|(_, v)| v.clone())
    }

    #[test]
    fn fineweb_edu_style_selection() {
        let p = Predicate::parse("language_score > 0.9 and int_score >= 3").unwrap();
        assert_eq!(p.columns(), vec!["int_score", "language_score"]);
        let keep = [("language_score", Value::Number(0.95)), ("int_score", Value::Number(3.0))];
        let low = [("language_score", Value::Number(0.95)), ("int_score", Value::Number(2.0))];
        let edge = [("language_score", Value::Number(0.9)), ("int_score", Value::Number(5.0))];
        assert!(p.eval(&row(&keep)));
        assert!(!p.eval(&row(&low)));
        assert!(!p.eval(&row(&edge)), "> is strict");
        assert!(!p.eval(&row(&[])), "missing columns are false");
    }

    #[test]
    fn in_lists_or_not_and_precedence() {
        let p = Predicate::parse("lang in ['Python', \"Rust\"] or not (size < 100) and stars != null").unwrap();
        let py = [("lang", Value::Str("Python".into()))];
        assert!(p.eval(&row(&py)));
        let big = [("lang", Value::Str("C".into())), ("size", Value::Number(500.0)), ("stars", Value::Number(1.0))];
        assert!(p.eval(&row(&big)));
        let big_no_stars = [("lang", Value::Str("C".into())), ("size", Value::Number(500.0))];
        assert!(!p.eval(&row(&big_no_stars)));
        let q = Predicate::parse("lang not in ['C']").unwrap();
        assert!(!q.eval(&row(&[("lang", Value::Str("C".into()))])));
        assert!(q.eval(&row(&py)));
        assert!(!q.eval(&row(&[])), "null is never in or not in a list");
    }

    #[test]
    fn strings_and_numbers_never_compare_equal() {
        let p = Predicate::parse("score = 3").unwrap();
        assert!(!p.eval(&row(&[("score", Value::Str("3".into()))])));
        assert!(Predicate::parse("score != 3").unwrap().eval(&row(&[("score", Value::Str("3".into()))])));
        assert!(Predicate::parse("x = null").unwrap().eval(&row(&[])));
        assert!(
            Predicate::parse("metadata.year >= 2_020 AND ok = TRUE")
                .unwrap()
                .eval(&row(&[("metadata.year", Value::Number(2021.0)), ("ok", Value::Bool(true))]))
        );
        assert!(Predicate::parse("x > -1.5e2").unwrap().eval(&row(&[("x", Value::Number(-100.0))])));
    }

    #[test]
    fn errors_point_at_the_problem() {
        for (expr, position, fragment) in [
            ("score >", 7, "expected a number"),
            ("score > 1 and", 13, "expected a column"),
            ("(a = 1", 6, "')'"),
            ("a = 'x", 4, "unterminated"),
            ("a ~ 1", 2, "unexpected character"),
            ("a = 1 b", 6, "unexpected column"),
            ("a in [1,", 8, "expected a number"),
        ] {
            let e = Predicate::parse(expr).unwrap_err();
            assert_eq!(e.position, position, "{expr}: {e}");
            assert!(e.message.contains(fragment), "{expr}: {e}");
        }
    }
}
