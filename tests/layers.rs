//! The layer rule of ARCHITECTURE.md, checked on every `cargo test`: each module of the `pipe`
//! crate imports only modules of the layers below it (so no module imports a higher one and no
//! two modules import each other); only the command layer prints for a person or picks an exit
//! code; and each crate of the workspace depends only on the crates below it. Read from the
//! sources as text (`crate::module` paths, macro calls, `Cargo.toml` dependencies), so a
//! forbidden import fails here with the file and line that brought it, before any review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `pipe` crate's modules, top layer first. A module may import any module of a later
/// layer, none of its own layer or an earlier one. (`cache`, `data`, `ml` and `remote` are the
/// workspace's crates, re-exported under these names.)
const LAYERS: &[&[&str]] = &[
    &["commands"],
    &["settings"],
    &["report"],
    &["sweep"],
    &["engine"],
    &["exec"],
    &["plan"],
    &["spec"],
    &["stages"],
    &["figures"],
    &["record"],
    &["graph", "quote", "testing"],
    &["remote"],
    &["ml"],
    &["data"],
    &["cache"],
];

/// The workspace's crates, top first, with the crates of the workspace each may depend on, and
/// dependencies that would break its layer (the cache and the data layer never link burn or
/// tokio; nothing below the root parses command lines).
const CRATES: &[(&str, &[&str], &[&str])] = &[
    (
        "pipe",
        &[
            "pipe-remote",
            "pipe-ml",
            "pipe-data",
            "pipe-cache",
            "pipe-fs",
        ],
        &[],
    ),
    ("pipe-remote", &["pipe-cache", "pipe-fs"], &["burn", "clap"]),
    ("pipe-ml", &["pipe-data", "pipe-fs"], &["tokio", "clap"]),
    ("pipe-data", &["pipe-fs"], &["burn", "tokio", "clap"]),
    ("pipe-cache", &["pipe-fs"], &["burn", "tokio", "clap"]),
    ("pipe-fs", &[], &["burn", "tokio", "clap"]),
];

/// Printing for a person and ending the process belong to the command layer and `main.rs`.
const COMMAND_ONLY: &[&str] = &[
    "outln!",
    "out!(",
    "errln!",
    "println!",
    "eprintln!",
    "print!(",
    "eprint!(",
    "process::exit",
    "EXIT_OK",
    "EXIT_INVALID",
    "EXIT_INTERNAL",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a line: without its `//` comment (a string holding `//` is cut too, which only
/// hides text, never adds any).
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or_default()
}

/// The top-level modules a file names through `crate::`, with the line of each: `crate::a::b`,
/// `crate::{a::b, c}` (also over several lines).
fn imports(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().map(code).collect();
    for (i, line) in lines.iter().enumerate() {
        let mut rest = *line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            // `$crate::` (macros) and `pipe_crate::` are not `crate::`.
            if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // The group may span lines: join until its brace closes.
                let mut joined = group.to_string();
                let mut j = i;
                while depth(&joined) > -1 && j + 1 < lines.len() {
                    j += 1;
                    joined.push(' ');
                    joined.push_str(lines[j]);
                }
                for item in top_items(&joined) {
                    out.push((item, i + 1));
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((name, i + 1));
            }
        }
    }
    out.retain(|(m, _)| !m.is_empty() && m != "self");
    out
}

/// How many more `{` than `}` (until the group's own closing brace makes it -1).
fn depth(s: &str) -> i32 {
    let mut d = 0;
    for c in s.chars() {
        match c {
            '{' => d += 1,
            '}' => {
                d -= 1;
                if d < 0 {
                    return -1;
                }
            }
            _ => {}
        }
    }
    d
}

