//! Digests read back from disk (key files, run records, manifests, ensemble files) become paths
//! under `objects/`; a damaged or hostile file must never turn `../../x` into a path. Every such
//! field is checked here, at deserialisation, to be exactly 64 lowercase hex characters.

use serde::{Deserialize, Deserializer};

/// Length of a blake3 digest in hex.
pub const HEX_LEN: usize = 64;

/// True when `s` is a digest as pipe writes it: 64 lowercase hex characters.
pub fn is_digest(s: &str) -> bool {
    s.len() == HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A value that was expected to be a digest, shown escaped and truncated (it may be anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a digest (64 lowercase hex characters)", shown(.0))]
pub struct NotADigest(pub String);

/// At most 80 characters of `s`, escaped, for messages.
pub fn shown(s: &str) -> String {
    let mut cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

pub fn check(s: &str) -> Result<&str, NotADigest> {
    if is_digest(s) {
        Ok(s)
    } else {
        Err(NotADigest(s.to_string()))
    }
}

/// `#[serde(deserialize_with = "digest::de")]` on a `String` field.
pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

/// `#[serde(default, deserialize_with = "digest::de_opt")]` on an `Option<String>` field.
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    if let Some(s) = &s {
        check(s).map_err(serde::de::Error::custom)?;
    }
    Ok(s)
}

/// `#[serde(default, deserialize_with = "digest::de_vec")]` on a `Vec<String>` field.
pub fn de_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for s in &v {
        check(s).map_err(serde::de::Error::custom)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_lowercase_hex_characters_are_digests() {
        assert!(is_digest(&"a1".repeat(32)));
        for bad in [
            "",
            "../../victim3",
            &"A1".repeat(32),
            &"a1".repeat(31),
            &"a1".repeat(33),
            &format!("{}/", "a".repeat(63)),
            &format!("{}é", "a".repeat(62)),
        ] {
            assert!(!is_digest(bad), "{bad}");
        }
        let e = check("../../victim3").unwrap_err().to_string();
        assert!(e.contains("\"../../victim3\" is not a digest"), "{e}");
        assert!(check(&"x".repeat(10_000)).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn deserialising_a_bad_digest_fails() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "de")]
            _d: String,
        }
        let err = serde_json::from_str::<T>(r#"{"_d": "../../victim3"}"#).unwrap_err();
        assert!(err.to_string().contains("not a digest"), "{err}");
        serde_json::from_str::<T>(&format!(r#"{{"_d": "{}"}}"#, "0f".repeat(32))).unwrap();
    }
}
