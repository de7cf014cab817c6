//! Records, from Cargo.lock, the versions of the crates whose code decides the bytes of stage
//! outputs (burn for every ML stage; the PNG and JPEG decoders and the resampler for folder
//! sources). They enter each stage's cache key (`src/stages/implementation.rs`), so upgrading
//! one of them invalidates exactly the outputs it may change, without anyone bumping a
//! `VERSION` by hand.

use std::fmt::Write as _;
use std::path::Path;

/// Crates named in stage keys; keep in sync with `src/stages/implementation.rs`.
const CRATES: &[&str] = &[
    "burn",
    "image",
    "png",
    "mozjpeg",
    "mozjpeg-sys",
    "smartcore",
    "forust-ml",
];

fn main() {
    println!("cargo::rerun-if-changed=Cargo.lock");
    println!("cargo::rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let lock = Path::new(&dir).join("Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the exact versions of burn and the image decoders enter the cache key; \
             build with the lock file (`cargo build --locked`)",
            lock.display()
        )
    });
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", lock.display()));
    let packages = table
        .get("package")
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = String::from(
        "/// (crate, version) from Cargo.lock for the crates that decide output bytes.\n\
         pub const CRATE_VERSIONS: &[(&str, &str)] = &[\n",
    );
    for name in CRATES {
        let mut versions: Vec<&str> = packages
            .iter()
            .filter(|p| p.get("name").and_then(toml::Value::as_str) == Some(name))
            .filter_map(|p| p.get("version").and_then(toml::Value::as_str))
            .collect();
        versions.sort_unstable();
        if versions.is_empty() {
            panic!("{}: no package `{name}`", lock.display());
        }
        writeln!(out, "    ({name:?}, {:?}),", versions.join("+")).expect("a String");
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let path = Path::new(&out_dir).join("crate_versions.rs");
    std::fs::write(&path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
