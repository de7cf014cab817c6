//! Scalars: YAML 1.2 core-schema resolution of plain scalars, and the core-schema tags
//! (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`) that force a type.

use super::Node;
use crate::quote::quote;
use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::TScalarStyle;

/// The prefix `!!` stands for (unless a `%TAG` directive changes it).
const CORE: &str = "tag:yaml.org,2002:";

/// What a tag asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// No tag: plain scalars resolve by their text, quoted ones are strings.
    Untagged,
    /// The non-specific `!`: a string, however it is written.
    NonSpecific,
    Str,
    Int,
    Float,
    Bool,
    Null,
    Seq,
    Map,
    /// `!!merge`, only on a `<<` key.
    Merge,
}

/// The tag as written, for messages (`!!float`, `!local`, `!<tag:…>`).
pub(super) fn written(tag: &Tag) -> String {
    let text = if tag.handle == CORE {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else if tag.handle.is_empty() {
        format!("!<{}>", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    };
    quote(&text)
}

/// What `tag` asks for, or the message refusing it.
pub(super) fn wanted(tag: Option<&Tag>) -> Result<Wanted, String> {
    let Some(tag) = tag else {
        return Ok(Wanted::Untagged);
    };
    if tag.handle.is_empty() && tag.suffix == "!" {
        return Ok(Wanted::NonSpecific);
    }
    let core = match (tag.handle.as_str(), tag.suffix.as_str()) {
        (CORE, s) => Some(s),
        ("", s) => s.strip_prefix(CORE),
        _ => None,
    };
    Ok(match core {
        Some("str") => Wanted::Str,
        Some("int") => Wanted::Int,
        Some("float") => Wanted::Float,
        Some("bool") => Wanted::Bool,
        Some("null") => Wanted::Null,
        Some("seq") => Wanted::Seq,
        Some("map") => Wanted::Map,
        Some("merge") => Wanted::Merge,
        _ => {
            return Err(format!(
                "unsupported tag `{}`; pipe reads the core-schema tags !!str, !!int, !!float, \
                 !!bool and !!null (and !!seq, !!map)",
                written(tag)
            ));
        }
    })
}

/// A scalar's value under its tag (`tag` from [`wanted`]).
pub(super) fn resolve(text: &str, style: TScalarStyle, tag: Wanted) -> Result<Node, String> {
    let refuse = |name: &str, expected: &str| {
        Err(format!(
            "`!!{name}` needs {expected}, got `{}`",
            quote(text)
        ))
    };
    match tag {
        Wanted::Untagged if style == TScalarStyle::Plain => Ok(resolve_plain(text)),
        Wanted::Untagged | Wanted::NonSpecific | Wanted::Str => Ok(Node::Str(text.to_string())),
        Wanted::Int => match resolve_plain(text) {
            Node::Int(i) => Ok(Node::Int(i)),
            _ => match text.strip_prefix("0o").map(|o| i64::from_str_radix(o, 8)) {
                Some(Ok(i)) => Ok(Node::Int(i)),
                _ => refuse("int", "an integer between -2^63 and 2^63-1"),
            },
        },
        Wanted::Float => match resolve_plain(text) {
            n @ (Node::Float(_) | Node::NonFinite(_)) => Ok(n),
            Node::Int(i) => Ok(Node::Float(i as f64)),
            _ => refuse("float", "a number"),
        },
        Wanted::Bool => match resolve_plain(text) {
            n @ Node::Bool(_) => Ok(n),
            _ => refuse("bool", "true or false"),
        },
        Wanted::Null => match resolve_plain(text) {
            Node::Null => Ok(Node::Null),
            _ => refuse("null", "null, ~ or nothing"),
        },
        Wanted::Seq => Err("`!!seq` on a scalar; it tags a list".into()),
        Wanted::Map => Err("`!!map` on a scalar; it tags a mapping".into()),
        Wanted::Merge if text == "<<" => Ok(Node::Str(text.to_string())),
        Wanted::Merge => Err("`!!merge` tags the merge key `<<` only".into()),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub(super) fn resolve_plain(s: &str) -> Node {
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
    fn scalars_resolve_like_yaml_1_2() {
        assert_eq!(resolve_plain("1e-4"), Node::Float(1e-4));
        assert_eq!(resolve_plain("-3"), Node::Int(-3));
        assert_eq!(resolve_plain("0.595"), Node::Float(0.595));
        assert_eq!(resolve_plain("yes"), Node::Str("yes".into()));
        assert_eq!(resolve_plain("e5"), Node::Str("e5".into()));
        assert_eq!(resolve_plain("b3"), Node::Str("b3".into()));
    }

    #[test]
    fn non_finite_numbers_keep_their_text() {
        for s in [".inf", "-.inf", ".NaN", "1e400", "-1e400"] {
            assert_eq!(resolve_plain(s), Node::NonFinite(s.into()), "{s}");
        }
    }
}
