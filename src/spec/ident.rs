//! Stage ids and pipeline names: a conservative character set, checked at validation.
//!
//! Ids name cache work directories, run records and figure titles; an id such as
//! `../../victim` once let `run` delete a directory outside the cache. Whatever the cache does
//! on its side, an id that could be read as a path (or that a shell or terminal would mangle)
//! never validates.

use crate::quote::quote;

/// Longest accepted stage id or pipeline name, in bytes.
pub const MAX_IDENT_LEN: usize = 64;

/// `Ok` when `s` matches `[A-Za-z0-9_][A-Za-z0-9_.-]*`, holds no `..` and is at most
/// [`MAX_IDENT_LEN`] bytes; otherwise why not (the value echoed safely).
pub fn check(what: &str, s: &str) -> Result<(), String> {
    let rule = "letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_`";
    let bad = |why: String| Err(format!("invalid {what} `{}`: {why}", quote(s)));
    if s.is_empty() {
        return bad(format!("empty; use {rule}"));
    }
    if s.len() > MAX_IDENT_LEN {
        return bad(format!(
            "{} bytes, longer than the maximum of {MAX_IDENT_LEN}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| !is_ident_char(*c)) {
        return bad(format!("`{}` is not allowed; use {rule}", c.escape_debug()));
    }
    if s.starts_with(['-', '.']) {
        return bad(format!("must not start with `-` or `.`; use {rule}"));
    }
    if s.contains("..") {
        return bad("must not contain `..`".into());
    }
    Ok(())
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// A valid pipeline name derived from a file stem (the default `name`): characters outside the
/// set become `_`, `..` becomes `_.`, and the result is cut to [`MAX_IDENT_LEN`] bytes.
pub fn from_stem(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| if is_ident_char(c) { c } else { '_' })
        .take(MAX_IDENT_LEN)
        .collect();
    while s.contains("..") {
        s = s.replace("..", "_.");
    }
    if s.is_empty() || s.starts_with(['-', '.']) {
        s.insert(0, '_');
        s.truncate(MAX_IDENT_LEN);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        for ok in [
            "a",
            "train_b3",
            "B3-final",
            "v1.2",
            "_x",
            "0",
            &"a".repeat(64),
        ] {
            assert_eq!(check("stage id", ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_blanks_and_oddities() {
        for (bad, why) in [
            ("", "empty"),
            (" ", "` ` is not allowed"),
            ("/", "`/` is not allowed"),
            ("../x", "`/` is not allowed"),
            ("..", "must not start"),
            ("a..b", "`..`"),
            (".hidden", "must not start"),
            ("-rf", "must not start"),
            ("a\0b", "`\\0` is not allowed"),
            ("é", "`é` is not allowed"),
            (&"a".repeat(65), "65 bytes"),
        ] {
            let e = check("stage id", bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert!(e.starts_with("invalid stage id `"), "{e}");
        }
    }

    #[test]
    fn stems_become_valid_names() {
        for (stem, name) in [
            ("b3", "b3"),
            ("my pipeline", "my_pipeline"),
            ("..", "_."),
            (".x", "_.x"),
            ("", "_"),
            ("données", "donn_es"),
        ] {
            assert_eq!(from_stem(stem), name);
            assert_eq!(check("name", &from_stem(stem)), Ok(()), "{stem}");
        }
        assert_eq!(from_stem(&"x".repeat(100)).len(), MAX_IDENT_LEN);
    }
}
