//! `${…}` references in a command stage's `cmd`: `${params.NAME}`, `${deps.DEP}` (a dep as
//! written in `deps`) and `${out}`. `$${` writes a literal `${`; any other `$` or `${…}` is left
//! alone, so a shell command may still read `$PIPE_OUT` or `${HOME:-/tmp}` itself.

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

/// The pieces of `template`. A `${…}` that is none of pipe's references (`${HOME}`,
/// `${X:-default}`, an unclosed `${`) is text, left to the shell.
pub fn parse(template: &str) -> Vec<Piece<'_>> {
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
            continue;
        }
        // `$` is ASCII: `i` is then a character boundary.
        let found = (bytes[i] == b'$')
            .then(|| &template[i..])
            .and_then(|body| body.strip_prefix("${"))
            .and_then(|b| Some((b.find('}')?, b)))
            .and_then(|(end, b)| Some((end, reference(&b[..end])?)));
        match found {
            Some((end, r)) => {
                pieces.push(Piece::Text(&template[text..i]));
                pieces.push(Piece::Ref(r));
                i += 2 + end + 1;
                text = i;
            }
            None => i += 1,
        }
    }
    pieces.push(Piece::Text(&template[text..]));
    pieces.retain(|p| *p != Piece::Text(""));
    pieces
}

fn reference(name: &str) -> Option<Ref<'_>> {
    match name.split_once('.') {
        _ if name == "out" => Some(Ref::Out),
        Some(("params", p)) if !p.is_empty() => Some(Ref::Param(p)),
        Some(("deps", d)) if !d.is_empty() => Some(Ref::Dep(d)),
        _ => None,
    }
}

/// `template` with every reference replaced by `value(reference)`.
pub fn expand(template: &str, value: impl Fn(&Ref) -> String) -> String {
    let mut s = String::new();
    for p in parse(template) {
        match p {
            Piece::Text(t) => s.push_str(t),
            Piece::Ref(r) => s.push_str(&value(&r)),
        }
    }
    s
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
            expand(t, show),
            "python3 <d:scripts/a.py> --lr=<p:lr> -o <out>/x $PIPE_OUT $HOME"
        );
    }

    #[test]
    fn a_doubled_dollar_escapes() {
        assert_eq!(expand("echo $${x} ${out}", show), "echo ${x} <out>");
        assert_eq!(expand("$${out}", show), "${out}");
    }

    #[test]
    fn other_braces_are_the_shells() {
        for t in [
            "${HOME} ${X:-none}",
            "a ${params.lr",
            "${param.lr}",
            "${params.}",
            "é${",
        ] {
            assert_eq!(expand(t, show), t);
        }
        assert_eq!(expand("${X:-${out}}", show), "${X:-<out>}");
    }
}