/// The first path segment of each item of a `{…}` group (up to its closing brace).
fn top_items(group: &str) -> Vec<String> {
    let (mut d, mut cur, mut items) = (0, String::new(), Vec::new());
    for c in group.chars() {
        match c {
            '{' => d += 1,
            '}' if d == 0 => break,
            '}' => d -= 1,
            ',' if d == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .map(|i| {
            i.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The module a file of `src/` belongs to (`src/exec/local.rs` → `exec`), or none for the
/// crate root and the binary's own files.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "allocator")).then(|| name.to_string())
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

#[test]
fn every_import_points_down() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        let Some(own) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is in no layer of tests/layers.rs",
                f.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (target, line) in imports(&text) {
            if target == module {
                continue;
            }
            let at = format!("{}:{line}", f.strip_prefix(root()).unwrap().display());
            edges
                .entry((module.clone(), target.clone()))
                .or_insert(at.clone());
            match layer_of(&target) {
                Some(t) if t > own => {}
                Some(_) => wrong.push(format!(
                    "{at}: `{module}` imports `{target}`, which is not below it"
                )),
                None => wrong.push(format!("{at}: `{target}` is in no layer")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
    // The layers above make every cycle impossible; say so on the graph itself as well.
    assert_eq!(cycle(&edges), None, "modules that import each other");
}

/// One cycle of the module graph, if it has any.
fn cycle(edges: &BTreeMap<(String, String), String>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<(String, String), String>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(path[i..].to_vec());
        }
        if done.iter().any(|d| d == n) {
            return None;
        }
        path.push(n.to_string());
        for (a, b) in edges.keys() {
            if a == n
                && let Some(c) = visit(b, edges, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.push(n.to_string());
        None
    }
    let mut done = Vec::new();
    for (a, _) in edges.keys() {
        if let Some(c) = visit(a, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn only_the_command_layer_prints_and_picks_exit_codes() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("crates"), &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap();
        if rel.starts_with("src/commands") || rel == Path::new("src/main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may print what they measure; the code they test may not.
        let body = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (i, line) in body.lines().enumerate() {
            let line = code(line);
            for word in COMMAND_ONLY {
                if line.contains(word) {
                    wrong.push(format!("{}:{}: `{word}`", rel.display(), i + 1));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "printing or exit codes below the command layer:\n{}",
        wrong.join("\n")
    );
}

/// The dependency names of one `[dependencies]`-like table of a `Cargo.toml` (the text up to
/// the next table).
fn table_deps(toml: &str, table: &str) -> Vec<String> {
    let Some(start) = toml.find(&format!("\n[{table}]\n")) else {
        return Vec::new();
    };
    let body = &toml[start + table.len() + 4..];
    let end = body.find("\n[").unwrap_or(body.len());
    body[..end]
        .lines()
        .map(code)
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect()
}

#[test]
fn crates_depend_only_on_the_crates_below_them() {
    let mut wrong = Vec::new();
    for (name, allowed, banned) in CRATES {
        let manifest = if *name == "pipe" {
            root().join("Cargo.toml")
        } else {
            root().join("crates").join(name).join("Cargo.toml")
        };
        let toml = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let deps = table_deps(&toml, "dependencies");
        for d in &deps {
            let ours = d.starts_with("pipe");
            if ours && !allowed.contains(&d.as_str()) {
                wrong.push(format!("{name} depends on {d}, which is not below it"));
            }
            if banned.contains(&d.as_str()) {
                wrong.push(format!("{name} depends on {d}"));
            }
        }
    }
    // Every crate of the workspace is in the table.
    for e in std::fs::read_dir(root().join("crates")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !CRATES.iter().any(|(c, _, _)| *c == name) {
            wrong.push(format!("crates/{name} is in no layer of tests/layers.rs"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_import_reader_sees_groups_paths_and_not_macros() {
    let text = "use crate::a::b;\nuse crate::{c::d, e,\n    f::{g, h}};\nlet x = crate::i::j();\n\
                $crate::k::l(); // crate::m\nuse pipe_crate::n;\n";
    let names: Vec<String> = imports(text).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names, ["a", "c", "e", "f", "i"]);
    let toml = "[package]\nname = \"x\"\n\n[dependencies]\npipe-fs = { path = \"x\" }\n\
                # a comment\nburn = \"1\"\n\n[dev-dependencies]\nclap = \"4\"\n";
    assert_eq!(table_deps(toml, "dependencies"), ["pipe-fs", "burn"]);
}
