//! The text query language, for people and config files.
//!
//! ```text
//! type = "llm.response" and data.model = "gpt-4o" and time > now - 1h
//! type in ("llm.request", "llm.retry") and not data.attempt < 2
//! (tenant = "acme" or tenant = "globex") and data.usage.total_tokens >= 1000
//! data.tags contains "slow" and subject exists
//! text contains "rate limit exceeded"
//! ```
//!
//! - Fields: `id type source subject stream tenant correlation causation time
//!   position version schema_version`, and paths `data.a.b[0]`, `metadata.x`.
//! - Comparisons: `= != < <= > >=`, `in (v, …)`, `contains v`, `exists`.
//! - Values: `"strings"` (with `\" \\ \n \t` escapes), numbers, `true`,
//!   `false`, `null`, and times: `now`, `now - 90s`, `now + 1d`, or an
//!   RFC 3339 string compared with `time`. Units: `ms s m h d w`.
//! - Combine with `and`, `or`, `not` and parentheses (`and` binds tighter).
//! - `text contains "words"` is full-text search over the string values of `data`.
//!
//! Keywords are case-insensitive. Errors carry the byte offset and length of
//! the offending token, and [`ParseError::render`] underlines it.

use std::fmt;
use std::time::Duration;

use crate::envelope::Timestamp;
use crate::query::{CmpOp, Expr, Field, JsonPath, Literal, PathSegment};

/// Longest query text accepted.
pub const MAX_QUERY_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and `not` accepted.
pub const MAX_DEPTH: usize = 64;

/// A parse error pointing at the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at column {column}: {message}")]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Byte offset of the offending token in the query.
    pub offset: usize,
    /// Its length in bytes (0 at end of input).
    pub len: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    input: String,
}

impl ParseError {
    fn new(input: &str, offset: usize, len: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(input.len());
        let column = input.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
        Self {
            message: message.into(),
            offset,
            len,
            column,
            input: input.to_owned(),
        }
    }

