//! A stage key: blake3 over a serialised struct of everything that determines the output.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumping this invalidates every cache entry (a change of the key or object format).
/// 2: keys name the implementation (burn, backend, decoders); outputs hold no timings.
pub const CACHE_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageKey {
    pub format: u32,
    pub kind: String,
    /// The stage implementation's version.
    pub version: u32,
    /// External code that decides the output bytes → its version (burn, the backend, the image
    /// decoders); see `StageConfig::implementation`. Absent in format-1 keys.
    #[serde(default)]
    pub implementation: BTreeMap<String, String>,
    /// Canonical configuration, defaults applied (serde_json maps are ordered: BTreeMap).
    pub config: serde_json::Value,
    /// Input slot → output digest of the producing stage.
    pub inputs: BTreeMap<String, String>,
    /// External file role → digest of the files' contents (sources only).
    pub files: BTreeMap<String, String>,
}

impl StageKey {
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a key serialises");
        blake3::hash(&bytes).to_hex().to_string()
    }

    /// The digest of this key without the configuration fields `fields`: stages whose keys
    /// differ only there form a family whose members may continue each other's scratch (a
    /// training stopped early, continued by one with more epochs). `None` without fields.
    pub fn family_digest(&self, fields: &[&str]) -> Option<String> {
        if fields.is_empty() {
            return None;
        }
        let mut k = self.clone();
        if let serde_json::Value::Object(m) = &mut k.config {
            for f in fields {
                m.remove(*f);
            }
        }
        Some(format!("family-{}", k.digest()))
    }

    /// Human-readable differences from an older key (for `pipe why` and `pipe status`).
    pub fn diff(&self, old: &StageKey) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != old.format {
            out.push(format!("cache format {} → {}", old.format, self.format));
        }
        if self.kind != old.kind {
            out.push(format!("kind {} → {}", old.kind, self.kind));
        }
        if self.version != old.version {
            out.push(format!(
                "{} implementation version {} → {}",
                self.kind, old.version, self.version
            ));
        }
        let names: std::collections::BTreeSet<&String> = old
            .implementation
            .keys()
            .chain(self.implementation.keys())
            .collect();
        for name in names {
            let (o, n) = (old.implementation.get(name), self.implementation.get(name));
            if o != n {
                let show = |v: Option<&String>| v.map_or("(none)", String::as_str).to_string();
                out.push(format!(
                    "implementation `{name}`: {} → {}",
                    show(o),
                    show(n)
                ));
            }
        }
        diff_json("", &old.config, &self.config, &mut out);
        for (slot, d) in &self.inputs {
            match old.inputs.get(slot) {
                Some(o) if o == d => {}
                Some(o) => out.push(format!(
                    "input `{slot}` changed ({} → {})",
                    short(o),
                    short(d)
                )),
                None => out.push(format!("input `{slot}` added")),
            }
        }
        for slot in old.inputs.keys().filter(|s| !self.inputs.contains_key(*s)) {
            out.push(format!("input `{slot}` removed"));
        }
        for (role, d) in &self.files {
            if old.files.get(role) != Some(d) {
                out.push(format!("source files ({role}) changed"));
            }
        }
        out
    }
}

/// The first 12 characters (an old key read from a run record may hold anything: never slice
/// it at a byte index).
fn short(d: &str) -> String {
    d.chars().take(12).collect()
}

fn diff_json(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_json(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("field `{path}`: {a} → {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(lr: f64) -> StageKey {
        StageKey {
            format: CACHE_FORMAT,
            kind: "train".into(),
            version: 1,
            implementation: BTreeMap::from([("burn".to_string(), "0.22.1".to_string())]),
            config: serde_json::json!({"lr": lr, "epochs": 3}),
            inputs: BTreeMap::from([("data".to_string(), "ab".repeat(32))]),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn keys_that_differ_only_in_extendable_fields_share_a_family() {
        let mut longer = key(1e-3);
        longer.config["epochs"] = serde_json::json!(9);
        assert_ne!(longer.digest(), key(1e-3).digest());
        let family = |k: &StageKey| k.family_digest(&["epochs"]).unwrap();
        assert_eq!(family(&longer), family(&key(1e-3)));
        assert_ne!(family(&key(1e-4)), family(&key(1e-3)));
        assert_ne!(family(&key(1e-3)), key(1e-3).digest());
        assert_eq!(key(1e-3).family_digest(&[]), None);
    }

    #[test]
    fn a_field_change_changes_the_digest_and_is_named() {
        assert_eq!(key(1e-3).digest(), key(1e-3).digest());
        assert_ne!(key(1e-3).digest(), key(1e-4).digest());
        let d = key(1e-4).diff(&key(1e-3));
        assert_eq!(d, vec!["field `lr`: 0.001 → 0.0001".to_string()]);
    }

    #[test]
    fn an_implementation_change_changes_the_digest_and_is_named() {
        let mut new = key(1e-3);
        new.implementation
            .insert("burn".to_string(), "0.23.0".to_string());
        new.implementation
            .insert("backend".to_string(), "flex".to_string());
        assert_ne!(new.digest(), key(1e-3).digest());
        assert_eq!(
            new.diff(&key(1e-3)),
            vec![
                "implementation `backend`: (none) → flex".to_string(),
                "implementation `burn`: 0.22.1 → 0.23.0".to_string(),
            ]
        );
        // A format-1 key (no implementation) still reads, and differs.
        let mut old = serde_json::to_value(key(1e-3)).unwrap();
        old.as_object_mut().unwrap().remove("implementation");
        let old: StageKey = serde_json::from_value(old).unwrap();
        assert!(old.implementation.is_empty());
    }

    #[test]
    fn a_damaged_old_key_is_described_without_panicking() {
        let mut old = key(1e-3);
        old.inputs.insert("data".into(), "aé".repeat(20));
        let d = key(1e-3).diff(&old);
        assert_eq!(
            d,
            vec![format!(
                "input `data` changed (aéaéaéaéaéaé → {})",
                "ab".repeat(6)
            )]
        );
    }
}
