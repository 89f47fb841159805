//! SCIM filters (RFC 7644 §3.4.2.2), parsed and evaluated against a resource's JSON. Written by
//! hand: the Rust crates that parse SCIM filters are young, unmaintained or tied to their own
//! resource models, and the grammar is small. Operators: `eq ne co sw ew gt ge lt le pr`,
//! `and`, `or`, `not (…)`, grouping with parentheses and value paths (`emails[type eq "work"]`).
//! Input is bounded (length and nesting) so that no filter can exhaust the stack.

use serde_json::Value;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of parentheses, `not` and value paths.
const MAX_DEPTH: usize = 32;

/// An attribute path: `attr` or `attr.sub`, schema URN prefix removed, as written (attribute
/// names are compared case-insensitively).
#[derive(Clone, Debug, PartialEq)]
pub struct AttrPath {
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(AttrPath),
    Compare(AttrPath, Op, Value),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter`, whose paths
    /// name the element's sub-attributes.
    ValuePath(String, Box<Filter>),
}

/// Why a filter was refused (the `detail` of a 400 `invalidFilter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(pub String);

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
    Literal(Value),
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = vec![];
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '[' => {
                tokens.push(Token::OpenBracket);
                i += 1;
            }
            ']' => {
                tokens.push(Token::CloseBracket);
                i += 1;
            }
            '"' => {
                // A JSON string: find its end (a quote not escaped), let serde_json decode it.
                let start = i;
                i += 1;
                let mut escaped = false;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err(FilterError("a string is not closed".into()));
                    };
                    i += 1;
                    match (escaped, d) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => break,
                        _ => {}
                    }
                }
                let raw: String = chars[start..i].iter().collect();
                let s: String = serde_json::from_str(&raw)
                    .map_err(|_| FilterError(format!("{raw} is not a valid string")))?;
                tokens.push(Token::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r()[]\"".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let literal = match lower.as_str() {
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    "null" => Some(Value::Null),
                    _ if word.starts_with(|c: char| c.is_ascii_digit() || c == '-') => Some(
                        serde_json::from_str::<serde_json::Number>(&word)
                            .map(Value::Number)
                            .map_err(|_| FilterError(format!("{word:?} is not a number")))?,
                    ),
                    _ => None,
                };
                tokens.push(match literal {
                    Some(v) => Token::Literal(v),
                    None => Token::Word(word),
                });
            }
        }
    }
    Ok(tokens)
}

