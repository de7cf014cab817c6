//! `${…}` references in a command stage's `cmd`: `${params.NAME}`, `${deps.DEP}` (a dep as
//! written in `deps`) and `${out}`. `$${` writes a literal `${`; any other `$` is left alone, so
//! a shell command may still read `$PIPE_OUT` or `$HOME` itself.

/// One `${…}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref<'a> {
    Param(&'a str),
    Dep(&'a str),
    Out,
}

/// A piece of a template: literal text or a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Ref(Ref<'a>),
}

/// The pieces of `template`, or why it cannot be read (an unclosed `${`, an unknown name).
pub fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let bytes = template.as_bytes();
    let mut pieces = Vec::new();
    let (mut i, mut text) = (0, 0);
    // Slices start and end at ASCII `$`, `{` or `}` only: always character boundaries.
    while i < bytes.len() {
        if bytes[i..].starts_with(b"$${") {
            pieces.push(Piece::Text(&template[text..i]));
            pieces.push(Piece::Text(&template[i + 1..i + 3]));
            i += 3;
            text = i;
        } else if bytes[i..].starts_with(b"${") {
            pieces.push(Piece::Text(&template[text..i]));
            let body = &template[i + 2..];
            let Some(end) = body.find('}') else {
                return Err(format!(
                    "unclosed `${{` in `{}`",
                    crate::quote::quote(template)
                ));
            };
            pieces.push(Piece::Ref(reference(&body[..end])?));
            i += 2 + end + 1;
            text = i;
        } else {
            i += 1;
        }
    }
    pieces.push(Piece::Text(&template[text..]));
    pieces.retain(|p| *p != Piece::Text(""));
    Ok(pieces)
}

fn reference(name: &str) -> Result<Ref<'_>, String> {
    match name.split_once('.') {
        _ if name == "out" => Ok(Ref::Out),
        Some(("params", p)) if !p.is_empty() => Ok(Ref::Param(p)),
        Some(("deps", d)) if !d.is_empty() => Ok(Ref::Dep(d)),
        _ => Err(format!(
            "unknown reference `${{{}}}`: use `${{params.NAME}}`, `${{deps.DEP}}` or `${{out}}`",
            crate::quote::quote(name)
        )),
    }
}

/// `template` with every reference replaced by `value(reference)` (checked by [`parse`] at
/// validation, so an unreadable template here is an internal error reported as text).
pub fn expand(template: &str, value: impl Fn(&Ref) -> String) -> Result<String, String> {
    let mut s = String::new();
    for p in parse(template)? {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Ref(r) => s.push_str(&value(&r)),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(r: &Ref) -> String {
        match r {
            Ref::Param(p) => format!("<p:{p}>"),
            Ref::Dep(d) => format!("<d:{d}>"),
            Ref::Out => "<out>".into(),
        }
    }

    #[test]
    fn references_expand_and_other_dollars_stay() {
        let t = "python3 ${deps.scripts/a.py} --lr=${params.lr} -o ${out}/x $PIPE_OUT $HOME";
        assert_eq!(
            expand(t, show).unwrap(),
            "python3 <d:scripts/a.py> --lr=<p:lr> -o <out>/x $PIPE_OUT $HOME"
        );
    }

    #[test]
    fn a_doubled_dollar_escapes() {
        assert_eq!(
            expand("echo $${x} ${out}", show).unwrap(),
            "echo ${x} <out>"
        );
        assert_eq!(expand("$${out}", show).unwrap(), "${out}");
    }

    #[test]
    fn bad_references_are_named() {
        assert!(parse("a ${params.lr").unwrap_err().contains("unclosed"));
        let e = parse("${param.lr}").unwrap_err();
        assert!(e.contains("unknown reference `${param.lr}`"), "{e}");
        assert!(parse("${params.}").is_err());
    }
}
