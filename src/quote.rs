//! Echoing user-supplied text in messages safely: a 1 MB bad value or a line of binary garbage
//! must not flood the terminal or write raw control bytes (NUL, escapes) into it. Everything a
//! message repeats from a file, a YAML value or a `--set` goes through [`quote`]. The
//! "did you mean" hints of messages ([`hint`]) live here too, below every layer that words errors.

/// Characters of echoed text kept before the ellipsis.
pub const MAX_ECHO_CHARS: usize = 80;

/// `s` with control characters escaped (`\0`, `\n`, `\u{1b}`) and cut after
/// [`MAX_ECHO_CHARS`] characters with "…".
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_ECHO_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '\u{feff}' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Like [`quote`] for bytes that may not be UTF-8: invalid bytes become `\xNN`.
pub fn quote_bytes(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        for b in chunk.invalid() {
            text.push_str(&format!("\\x{b:02X}"));
        }
        if text.chars().count() > MAX_ECHO_CHARS {
            break;
        }
    }
    // `\xNN` escapes are already printable: quote() leaves them, escapes the rest and cuts.
    quote(&text)
}

/// A path for messages: its name escaped as [`quote_bytes`] does when it is not UTF-8, so a
/// file called `a\xFF.png` is reported as that rather than as a lossy `a�.png` that does not
/// exist. Paths are not truncated (they are ours to show in full).
pub fn path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    match p.to_str() {
        Some(s) => s.to_string(),
        None => {
            let mut out = String::new();
            for chunk in p.as_os_str().as_bytes().utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            out
        }
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, c)| *score > 0.8 || strsim::levenshtein(word, c) <= (c.len() / 3).max(1))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// ", did you mean `x`?" or "".
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_controls_and_truncates() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a\0b\n"), "a\\0b\\n");
        assert_eq!(quote("\u{feff}x"), "\\u{feff}x");
        let long = "x".repeat(1_000_000);
        let q = quote(&long);
        assert_eq!(q.chars().count(), MAX_ECHO_CHARS + 1);
        assert!(q.ends_with('…'));
    }

    #[test]
    fn quote_bytes_shows_invalid_utf8_as_hex() {
        assert_eq!(quote_bytes(b"ok\xff\x00"), "ok\\xFF\\0");
        assert!(quote_bytes(&[0xffu8; 10_000]).ends_with('…'));
    }

    #[test]
    fn non_utf8_paths_are_escaped_not_lossy() {
        use std::os::unix::ffi::OsStrExt;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"dir/a\xff.png"));
        assert_eq!(path(p), "dir/a\\xFF.png");
    }
}
