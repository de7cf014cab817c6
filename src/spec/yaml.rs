//! The only YAML parser call site: text → a tree whose every node knows its line and column.
//!
//! serde_yaml (deprecated upstream) reports a position only for the first syntax or type error
//! and none for semantic errors (an unknown input stage, a cycle). We parse with yaml-rust2's
//! event API instead, keep a [`Pos`] on every key and value, and hand typed deserialisation to
//! serde via [`Marked::to_json`], mapping serde's field path back to a position.

use serde_json::Value;
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// Always finite.
    Float(f64),
    /// A number YAML reads as infinite or NaN (`.inf`, `.nan`, `1e400`), kept as written: no
    /// field accepts one (JSON cannot even hold it), and the message must name the value.
    NonFinite(String),
    Str(String),
    Seq(Vec<Marked>),
    /// Keys in file order, each with its own position.
    Map(Vec<(Marked, Marked)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    pub node: Node,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl Marked {
    pub fn new(node: Node, pos: Pos) -> Self {
        Self { node, pos }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.node {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Marked, Marked)]> {
        match &self.node {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value of `key` in a mapping, with the key's own node.
    pub fn get(&self, key: &str) -> Option<(&Marked, &Marked)> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k, v))
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Marked> {
        match &mut self.node {
            Node::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's type for messages.
    pub fn type_name(&self) -> &'static str {
        match self.node {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::NonFinite(_) => "a non-finite number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// Position of the node at a serde-style path below this one (`a.b[2].c`); the deepest
    /// node that exists on the path when the rest does not.
    pub fn locate(&self, path: &str) -> Pos {
        let mut node = self;
        for seg in split_path(path) {
            let next = match (&node.node, seg) {
                (Node::Map(m), Seg::Key(k)) => m.iter().find(|(key, _)| key.as_str() == Some(k)),
                (Node::Seq(s), Seg::Index(i)) => {
                    if let Some(v) = s.get(i) {
                        node = v;
                        continue;
                    }
                    None
                }
                _ => None,
            };
            match next {
                Some((_, v)) => node = v,
                None => break,
            }
        }
        node.pos
    }

    /// Position of a mapping key (for "unknown field" messages), else of the node.
    pub fn locate_key(&self, path: &str, key: &str) -> Pos {
        let mut node = self;
        for seg in split_path(path) {
            if let (Node::Map(m), Seg::Key(k)) = (&node.node, seg)
                && let Some((_, v)) = m.iter().find(|(kk, _)| kk.as_str() == Some(k))
            {
                node = v;
                continue;
            }
            break;
        }
        node.get(key).map(|(k, _)| k.pos).unwrap_or(node.pos)
    }

    pub fn to_json(&self) -> Value {
        match &self.node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::from(*i),
            Node::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            // Reported before typing (see `non_finite`); never reaches a stage's config.
            Node::NonFinite(_) => Value::Null,
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Marked::to_json).collect()),
            Node::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (key_string(k), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn key_string(k: &Marked) -> String {
    match &k.node {
        Node::Str(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::NonFinite(s) => s.clone(),
        Node::Bool(b) => b.to_string(),
        Node::Null => "null".into(),
        Node::Seq(_) | Node::Map(_) => "<complex key>".into(),
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> impl Iterator<Item = Seg<'_>> {
    path.split('.')
        .filter(|s| !s.is_empty() && *s != "?")
        .flat_map(|part| {
            let mut segs = Vec::new();
            let (key, rest) = part.split_once('[').unwrap_or((part, ""));
            if !key.is_empty() {
                segs.push(Seg::Key(key));
            }
            for idx in rest.split('[') {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
            segs
        })
}

/// Decodes a pipeline file's bytes: UTF-8 (an error names the line and column of the first
/// bad byte), without a leading byte-order mark.
pub fn decode(bytes: &[u8]) -> Result<&str, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let col = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        YamlError {
            pos: Pos { line, col },
            message: format!("not valid UTF-8 (byte 0x{:02X})", bytes[e.valid_up_to()]),
        }
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Parses one YAML document (a second one is an error at its start). An empty document is
/// `Null`.
pub fn parse(text: &str) -> Result<Marked, YamlError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        pos: (*e.marker()).into(),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder
        .root
        .unwrap_or(Marked::new(Node::Null, Pos { line: 1, col: 1 })))
}

/// Every non-finite number below `m`, with its dotted path relative to `m` (`a.b[2]`).
pub fn non_finite(m: &Marked) -> Vec<(String, &Marked)> {
    fn walk<'a>(m: &'a Marked, path: String, out: &mut Vec<(String, &'a Marked)>) {
        match &m.node {
            Node::NonFinite(_) => out.push((path, m)),
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), out);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    let key = key_string(k);
                    let p = if path.is_empty() {
                        key
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(v, p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(m, String::new(), &mut out);
    out
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Marked>,
    error: Option<YamlError>,
    documents: usize,
}

enum Frame {
    Seq(Vec<Marked>, Pos),
    /// Entries, the key awaiting its value, the position, and where each string key first
    /// appeared (so a duplicate is found without a scan: `stages:` may hold 10,000 keys).
    Map(
        Vec<(Marked, Marked)>,
        Option<Marked>,
        Pos,
        std::collections::HashMap<String, usize>,
    ),
}

impl Builder {
    fn push_value(&mut self, v: Marked) {
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq(items, _)) => items.push(v),
            Some(Frame::Map(entries, pending_key, _, strings)) => match pending_key.take() {
                None => *pending_key = Some(v),
                Some(k) => {
                    // A string key can only equal a string key.
                    let first = match &k.node {
                        Node::Str(s) => strings.get(s).map(|&i| &entries[i]),
                        _ => entries.iter().find(|(e, _)| e.node == k.node),
                    };
                    if self.error.is_none()
                        && let Some((prev, _)) = first
                    {
                        self.error = Some(YamlError {
                            pos: k.pos,
                            message: format!(
                                "duplicate key `{}` (first at line {})",
                                key_string(&k),
                                prev.pos.line
                            ),
                        });
                    }
                    if let Node::Str(s) = &k.node {
                        strings.entry(s.clone()).or_insert(entries.len());
                    }
                    entries.push((k, v));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from(mark);
        match ev {
            Event::Scalar(text, style, _, tag) => {
                let node = if style == TScalarStyle::Plain && tag.is_none() {
                    resolve_plain(&text)
                } else {
                    Node::Str(text)
                };
                self.push_value(Marked::new(node, pos));
            }
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(Vec::new(), pos)),
            Event::MappingStart(..) => {
                self.stack
                    .push(Frame::Map(Vec::new(), None, pos, Default::default()))
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, p)) = self.stack.pop() {
                    self.push_value(Marked::new(Node::Seq(items), p));
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, p, _)) = self.stack.pop() {
                    self.push_value(Marked::new(Node::Map(entries), p));
                }
            }
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 && self.error.is_none() {
                    self.error = Some(YamlError {
                        pos,
                        message: "a second YAML document starts here; a pipeline file holds \
                                  one (remove the `---` or split the file)"
                            .into(),
                    });
                }
            }
            Event::Alias(_) => {
                if self.error.is_none() {
                    self.error = Some(YamlError {
                        pos,
                        message:
                            "YAML aliases are not supported; use `params:` and `${params.NAME}`"
                                .into(),
                    });
                }
                self.push_value(Marked::new(Node::Null, pos));
            }
            _ => {}
        }
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
fn resolve_plain(s: &str) -> Node {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Node::Null,
        "true" | "True" | "TRUE" => return Node::Bool(true),
        "false" | "False" | "FALSE" => return Node::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return Node::NonFinite(s.to_string()),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && let Ok(i) = s.replace('_', "").parse::<i64>()
    {
        return Node::Int(i);
    }
    if let Some(hex) = s.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Node::Int(i);
    }
    let looks_numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+' | b'_'));
    if looks_numeric && let Ok(f) = s.replace('_', "").parse::<f64>() {
        return if f.is_finite() {
            Node::Float(f)
        } else {
            Node::NonFinite(s.to_string())
        };
    }
    Node::Str(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_types() {
        let t = parse("a: 1\nb:\n  c: [x, 2.5, true]\n  d: '1'\n").unwrap();
        assert_eq!(t.get("a").unwrap().1.node, Node::Int(1));
        assert_eq!(t.locate("b.c"), Pos { line: 3, col: 6 });
        assert_eq!(t.locate("b.c[1]"), Pos { line: 3, col: 10 });
        assert_eq!(t.locate_key("b", "d"), Pos { line: 4, col: 3 });
        assert_eq!(
            t.get("b").unwrap().1.get("d").unwrap().1.node,
            Node::Str("1".into())
        );
        assert_eq!(
            t.to_json(),
            serde_json::json!({"a": 1, "b": {"c": ["x", 2.5, true], "d": "1"}})
        );
    }

    #[test]
    fn scalars_resolve_like_yaml_1_2() {
        assert_eq!(resolve_plain("1e-4"), Node::Float(1e-4));
        assert_eq!(resolve_plain("-3"), Node::Int(-3));
        assert_eq!(resolve_plain("0.595"), Node::Float(0.595));
        assert_eq!(resolve_plain("yes"), Node::Str("yes".into()));
        assert_eq!(resolve_plain("e5"), Node::Str("e5".into()));
        assert_eq!(resolve_plain("b3"), Node::Str("b3".into()));
    }

    #[test]
    fn non_finite_numbers_keep_their_text_and_are_found() {
        for s in [".inf", "-.inf", ".NaN", "1e400", "-1e400"] {
            assert_eq!(resolve_plain(s), Node::NonFinite(s.into()), "{s}");
        }
        let t = parse("a: {b: [1, .nan]}\nc: 2\n").unwrap();
        let found = non_finite(&t);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "a.b[1]");
        assert_eq!(found[0].1.pos, Pos { line: 1, col: 12 });
    }

    #[test]
    fn one_document_utf8_and_no_bom() {
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 2, "{e:?}");
        assert!(e.message.contains("second YAML document"));
        assert!(parse("---\na: 1\n...\n").is_ok());
        let e = decode(b"a: 1\nb: x\xffy\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 5 });
        assert_eq!(decode("\u{feff}a: 1".as_bytes()).unwrap(), "a: 1");
        assert_eq!(
            parse("\u{feff}a: 1").unwrap().get("a").unwrap().0.pos.col,
            1
        );
    }

    #[test]
    fn syntax_and_duplicate_key_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 1 });
        assert!(e.message.contains("duplicate key `a`"));
    }
}
