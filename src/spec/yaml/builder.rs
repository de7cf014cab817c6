//! yaml-rust2 events → a [`Marked`] tree, pulled one event at a time: yaml-rust2's own
//! `Parser::load` recurses once per nesting level, so a file 20 000 levels deep overflowed the
//! stack before any check could run. Here the tree is built with an explicit stack, bounded by
//! [`MAX_DEPTH`]; anchors and aliases (an alias replays its anchor's logged events, within
//! [`MAX_ALIAS_VALUES`]); YAML 1.1 merge keys (`<<`); core-schema tags; duplicate keys.

use super::scalar::{self, Wanted};
use super::{Marked, Node, Pos, YamlError};
use crate::quote::{MAX_ECHO_CHARS, quote};
use std::collections::{HashMap, HashSet};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// Deepest nesting of lists and mappings (aliases included). yaml-rust2's scanner stops flow
/// collections (`[`, `{`) at 255 levels by itself.
pub const MAX_DEPTH: usize = 256;

/// Most values (scalars, lists, mappings) that aliases may copy into one file: nested aliases
/// multiply ("billion laughs"), and a few hundred bytes of YAML could ask for gigabytes.
pub const MAX_ALIAS_VALUES: usize = 100_000;

/// An alias in the file: where, its name, and where its anchor is. Every value it brought in
/// carries the alias's position.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasSite {
    pub pos: Pos,
    pub name: String,
    pub anchor: Pos,
}

/// A parsed document and the aliases it used.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub tree: Marked,
    pub aliases: Vec<AliasSite>,
}

pub fn build(text: &str) -> Result<Parsed, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut b = Builder::new(text);
    loop {
        if let Some((ev, pos, name)) = b.next_replayed() {
            b.handle(ev, pos, Origin::Replay(name))?;
            continue;
        }
        let (ev, mark) = parser.next_token().map_err(|e| b.syntax_error(&e))?;
        if ev == Event::StreamEnd {
            break;
        }
        let origin = b.record(&ev, mark);
        b.handle(ev, Pos::from(mark), origin)?;
    }
    Ok(Parsed {
        tree: b
            .root
            .unwrap_or(Marked::new(Node::Null, Pos { line: 1, col: 1 })),
        aliases: b.aliases,
    })
}

fn error(pos: Pos, message: impl Into<String>) -> YamlError {
    YamlError {
        pos,
        message: message.into(),
    }
}

/// Where an event comes from.
enum Origin {
    /// The file: `at` is its index in the log (where it is or would be), `values` how many
    /// values the log held before it, `index` its character offset in the text.
    File {
        at: usize,
        values: usize,
        index: usize,
    },
    /// An alias's replay of its anchor's events; the name of the alias written in the file.
    Replay(String),
}

/// A node with an anchor: its events in the log.
struct Anchor {
    start: usize,
    end: usize,
    /// Values it holds, those its aliases bring in included.
    values: usize,
    pos: Pos,
}

/// An alias being replayed; `pos` and `name` are those of the alias written in the file (an
/// alias inside a replayed anchor replays at the outer alias's position).
struct Replay {
    next: usize,
    end: usize,
    pos: Pos,
    name: String,
}

struct Frame {
    pos: Pos,
    /// Anchor id (0: none, or replayed).
    anchor: usize,
    log_start: usize,
    values_start: usize,
    expanded_start: usize,
    kind: Kind,
}

enum Kind {
    Seq(Vec<Marked>),
    Map(MapFrame),
}

#[derive(Default)]
struct MapFrame {
    entries: Vec<(Marked, Marked)>,
    /// A key waiting for its value, and whether it is the merge key `<<`.
    key: Option<(Marked, bool)>,
    /// Indices of the `<<` entries.
    merges: Vec<usize>,
    /// Key identity → its position, for duplicate keys.
    seen: HashMap<String, Pos>,
}