    /// The query with the offending token underlined:
    ///
    /// ```
    /// let err = foundation_events::lang::parse_at_epoch("type = and").unwrap_err();
    /// assert_eq!(err.render(), "type = and\n       ^^^ expected a value, found `and`");
    /// ```
    #[must_use]
    pub fn render(&self) -> String {
        let line = self.input.replace(['\n', '\r', '\t'], " ");
        let pad = " ".repeat(self.column - 1);
        let width = self
            .input
            .get(self.offset..self.offset + self.len)
            .map_or(1, |s| s.chars().count().max(1));
        format!("{line}\n{pad}{} {}", "^".repeat(width), self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Dur(Duration),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Dot,
    LBracket,
    RBracket,
    Plus,
    Minus,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn describe(input: &str, t: &Token) -> String {
    match t.tok {
        Tok::Eof => "end of query".to_owned(),
        _ => format!("`{}`", input.get(t.start..t.end).unwrap_or("?")),
    }
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let single = |tok| Token {
            tok,
            start,
            end: start + 1,
        };
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => out.push(single(Tok::LParen)),
            b')' => out.push(single(Tok::RParen)),
            b',' => out.push(single(Tok::Comma)),
            b'.' => out.push(single(Tok::Dot)),
            b'[' => out.push(single(Tok::LBracket)),
            b']' => out.push(single(Tok::RBracket)),
            b'+' => out.push(single(Tok::Plus)),
            b'-' => out.push(single(Tok::Minus)),
            b'=' | b'!' | b'<' | b'>' => {
                let next = bytes.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'=', Some(b'=')) => (CmpOp::Eq, 2),
                    (b'=', _) => (CmpOp::Eq, 1),
                    (b'!', Some(b'=')) => (CmpOp::Ne, 2),
                    (b'<', Some(b'=')) => (CmpOp::Le, 2),
                    (b'<', Some(b'>')) => (CmpOp::Ne, 2),
                    (b'<', _) => (CmpOp::Lt, 1),
                    (b'>', Some(b'=')) => (CmpOp::Ge, 2),
                    (b'>', _) => (CmpOp::Gt, 1),
                    _ => {
                        return Err(ParseError::new(
                            input,
                            i,
                            1,
                            "unexpected `!`; did you mean `!=` or `not`?",
                        ));
                    }
                };
                out.push(Token {
                    tok: Tok::Op(op),
                    start,
                    end: start + len,
                });
                i += len;
                continue;
            }
            b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    let Some(ch) = input.get(j..).and_then(|r| r.chars().next()) else {
                        return Err(ParseError::new(
                            input,
                            start,
                            input.len() - start,
                            "unterminated string",
                        ));
                    };
                    match ch {
                        '"' => {
                            j += 1;
                            break;
                        }
                        '\\' => {
                            let esc = input.get(j + 1..).and_then(|r| r.chars().next());
                            let rep = match esc {
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('/') => '/',
                                _ => {
                                    let len = 1 + esc.map_or(0, char::len_utf8);
                                    return Err(ParseError::new(
                                        input,
                                        j,
                                        len,
                                        "unknown escape; use \\\" \\\\ \\n \\t or \\/",
                                    ));
                                }
                            };
                            s.push(rep);
                            j += 2;
                        }
                        c => {
                            s.push(c);
                            j += c.len_utf8();
                        }
                    }
                }
                out.push(Token {
                    tok: Tok::Str(s),
                    start,
                    end: j,
                });
                i = j;
                continue;
            }
            b'0'..=b'9' => {
                let mut j = i;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                let mut float = false;
                if j + 1 < bytes.len() && bytes[j] == b'.' && bytes[j + 1].is_ascii_digit() {
                    float = true;
                    j += 1;
                    while j < bytes.len() && bytes[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                let num = &input[i..j];
                let mut k = j;
                while k < bytes.len() && bytes[k].is_ascii_alphabetic() {
                    k += 1;
                }
                let unit = &input[j..k];
                let tok = if unit.is_empty() {
                    if float {
                        Tok::Float(
                            num.parse()
                                .map_err(|_| ParseError::new(input, i, j - i, "invalid number"))?,
                        )
                    } else {
                        Tok::Int(num.parse().map_err(|_| {
                            ParseError::new(input, i, j - i, "integer out of range")
                        })?)
                    }
                } else {
                    let secs_per: f64 = match unit {
                        "ms" => 0.001,
                        "s" => 1.0,
                        "m" => 60.0,
                        "h" => 3600.0,
                        "d" => 86_400.0,
                        "w" => 604_800.0,
                        _ => {
                            return Err(ParseError::new(
                                input,
                                j,
                                k - j,
                                "unknown duration unit; use ms, s, m, h, d or w",
                            ));
                        }
                    };
                    let n: f64 = num
                        .parse()
                        .map_err(|_| ParseError::new(input, i, k - i, "invalid duration"))?;
                    let secs = n * secs_per;
                    if !secs.is_finite() || secs > 1.0e11 {
                        return Err(ParseError::new(input, i, k - i, "duration too large"));
                    }
                    Tok::Dur(Duration::from_secs_f64(secs))
                };
                out.push(Token { tok, start, end: k });
                i = k;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(input[i..j].to_owned()),
                    start,
                    end: j,
                });
                i = j;
                continue;
            }
            _ => {
                let len = input[i..].chars().next().map_or(1, char::len_utf8);
                return Err(ParseError::new(input, i, len, "unexpected character"));
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        start: input.len(),
        end: input.len(),
    });
    Ok(out)
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<Token>,
    pos: usize,
    now: Timestamp,
    depth: usize,
}

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const KEYWORDS: [&str; 10] = [
    "and", "or", "not", "in", "contains", "exists", "true", "false", "null", "now",
];

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn err_at(&self, t: &Token, msg: impl Into<String>) -> ParseError {
        ParseError::new(self.input, t.start, t.end - t.start, msg)
    }

    fn expected(&self, what: &str) -> ParseError {
        let t = self.peek();
        self.err_at(
            t,
            format!("expected {what}, found {}", describe(self.input, t)),
        )
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if is_kw(&self.peek().tok, kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek().clone();
            return Err(self.err_at(&t, format!("query nests deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.and()?];
        while self.eat_kw("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut parts = vec![self.unary()?];
        while self.eat_kw("and") {
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_kw("not") {
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek().tok == Tok::LParen {
            self.bump();
            self.enter()?;
            let e = self.or()?;
            self.depth -= 1;
            if self.peek().tok != Tok::RParen {
                return Err(self.expected("`)` or `and`/`or`"));
            }
            self.bump();
            return Ok(e);
        }
        self.comparison()
    }

    fn field(&mut self) -> Result<(Field, Token), ParseError> {
        let t = self.bump();
        let Tok::Ident(name) = &t.tok else {
            self.pos -= usize::from(t.tok != Tok::Eof);
            return Err(self.expected("a field name (type, stream, data.x, …) or `(` or `not`"));
        };
        let lower = name.to_ascii_lowercase();
        if lower == "data" || lower == "metadata" {
            let mut segs = Vec::new();
            loop {
                match self.peek().tok {
                    Tok::Dot => {
                        self.bump();
                        let k = self.bump();
                        match k.tok {
                            Tok::Ident(s) => segs.push(PathSegment::Key(s)),
                            Tok::Int(i) => segs.push(PathSegment::Key(i.to_string())),
                            _ => {
                                return Err(self.err_at(
                                    &k,
                                    format!(
                                        "expected a key after `.`, found {}",
                                        describe(self.input, &k)
                                    ),
                                ));
                            }
                        }
                    }
                    Tok::LBracket => {
                        self.bump();
                        let k = self.bump();
                        let Tok::Int(i) = k.tok else {
                            return Err(self.err_at(
                                &k,
                                format!(
                                    "expected an array index, found {}",
                                    describe(self.input, &k)
                                ),
                            ));
                        };
                        let idx = usize::try_from(i)
                            .ok()
                            .filter(|i| *i <= i32::MAX as usize)
                            .ok_or_else(|| self.err_at(&k, "array index out of range"))?;
                        if self.peek().tok != Tok::RBracket {
                            return Err(self.expected("`]`"));
                        }
                        self.bump();
                        segs.push(PathSegment::Index(idx));
                    }
                    _ => break,
                }
            }
            if segs.is_empty() {
                return Err(self.err_at(&t, format!("`{name}` needs a path, like `{name}.model`")));
            }
            let end = self.toks[self.pos.saturating_sub(1)].end;
            let span = Token {
                tok: Tok::Eof,
                start: t.start,
                end,
            };
            let path = JsonPath::from_segments(segs);
            let f = if lower == "data" {
                Field::Data(path)
            } else {
                Field::Metadata(path)
            };
            return Ok((f, span));
        }
        if KEYWORDS.contains(&lower.as_str()) {
            return Err(self.err_at(&t, format!("expected a field name, found keyword `{name}`")));
        }
        match Field::envelope(&lower) {
            Some(f) => Ok((f, t)),
            None => Err(self.err_at(
                &t,
                format!("unknown field `{name}`; fields are id, type, source, subject, stream, tenant, correlation, causation, time, position, version, schema_version, data.…, metadata.…"),
            )),
        }
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        if is_kw(&self.peek().tok, "text") {
            self.bump();
            let eq = matches!(self.peek().tok, Tok::Op(CmpOp::Eq));
            if eq {
                self.bump();
            } else if !self.eat_kw("contains") {
                return Err(self.expected("`contains` after `text`"));
            }
            let s = self.bump();
            let Tok::Str(words) = s.tok.clone() else {
                return Err(self.err_at(
                    &s,
                    format!(
                        "expected a string of words, found {}",
                        describe(self.input, &s)
                    ),
                ));
            };
            if crate::query::text_tokens(&words).is_empty() {
                return Err(self.err_at(&s, "full-text search needs at least one word"));
            }
            return Ok(Expr::Text(words));
        }
        let (field, ftok) = self.field()?;
        let op_tok = self.peek().clone();
        let e =
            match &op_tok.tok {
                Tok::Op(op) => {
                    let op = *op;
                    self.bump();
                    let value = self.value(&field)?;
                    Expr::Cmp { field, op, value }
                }
                t if is_kw(t, "in") => {
                    self.bump();
                    if self.peek().tok != Tok::LParen {
                        return Err(self.expected("`(` after `in`"));
                    }
                    self.bump();
                    let mut alts = Vec::new();
                    loop {
                        let value = self.value(&field)?;
                        alts.push(Expr::Cmp {
                            field: field.clone(),
                            op: CmpOp::Eq,
                            value,
                        });
                        match self.peek().tok {
                            Tok::Comma => {
                                self.bump();
                            }
                            Tok::RParen => {
                                self.bump();
                                break;
                            }
                            _ => return Err(self.expected("`,` or `)`")),
                        }
                    }
                    if alts.len() == 1 {
                        alts.remove(0)
                    } else {
                        Expr::Or(alts)
                    }
                }
                t if is_kw(t, "contains") => {
                    self.bump();
                    let value = self.value(&field)?;
                    Expr::Contains { field, value }
                }
                t if is_kw(t, "exists") => {
                    self.bump();
                    Expr::Exists(field)
                }
                _ => return Err(self.expected(
                    "a comparison (`=`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `contains`, `exists`)",
                )),
            };
        // Type-check the leaf here so the error points at the field.
        e.check().map_err(|err| match err {
            crate::Error::InvalidQuery(m) => self.err_at(&ftok, m),
            other => self.err_at(&ftok, other.to_string()),
        })?;
        Ok(e)
    }

    fn value(&mut self, field: &Field) -> Result<Literal, ParseError> {
        let t = self.bump();
        let lit = match &t.tok {
            Tok::Str(s) => {
                if *field == Field::Time {
                    Literal::Time(
                        s.parse::<Timestamp>()
                            .map_err(|e| self.err_at(&t, e.to_string()))?,
                    )
                } else {
                    Literal::Str(s.clone())
                }
            }
            Tok::Int(i) => Literal::Int(*i),
            Tok::Float(f) => Literal::Float(*f),
            Tok::Minus => {
                let n = self.bump();
                match n.tok {
                    Tok::Int(i) => Literal::Int(-i),
                    Tok::Float(f) => Literal::Float(-f),
                    _ => {
                        return Err(self.err_at(
                            &n,
                            format!(
                                "expected a number after `-`, found {}",
                                describe(self.input, &n)
                            ),
                        ));
                    }
                }
            }
            Tok::Dur(_) => {
                return Err(self.err_at(&t, "a duration needs a base time, like `now - 1h`"));
            }
            x if is_kw(x, "true") => Literal::Bool(true),
            x if is_kw(x, "false") => Literal::Bool(false),
            x if is_kw(x, "null") => Literal::Null,
            x if is_kw(x, "now") => {
                let mut at = self.now;
                loop {
                    let sign = match self.peek().tok {
                        Tok::Plus => 1,
                        Tok::Minus => -1,
                        _ => break,
                    };
                    self.bump();
                    let d = self.bump();
                    let Tok::Dur(d) = d.tok else {
                        return Err(self.err_at(
                            &d,
                            format!(
                                "expected a duration like `1h` or `30s`, found {}",
                                describe(self.input, &d)
                            ),
                        ));
                    };
                    at = if sign > 0 {
                        at.saturating_add(d)
                    } else {
                        at.saturating_sub(d)
                    };
                }
                Literal::Time(at)
            }
            _ => {
                self.pos -= usize::from(t.tok != Tok::Eof);
                return Err(self.expected("a value"));
            }
        };
        Ok(lit)
    }
}

/// Parses `input` with `now` as the current time.
///
/// # Errors
/// A [`ParseError`] pointing at the offending token.
pub fn parse(input: &str, now: Timestamp) -> Result<Expr, ParseError> {
    if input.len() > MAX_QUERY_LEN {
        return Err(ParseError::new(
            input,
            MAX_QUERY_LEN,
            0,
            format!("query longer than {MAX_QUERY_LEN} bytes"),
        ));
    }
    let toks = lex(input)?;
    let mut p = Parser {
        input,
        toks,
        pos: 0,
        now,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Err(p.expected("a filter"));
    }
    let e = p.or()?;
    if p.peek().tok != Tok::Eof {
        return Err(p.expected("`and`, `or` or end of query"));
    }
    Ok(e)
}

/// Parses with `now` fixed at the Unix epoch (handy in doctests).
///
/// # Errors
/// As [`parse`].
pub fn parse_at_epoch(input: &str) -> Result<Expr, ParseError> {
    parse(input, Timestamp::from_micros(0))
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Str(s) => write!(f, "{}", serde_json::Value::String(s.clone())),
            Self::Time(t) => write!(f, "\"{t}\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Timestamp = Timestamp::from_micros(1_000_000_000_000_000);

    #[test]
    fn parses_the_issue_example() {
        let e = parse(
            r#"type = "llm.response" and data.model = "gpt-4o" and time > now - 1h"#,
            NOW,
        )
        .unwrap();
        let Expr::And(parts) = e else {
            panic!("not an and: {e:?}")
        };
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[2],
            Expr::Cmp {
                field: Field::Time,
                op: CmpOp::Gt,
                value: Literal::Time(NOW.saturating_sub(Duration::from_secs(3600)))
            }
        );
    }

    #[test]
    fn precedence_and_in_and_not() {
        let e = parse(
            r#"not type in ("a", "b") or data.n >= -2.5 and data.tags contains "x""#,
            NOW,
        )
        .unwrap();
        let Expr::Or(parts) = e else { panic!() };
        assert!(matches!(parts[0], Expr::Not(_)));
        assert!(matches!(parts[1], Expr::And(_)));
        assert!(parse("data.choices[0].text exists", NOW).is_ok());
        assert!(parse(r#"TEXT CONTAINS "rate limit""#, NOW).is_ok());
        assert!(parse(r#"time >= "2026-12-03T10:00:00Z""#, NOW).is_ok());
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let cases = [
            ("type = ", 7, "expected a value, found end of query"),
            ("type = and", 7, "expected a value, found `and`"),
            ("typo = \"x\"", 0, "unknown field `typo`"),
            (
                "type = \"x\" nand stream = \"s\"",
                11,
                "expected `and`, `or` or end of query, found `nand`",
            ),
            (
                "position = \"x\"",
                0,
                "`position` takes a non-negative integer",
            ),
            ("time > now - 1y", 14, "unknown duration unit"),
            ("(type = \"a\"", 11, "expected `)`"),
            ("data = 1", 0, "`data` needs a path"),
            ("type = \"a\" and", 14, "expected a field name"),
            ("data.x = \"unterminated", 9, "unterminated string"),
            ("time > \"yesterday\"", 7, "invalid timestamp"),
            ("type # 1", 5, "unexpected character"),
        ];
        for (q, offset, msg) in cases {
            let e = parse(q, NOW).unwrap_err();
            assert_eq!(e.offset, offset, "{q}: {e}");
            assert!(e.message.contains(msg), "{q}: {}", e.message);
        }
    }

    #[test]
    fn depth_is_bounded() {
        let q = format!("{}type = \"a\"{}", "(".repeat(200), ")".repeat(200));
        assert!(parse(&q, NOW).unwrap_err().message.contains("deeper"));
        let q = format!("{}type = \"a\"", "not ".repeat(200));
        assert!(parse(&q, NOW).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics_on_arbitrary_input(s in "\\PC{0,80}") {
            if let Err(e) = parse(&s, NOW) {
                prop_assert!(e.offset <= s.len());
                let _ = e.render();
            }
        }

        #[test]
        fn never_panics_on_query_like_input(parts in proptest::collection::vec(prop_oneof![
            Just("type"), Just("data.a"), Just("data"), Just("."), Just("["), Just("]"), Just("0"), Just("="),
            Just("!="), Just("<"), Just(">="), Just("and"), Just("or"), Just("not"), Just("("), Just(")"),
            Just("in"), Just(","), Just("\"x\""), Just("now"), Just("-"), Just("+"), Just("1h"), Just("exists"),
            Just("contains"), Just("time"), Just("text"), Just("1.5"), Just("null"), Just("position"),
            Just("99999999999999999999"), Just("\"\\q\""),
        ], 0..16)) {
            let q = parts.join(" ");
            match parse(&q, NOW) {
                Ok(e) => prop_assert!(e.check().is_ok(), "{q}"),
                Err(e) => { prop_assert!(e.offset <= q.len()); let _ = e.render(); }
            }
        }
    }
}