/// `urn:…:User:name.givenName` → (`name`, `givenName`).
pub fn parse_attr_path(word: &str) -> Result<AttrPath, FilterError> {
    let bare = if word
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        // The schema URN contains dots ("2.0"); the attribute follows its last colon.
        word.rsplit_once(':').map(|(_, a)| a).unwrap_or(word)
    } else {
        word
    };
    let (attr, sub) = match bare.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (bare, None),
    };
    let valid = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !valid(attr) || sub.is_some_and(|s| !valid(s)) {
        return Err(FilterError(format!("{word:?} is not an attribute path")));
    }
    Ok(AttrPath {
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

fn op_of(word: &str) -> Option<Op> {
    Some(match word.to_ascii_lowercase().as_str() {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "co" => Op::Co,
        "sw" => Op::Sw,
        "ew" => Op::Ew,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return None,
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn deeper(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError("the filter is nested too deeply".into()));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn group(&mut self) -> Result<Filter, FilterError> {
        self.deeper()?;
        let inner = self.or()?;
        self.depth -= 1;
        match self.next() {
            Some(Token::Close) => Ok(inner),
            _ => Err(FilterError("a parenthesis is not closed".into())),
        }
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            return match self.next() {
                Some(Token::Open) => Ok(Filter::Not(Box::new(self.group()?))),
                _ => Err(FilterError("not must be followed by a parenthesis".into())),
            };
        }
        match self.next() {
            Some(Token::Open) => self.group(),
            Some(Token::Word(w)) => {
                let path = parse_attr_path(&w)?;
                if self.peek() == Some(&Token::OpenBracket) {
                    self.pos += 1;
                    if path.sub.is_some() {
                        return Err(FilterError(format!(
                            "{w:?}[…]: a value path names an attribute, not a sub-attribute"
                        )));
                    }
                    self.deeper()?;
                    let inner = self.or()?;
                    self.depth -= 1;
                    if self.next() != Some(Token::CloseBracket) {
                        return Err(FilterError("a bracket is not closed".into()));
                    }
                    return Ok(Filter::ValuePath(path.attr, Box::new(inner)));
                }
                let op = match self.next() {
                    Some(Token::Word(o)) if o.eq_ignore_ascii_case("pr") => {
                        return Ok(Filter::Present(path))
                    }
                    Some(Token::Word(o)) => {
                        op_of(&o).ok_or_else(|| FilterError(format!("{o:?} is not an operator")))?
                    }
                    _ => {
                        return Err(FilterError(format!(
                            "{w:?} must be followed by an operator"
                        )))
                    }
                };
                let value = match self.next() {
                    Some(Token::Str(s)) => Value::String(s),
                    Some(Token::Literal(v)) => v,
                    _ => {
                        return Err(FilterError(
                            "an operator must be followed by a value (a quoted string, a number, true, false or null)".into(),
                        ))
                    }
                };
                Ok(Filter::Compare(path, op, value))
            }
            Some(t) => Err(FilterError(format!("unexpected {t:?}"))),
            None => Err(FilterError("the filter ends too early".into())),
        }
    }
}

/// Parses a filter completely (trailing input is an error).
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    if input.len() > MAX_FILTER_BYTES {
        return Err(FilterError(format!(
            "a filter is at most {MAX_FILTER_BYTES} bytes"
        )));
    }
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let f = p.or()?;
    if p.pos < p.tokens.len() {
        return Err(FilterError(format!(
            "unexpected {:?} after the filter",
            p.tokens[p.pos]
        )));
    }
    Ok(f)
}

impl Filter {
    /// Every attribute path the filter names, as (attribute, sub-attribute), so that the caller
    /// can refuse ones its resource does not have.
    pub fn paths(&self) -> Vec<(String, Option<String>)> {
        let mut out = vec![];
        self.collect(None, &mut out);
        out
    }

    fn collect(&self, parent: Option<&str>, out: &mut Vec<(String, Option<String>)>) {
        let mut push = |p: &AttrPath| match parent {
            Some(parent) => out.push((parent.to_string(), Some(p.attr.clone()))),
            None => out.push((p.attr.clone(), p.sub.clone())),
        };
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.collect(parent, out);
                b.collect(parent, out);
            }
            Filter::Not(f) => f.collect(parent, out),
            Filter::Present(p) | Filter::Compare(p, _, _) => push(p),
            Filter::ValuePath(attr, f) => f.collect(Some(attr), out),
        }
    }

    /// Whether `resource` (a SCIM resource's JSON) matches. `case_exact` says which top-level
    /// attributes compare strings exactly (`id`, `externalId`); the rest ignore case.
    pub fn matches(&self, resource: &Value, case_exact: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Filter::And(a, b) => a.matches(resource, case_exact) && b.matches(resource, case_exact),
            Filter::Or(a, b) => a.matches(resource, case_exact) || b.matches(resource, case_exact),
            Filter::Not(f) => !f.matches(resource, case_exact),
            Filter::Present(p) if p.sub.is_none() => get(resource, &p.attr).is_some_and(present),
            Filter::Present(p) => values(resource, p).iter().any(|v| present(v)),
            Filter::Compare(p, op, expected) => {
                let exact = case_exact(&p.attr);
                let found = values(resource, p);
                match op {
                    Op::Ne => !found.iter().any(|v| compare(v, Op::Eq, expected, exact)),
                    Op::Eq if expected.is_null() => !found.iter().any(|v| present(v)),
                    _ => found.iter().any(|v| compare(v, *op, expected, exact)),
                }
            }
            Filter::ValuePath(attr, inner) => match get(resource, attr) {
                Some(Value::Array(items)) => {
                    items.iter().any(|item| inner.matches(item, case_exact))
                }
                Some(item @ Value::Object(_)) => inner.matches(item, case_exact),
                _ => false,
            },
        }
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// An object's member by case-insensitive name.
pub fn get<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values a path names: arrays are flattened, and a complex value compared without a
/// sub-attribute is compared by its `value`.
fn values<'a>(resource: &'a Value, p: &AttrPath) -> Vec<&'a Value> {
    let Some(top) = get(resource, &p.attr) else {
        return vec![];
    };
    let items: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|item| match (&p.sub, item) {
            (Some(sub), v) => get(v, sub),
            (None, v @ Value::Object(_)) => get(v, "value"),
            (None, v) => Some(v),
        })
        .collect()
}