struct Builder<'t> {
    text: &'t str,
    /// Byte offset of every 1024th character (built at the first alias of a non-ASCII text).
    char_marks: Option<Vec<usize>>,
    stack: Vec<Frame>,
    root: Option<Marked>,
    documents: usize,
    /// Events of anchored nodes (only while one is open), for aliases to replay.
    log: Vec<(Event, Pos)>,
    /// Values (scalars, list and mapping starts) in `log`.
    logged_values: usize,
    /// Anchored collections open in the file.
    open_anchors: usize,
    anchors: HashMap<usize, Anchor>,
    replays: Vec<Replay>,
    /// Values aliases have copied so far (an alias is charged its anchor's whole value count
    /// at once; the aliases inside a replay are not charged again).
    expanded: usize,
    aliases: Vec<AliasSite>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        Builder {
            text,
            char_marks: None,
            stack: Vec::new(),
            root: None,
            documents: 0,
            log: Vec::new(),
            logged_values: 0,
            open_anchors: 0,
            anchors: HashMap::new(),
            replays: Vec::new(),
            expanded: 0,
            aliases: Vec::new(),
        }
    }

    fn next_replayed(&mut self) -> Option<(Event, Pos, String)> {
        while let Some(r) = self.replays.last_mut() {
            if r.next < r.end {
                let ev = self.log[r.next].0.clone();
                r.next += 1;
                return Some((ev, r.pos, r.name.clone()));
            }
            self.replays.pop();
        }
        None
    }

    /// Logs a file event when an alias may replay it: inside an anchored collection, or
    /// itself anchored.
    fn record(&mut self, ev: &Event, mark: Marker) -> Origin {
        let origin = Origin::File {
            at: self.log.len(),
            values: self.logged_values,
            index: mark.index(),
        };
        let anchored = match ev {
            Event::Scalar(_, _, a, _) | Event::SequenceStart(a, _) | Event::MappingStart(a, _) => {
                *a > 0
            }
            _ => false,
        };
        if self.open_anchors > 0 || anchored {
            if matches!(
                ev,
                Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
            ) {
                self.logged_values += 1;
            }
            self.log.push((ev.clone(), Pos::from(mark)));
        }
        origin
    }

    fn handle(&mut self, ev: Event, pos: Pos, origin: Origin) -> Result<(), YamlError> {
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    return Err(error(
                        pos,
                        "a second YAML document starts here; a pipeline file holds one \
                         (remove the `---` or split the file)",
                    ));
                }
                Ok(())
            }
            Event::Alias(id) => self.alias(id, pos, origin),
            Event::Scalar(text, style, anchor, tag) => {
                let wanted = scalar::wanted(tag.as_ref()).map_err(|m| error(pos, m))?;
                let node = scalar::resolve(&text, style, wanted).map_err(|m| error(pos, m))?;
                let merge = wanted == Wanted::Merge
                    || (wanted == Wanted::Untagged && style == TScalarStyle::Plain && text == "<<");
                if anchor > 0
                    && let Origin::File { at, .. } = origin
                {
                    let a = Anchor {
                        start: at,
                        end: at + 1,
                        values: 1,
                        pos,
                    };
                    self.anchors.insert(anchor, a);
                }
                self.push(Marked::new(node, pos), merge)
            }
            Event::SequenceStart(anchor, tag) => {
                let kind = Kind::Seq(Vec::new());
                self.open(kind, anchor, tag, pos, origin)
            }
            Event::MappingStart(anchor, tag) => {
                let kind = Kind::Map(MapFrame::default());
                self.open(kind, anchor, tag, pos, origin)
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(origin),
            _ => Ok(()),
        }
    }

    fn open(
        &mut self,
        kind: Kind,
        anchor: usize,
        tag: Option<yaml_rust2::parser::Tag>,
        pos: Pos,
        origin: Origin,
    ) -> Result<(), YamlError> {
        let what = match kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        };
        let fits = match scalar::wanted(tag.as_ref()).map_err(|m| error(pos, m))? {
            Wanted::Untagged | Wanted::NonSpecific => true,
            Wanted::Seq => matches!(kind, Kind::Seq(_)),
            Wanted::Map => matches!(kind, Kind::Map(_)),
            _ => false,
        };
        if !fits {
            let tag = tag.map(|t| scalar::written(&t)).unwrap_or_default();
            return Err(error(pos, format!("the tag `{tag}` cannot tag {what}")));
        }
        if self.stack.len() >= MAX_DEPTH {
            let via = match &origin {
                Origin::Replay(name) => format!(" (with what alias `*{name}` brings in)"),
                Origin::File { .. } => String::new(),
            };
            return Err(error(
                pos,
                format!(
                    "lists and mappings nested more than {MAX_DEPTH} levels deep{via}; \
                     pipe reads at most {MAX_DEPTH}"
                ),
            ));
        }
        let (anchor, log_start, values_start) = match origin {
            Origin::File { at, values, .. } if anchor > 0 => {
                self.open_anchors += 1;
                (anchor, at, values)
            }
            _ => (0, 0, 0),
        };
        self.stack.push(Frame {
            pos,
            anchor,
            log_start,
            values_start,
            expanded_start: self.expanded,
            kind,
        });
        Ok(())
    }

    fn close(&mut self, origin: Origin) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Ok(()); // yaml-rust2 balances starts and ends
        };
        let node = match frame.kind {
            Kind::Seq(items) => Node::Seq(items),
            Kind::Map(m) => Node::Map(merge(m)?),
        };
        if frame.anchor > 0 {
            self.open_anchors -= 1;
            if let Origin::File { at, values, .. } = origin {
                let a = Anchor {
                    start: frame.log_start,
                    end: at + 1,
                    values: values - frame.values_start + self.expanded - frame.expanded_start,
                    pos: frame.pos,
                };
                self.anchors.insert(frame.anchor, a);
            }
        }
        self.push(Marked::new(node, frame.pos), false)
    }

    fn alias(&mut self, id: usize, pos: Pos, origin: Origin) -> Result<(), YamlError> {
        let (name, charge) = match origin {
            Origin::File { index, .. } => (self.name_at(index), true),
            Origin::Replay(name) => (name, false),
        };
        let Some(anchor) = self.anchors.get(&id) else {
            // yaml-rust2 knows the anchor, so it is still open: the alias is inside it.
            let at = self
                .stack
                .iter()
                .find(|f| f.anchor == id)
                .map(|f| format!(" (at {})", f.pos))
                .unwrap_or_default();
            return Err(error(
                pos,
                format!(
                    "alias `*{name}` is inside the node its anchor `&{name}`{at} marks; a \
                     value cannot contain itself"
                ),
            ));
        };
        if charge {
            self.expanded += anchor.values;
        }
        if self.expanded > MAX_ALIAS_VALUES {
            return Err(error(
                pos,
                format!(
                    "aliases copy more than {MAX_ALIAS_VALUES} values into this file (here \
                     `*{name}`, anchor `&{name}` at {}: {} values); aliases inside anchors \
                     multiply, as in a \"billion laughs\" file",
                    anchor.pos, anchor.values
                ),
            ));
        }
        if charge {
            self.aliases.push(AliasSite {
                pos,
                name: name.clone(),
                anchor: anchor.pos,
            });
        }
        let replay = Replay {
            next: anchor.start,
            end: anchor.end,
            pos,
            name,
        };
        self.replays.push(replay);
        Ok(())
    }

    fn push(&mut self, v: Marked, merge: bool) -> Result<(), YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(v);
            return Ok(());
        };
        match &mut frame.kind {
            Kind::Seq(items) => items.push(v),
            Kind::Map(m) => match m.key.take() {
                None => m.key = Some((v, merge)),
                Some((k, is_merge)) => {
                    let id = key_id(&k);
                    if let Some(first) = m.seen.get(&id) {
                        return Err(error(
                            k.pos,
                            format!(
                                "duplicate key `{}` (first at line {})",
                                quote(&super::key_string(&k)),
                                first.line
                            ),
                        ));
                    }
                    m.seen.insert(id, k.pos);
                    if is_merge {
                        m.merges.push(m.entries.len());
                    }
                    m.entries.push((k, v));
                }
            },
        }
        Ok(())
    }

    /// The alias name written at character `index` (the `*`), cut for messages.
    fn name_at(&mut self, index: usize) -> String {
        let text = self.text;
        let byte = if text.is_ascii() {
            index
        } else {
            let marks = self
                .char_marks
                .get_or_insert_with(|| text.char_indices().step_by(1024).map(|(b, _)| b).collect());
            let start = marks.get(index / 1024).copied().unwrap_or(text.len());
            text[start..]
                .char_indices()
                .nth(index % 1024)
                .map_or(text.len(), |(b, _)| start + b)
        };
        let name: String = text
            .get(byte..)
            .unwrap_or("")
            .chars()
            .skip(1)
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
            .take(MAX_ECHO_CHARS + 1)
            .collect();
        quote(&name)
    }

    /// A scanner or parser error, its message made plainer where it is one of ours to explain.
    fn syntax_error(&mut self, e: &ScanError) -> YamlError {
        let message = match e.info() {
            "recursion limit exceeded" => {
                "`[` and `{` nested more than 255 levels deep; pipe reads at most 255".to_string()
            }
            "while parsing node, found unknown anchor" => {
                let name = self.name_at(e.marker().index());
                format!(
                    "alias `*{name}` has no anchor: `&{name}` must mark a value earlier in the \
                     same file"
                )
            }
            other => other.to_string(),
        };
        error((*e.marker()).into(), message)
    }
}