fn compare(actual: &Value, op: Op, expected: &Value, exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            let (a, e) = if exact {
                (a.clone(), e.clone())
            } else {
                (a.to_lowercase(), e.to_lowercase())
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Co => a.contains(&e),
                Op::Sw => a.starts_with(&e),
                Op::Ew => a.ends_with(&e),
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
            }
        }
        (Value::Bool(a), Value::Bool(e)) => match op {
            Op::Eq => a == e,
            Op::Ne => a != e,
            _ => false,
        },
        (Value::Number(a), Value::Number(e)) => {
            let (Some(a), Some(e)) = (a.as_f64(), e.as_f64()) else {
                return false;
            };
            match op {
                Op::Eq => a == e,
                Op::Ne => a != e,
                Op::Gt => a > e,
                Op::Ge => a >= e,
                Op::Lt => a < e,
                Op::Le => a <= e,
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "Bjensen",
            "externalId": "Ext-1",
            "active": true,
            "name": { "givenName": "Barbara", "familyName": "Jensen" },
            "emails": [
                { "value": "bjensen@example.com", "type": "work", "primary": true },
                { "value": "babs@jensen.org", "type": "home" }
            ],
            "meta": { "lastModified": "2026-01-02T03:04:05Z" }
        })
    }

    fn exact(attr: &str) -> bool {
        attr.eq_ignore_ascii_case("id") || attr.eq_ignore_ascii_case("externalId")
    }

    fn m(f: &str) -> bool {
        parse(f).unwrap().matches(&user(), &exact)
    }

    #[test]
    fn comparisons_follow_the_rfc() {
        assert!(m(r#"userName eq "bjensen""#), "userName ignores case");
        assert!(m(r#"USERNAME Eq "BJENSEN""#), "so do names and operators");
        assert!(!m(r#"externalId eq "ext-1""#), "externalId is case-exact");
        assert!(m(r#"externalId eq "Ext-1""#));
        assert!(m(r#"userName sw "bj""#) && m(r#"userName co "ens""#) && m(r#"userName ew "SEN""#));
        assert!(!m(r#"userName sw "x""#));
        assert!(m(r#"userName ne "alice""#) && !m(r#"userName ne "bjensen""#));
        assert!(m("active eq true") && !m("active eq false"));
        assert!(m(r#"name.familyName eq "jensen""#));
        assert!(
            m(r#"emails co "example.com""#),
            "complex values compare by value"
        );
        assert!(m(r#"emails.type eq "home""#));
        assert!(m(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(!m(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
        assert!(m("title eq null") && !m("userName eq null"));
    }

    #[test]
    fn logic_grouping_presence_and_value_paths() {
        assert!(m(r#"userName eq "bjensen" and active eq true"#));
        assert!(!m(r#"userName eq "bjensen" and active eq false"#));
        assert!(m(r#"userName eq "x" or name.givenName sw "bar""#));
        assert!(m(r#"not (userName eq "x")"#));
        assert!(m(
            r#"(userName eq "x" or userName eq "bjensen") and active eq true"#
        ));
        assert!(m(r#"emails[type eq "work" and value co "@example.com"]"#));
        assert!(!m(r#"emails[type eq "work" and value co "jensen.org"]"#));
        assert!(m("name pr") && m("emails pr") && !m("title pr"));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen""#
        ));
        assert!(m(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName eq "barbara""#
        ));
        // and binds tighter than or
        assert!(m(
            r#"userName eq "x" and active eq false or userName eq "bjensen""#
        ));
    }

    #[test]
    fn strings_may_hold_escapes_and_filter_syntax() {
        let f = parse(r#"userName eq "a \"quoted\" (x) [y] and z""#).unwrap();
        assert_eq!(
            f,
            Filter::Compare(
                AttrPath {
                    attr: "userName".into(),
                    sub: None
                },
                Op::Eq,
                json!("a \"quoted\" (x) [y] and z")
            )
        );
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            "",
            "userName",
            "userName eq",
            r#"userName xx "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"userName eq "unclosed"#,
            r#"emails[type eq "work""#,
            r#"emails.type[value eq "x"]"#,
            r#"not userName eq "a""#,
            "userName eq bjensen",
            r#"user$#Name eq "a""#,
            "userName eq 12x",
            r#""a" eq "a""#,
            r#"userName eq "a" userName eq "b""#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let deep = format!("{}userName pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().0.contains("deeply"));
        assert!(parse(&"a".repeat(MAX_FILTER_BYTES + 1)).is_err());
    }

    #[test]
    fn paths_lists_every_attribute_named() {
        let f =
            parse(r#"userName eq "a" or emails[type eq "work"] and name.givenName pr"#).unwrap();
        assert_eq!(
            f.paths(),
            vec![
                ("userName".to_string(), None),
                ("emails".to_string(), Some("type".to_string())),
                ("name".to_string(), Some("givenName".to_string())),
            ]
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn parsing_filter_like_soup_never_panics(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("("), Just(")"), Just("["), Just("]"), Just("and"), Just("or"),
                    Just("not"), Just("eq"), Just("pr"), Just("sw"), Just("\"x\""), Just("\"\\\""),
                    Just("userName"), Just("emails.value"), Just("true"), Just("-1.5e3"),
                    Just("urn:a:b:2.0:User:name.givenName"), Just("\\"), Just("\""),
                ],
                0..40,
            )
        ) {
            let s = words.join(" ");
            if let Ok(f) = parse(&s) {
                let _ = f.matches(&user(), &exact);
                let _ = f.paths();
            }
        }
    }
}