/// A key's identity: equal keys (by [`Node`]'s equality) have equal identities.
fn key_id(k: &Marked) -> String {
    match &k.node {
        Node::NonFinite(s) => format!("~{s}"),
        _ => k.to_json().to_string(),
    }
}

/// A mapping's entries with its `<<` entries replaced by the entries they merge (YAML 1.1):
/// keys written in the mapping win over merged ones, and of `<<: [*a, *b]` the earlier wins.
fn merge(m: MapFrame) -> Result<Vec<(Marked, Marked)>, YamlError> {
    if m.merges.is_empty() {
        return Ok(m.entries);
    }
    let mut taken: HashSet<String> = m
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| !m.merges.contains(i))
        .map(|(_, (k, _))| key_id(k))
        .collect();
    let mut out = Vec::with_capacity(m.entries.len());
    for (i, (k, v)) in m.entries.into_iter().enumerate() {
        if !m.merges.contains(&i) {
            out.push((k, v));
            continue;
        }
        for source in merge_sources(v)? {
            for (mk, mv) in source {
                if taken.insert(key_id(&mk)) {
                    out.push((mk, mv));
                }
            }
        }
    }
    Ok(out)
}

/// The mappings a `<<` value merges, in order.
fn merge_sources(v: Marked) -> Result<Vec<Vec<(Marked, Marked)>>, YamlError> {
    let what = v.type_name();
    match v.node {
        Node::Map(entries) => Ok(vec![entries]),
        Node::Seq(items) => items
            .into_iter()
            .map(|item| {
                let what = item.type_name();
                match item.node {
                    Node::Map(entries) => Ok(entries),
                    _ => Err(error(
                        item.pos,
                        format!("`<<` merges mappings; this item of its list is {what}"),
                    )),
                }
            })
            .collect(),
        _ => Err(error(
            v.pos,
            format!("`<<` (a merge key) takes a mapping or a list of mappings, got {what}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use serde_json::json;

    /// (YAML, the resolved document as JSON).
    const RESOLVED: &[(&str, &str)] = &[
        ("a: &a 5\nb: *a\n", r#"{"a": 5, "b": 5}"#),
        (
            "a: &a [1, {k: v}]\nb: *a\n",
            r#"{"a": [1, {"k": "v"}], "b": [1, {"k": "v"}]}"#,
        ),
        ("a: &a 1\nb: &a 2\nc: *a\n", r#"{"a": 1, "b": 2, "c": 2}"#),
        (
            "d: &d {lr: 1, b: 2}\nx: {<<: *d, b: 3}\ny: {b: 3, <<: *d}\n",
            r#"{"d": {"lr": 1, "b": 2}, "x": {"lr": 1, "b": 3}, "y": {"b": 3, "lr": 1}}"#,
        ),
        (
            "a: &a {k: 1}\nb: &b {k: 2, j: 2}\nx: {<<: [*a, *b]}\n",
            r#"{"a": {"k": 1}, "b": {"k": 2, "j": 2}, "x": {"k": 1, "j": 2}}"#,
        ),
        (
            "a: &a {k: 1}\nb: &b {<<: *a, j: 2}\nx:\n  <<: *b\n  k: 3\n",
            r#"{"a": {"k": 1}, "b": {"k": 1, "j": 2}, "x": {"k": 3, "j": 2}}"#,
        ),
        ("x: {<<: {k: 1}, j: 2}\n", r#"{"x": {"k": 1, "j": 2}}"#),
        ("x: {'<<': 1}\n", r#"{"x": {"<<": 1}}"#),
        ("x: {!!merge <<: {k: 1}}\n", r#"{"x": {"k": 1}}"#),
        ("a: !!float 0.1\n", r#"{"a": 0.1}"#),
        ("a: !!float 1\n", r#"{"a": 1.0}"#),
        ("a: !!str 1\n", r#"{"a": "1"}"#),
        ("a: !!int '7'\n", r#"{"a": 7}"#),
        ("a: !!int 0o17\n", r#"{"a": 15}"#),
        ("a: !!bool 'true'\n", r#"{"a": true}"#),
        ("a: !!null ''\n", r#"{"a": null}"#),
        ("a: ! 12\n", r#"{"a": "12"}"#),
        ("a: !<tag:yaml.org,2002:float> 0.5\n", r#"{"a": 0.5}"#),
        (
            "a: !!seq [1]\nb: !!map {k: 1}\n",
            r#"{"a": [1], "b": {"k": 1}}"#,
        ),
        ("a: &x !!str 5\nb: *x\n", r#"{"a": "5", "b": "5"}"#),
    ];

    #[test]
    fn anchors_aliases_merges_and_tags_resolve() {
        for (yaml, want) in RESOLVED {
            let got = parse(yaml).unwrap_or_else(|e| panic!("{yaml:?}: {e:?}"));
            let want: serde_json::Value = serde_json::from_str(want).unwrap();
            assert_eq!(got.to_json(), want, "{yaml:?}");
        }
        let t = parse("a: !!float .inf\n").unwrap();
        assert_eq!(t.get("a").unwrap().1.node, Node::NonFinite(".inf".into()));
    }

    fn deep(prefix: &str, n: usize, suffix: &str) -> String {
        format!("{}{suffix}", prefix.repeat(n))
    }

    fn laughs() -> String {
        let mut y = "a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
        for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d")] {
            let items = vec![format!("*{prev}"); 10].join(", ");
            y.push_str(&format!("{name}: &{name} [{items}]\n"));
        }
        y
    }

    #[test]
    fn problems_have_positions_and_plain_messages() {
        let nested_maps: String = (0..300)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let list = deep("[", 200, &format!("1{}", "]".repeat(200)));
        let deep_anchor = format!("a: &a {list}\nb:\n{}\n", deep("- ", 100, "*a"));
        // (YAML, line, column, what the message says)
        let cases: Vec<(String, usize, usize, &str)> = vec![
            (
                deep("- ", 20_000, "x"),
                1,
                513,
                "nested more than 256 levels deep",
            ),
            (
                deep("[", 20_000, ""),
                1,
                256,
                "nested more than 255 levels deep",
            ),
            (
                deep("{a: ", 20_000, ""),
                1,
                1021,
                "nested more than 255 levels deep",
            ),
            (nested_maps, 257, 261, "nested more than 256 levels deep"),
            (deep_anchor, 3, 201, "with what alias `*a` brings in"),
            (laughs(), 5, 36, "more than 100000 values"),
            (
                "a: &a [1, *a]\n".into(),
                1,
                11,
                "alias `*a` is inside the node its anchor `&a`",
            ),
            (
                "a: 1\nb: *nope\n".into(),
                2,
                4,
                "alias `*nope` has no anchor",
            ),
            (
                "x: {<<: 1}\n".into(),
                1,
                9,
                "`<<` (a merge key) takes a mapping or a list",
            ),
            (
                "a: &a 1\nx: {<<: [{k: 1}, *a]}\n".into(),
                2,
                18,
                "this item of its list is an integer",
            ),
            (
                "a: !!binary abc\n".into(),
                1,
                13,
                "unsupported tag `!!binary`",
            ),
            ("a: !local x\n".into(), 1, 11, "unsupported tag `!local`"),
            ("a: !!int x\n".into(), 1, 10, "`!!int` needs an integer"),
            (
                "a: !!float abc\n".into(),
                1,
                12,
                "`!!float` needs a number, got `abc`",
            ),
            (
                "a: !!bool yes\n".into(),
                1,
                11,
                "`!!bool` needs true or false",
            ),
            ("a: !!null x\n".into(), 1, 11, "`!!null` needs null"),
            (
                "a: !!str [1]\n".into(),
                1,
                10,
                "the tag `!!str` cannot tag a list",
            ),
            (
                "a: !!merge x\n".into(),
                1,
                12,
                "`!!merge` tags the merge key `<<` only",
            ),
            (
                "a: 1\na: 2\n".into(),
                2,
                1,
                "duplicate key `a` (first at line 1)",
            ),
            ("a: {1: x, 1: y}\n".into(), 1, 11, "duplicate key `1`"),
        ];
        for (yaml, line, col, want) in &cases {
            let shown = crate::quote::quote(yaml);
            let e = parse(yaml).expect_err(&shown);
            assert!(e.message.contains(want), "{shown}: {e:?}");
            assert_eq!(
                e.pos,
                Pos {
                    line: *line,
                    col: *col
                },
                "{shown}: {e:?}"
            );
        }
    }

    #[test]
    fn values_an_alias_brings_in_carry_its_position() {
        let p = super::super::parse_document("d: &d {lr: 1}\nx:\n  <<: *d\n  b: 2\n").unwrap();
        let x = p.tree.get("x").unwrap().1;
        assert_eq!(x.locate_key("", "lr"), Pos { line: 3, col: 7 });
        assert_eq!(x.locate_key("", "b"), Pos { line: 4, col: 3 });
        assert_eq!(
            p.aliases,
            [AliasSite {
                pos: Pos { line: 3, col: 7 },
                name: "d".into(),
                anchor: Pos { line: 1, col: 7 },
            }]
        );
        assert_eq!(x.to_json(), json!({"lr": 1, "b": 2}));
    }

    #[test]
    fn alias_names_are_found_in_non_ascii_text() {
        let filler: String = (0..3000).map(|i| format!("ö{i}: 1\n")).collect();
        let yaml = format!("é: &ünï {{k: 1}}\n{filler}x: *ünï\ny: *nö\n");
        let e = parse(&yaml).unwrap_err();
        assert!(e.message.contains("alias `*nö` has no anchor"), "{e:?}");
        let ok = yaml.replace("y: *nö\n", "");
        let p = super::super::parse_document(&ok).unwrap();
        assert_eq!(p.aliases[0].name, "ünï");
    }
}
