//! Pipeline YAML that used to crash pipe or be misread (nesting depth, grids and searches too
//! big for memory, non-finite draws, tags, echoed ids), and anchors, aliases and merge keys.

use super::*;

/// Asserts exit 2, every `want` in stderr, no panic and a short stderr; returns stderr.
fn refused(env: &Env, args: &[&str], want: &[&str]) -> String {
    let e = env.err(args, 2);
    for w in want {
        assert!(
            e.contains(w),
            "pipe {:?}: expected `{w}` in:\n{e}",
            quoted(args)
        );
    }
    assert!(!e.contains("panicked"), "{e}");
    assert!(e.len() < 4000, "{} bytes of stderr", e.len());
    e
}

/// Arguments cut for assertion messages (some are 40 KB).
fn quoted(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.chars().take(60).collect()).collect()
}

const SYNTH: &str = "stages:\n  faces:\n    kind: source\n    format: synthetic\n    count: 40\n    height: 16\n    width: 16\n    exact_duplicates: 0\n    near_duplicates: 0\n    conflicting_duplicates: 0\n";

#[test]
fn a_file_nested_20000_deep_is_refused_at_its_line() {
    let env = Env::new();
    let deep_block = format!("{}x\n", "- ".repeat(20_000));
    assert!(deep_block.len() > 40_000);
    // (file, where, what)
    let files = [
        (
            deep_block.clone(),
            "p.yaml:1:513: YAML syntax: lists and mappings nested more than 256",
        ),
        (
            "[".repeat(20_000),
            "p.yaml:1:256: YAML syntax: `[` and `{` nested more than 255",
        ),
        (
            format!(
                "stages:\n  a:\n    kind: source\n    x: {}\n",
                "{k: ".repeat(20_000)
            ),
            "p.yaml:4:1020: YAML syntax: lists and mappings nested more than 256",
        ),
    ];
    for (text, want) in &files {
        env.write("p.yaml", text);
        for cmd in ["validate", "run"] {
            refused(&env, &[cmd, "p.yaml"], &[want]);
        }
    }
    env.write("p.yaml", SYNTH);
    let set = format!("stages.faces.x={deep_block}");
    refused(
        &env,
        &["validate", "p.yaml", "--set", &set],
        &[
            "--set: `stages.faces.x=- - ",
            "bad value at 1:513 of the value: lists and mappings nested more than 256",
        ],
    );
    let sweep = format!("stages.faces.x=1,{}", deep_block.trim_end());
    refused(
        &env,
        &["run", "p.yaml", "--sweep", &sweep],
        &["bad value at 1:513 of the value: lists and mappings nested more than 256"],
    );
}

#[test]
fn huge_trials_and_grids_are_refused_with_their_count() {
    let env = Env::new();
    env.write("p.yaml", SYNTH);
    refused(
        &env,
        &[
            "run",
            "p.yaml",
            "--search",
            "stages.faces.label_noise=0..0.5",
            "--trials",
            "1000000000",
            "--objective",
            "faces.x",
        ],
        &["1000000000", "1..=100000"],
    );
    let thousand: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let axis = |f: &str| format!("stages.faces.{f}={}", thousand.join(","));
    let (a, b, c) = (axis("count"), axis("height"), axis("width"));
    let e = refused(
        &env,
        &["run", "p.yaml", "--sweep", &a, "--sweep", &b, "--sweep", &c],
        &["--sweep (1000 × 1000 × 1000) makes 1000000000 variants, more than the 100000"],
    );
    assert!(!env.path("cache/runs").exists(), "{e}");
}

#[test]
fn searches_whose_draws_are_not_finite_are_refused() {
    let env = Env::new();
    env.write("p.yaml", SYNTH);
    for (range, want) in [
        ("-1e308..1e308", "wider than the largest float"),
        ("1e-320..1e-310:log", "`1e-320` underflows"),
        ("1..1.7976e308", "beyond the largest float"),
    ] {
        let search = format!("stages.faces.label_noise={range}");
        let args = [
            "run",
            "p.yaml",
            "--search",
            &search,
            "--trials",
            "2",
            "--objective",
            "faces.x",
        ];
        refused(&env, &args, &[want]);
    }
}

#[test]
fn core_schema_tags_are_honoured_and_others_refused_at_their_position() {
    let env = Env::new();
    env.write(
        "p.yaml",
        &SYNTH.replace("count: 40", "count: !!int \"40\"").replace(
            "height: 16",
            "height: !!int 16\n    label_noise: !!float 0.1",
        ),
    );
    env.ok(&["validate", "p.yaml"]);
    env.write("p.yaml", &SYNTH.replace("count: 40", "count: !!binary 40"));
    refused(
        &env,
        &["validate", "p.yaml"],
        &["p.yaml:5:21: YAML syntax: unsupported tag `!!binary`"],
    );
    env.write(
        "p.yaml",
        &SYNTH.replace("count: 40", "count: !!float forty"),
    );
    refused(
        &env,
        &["validate", "p.yaml"],
        &["p.yaml:5:20: YAML syntax: `!!float` needs a number, got `forty`"],
    );
}

#[test]
fn why_cuts_a_huge_stage_id() {
    let env = Env::new();
    env.write("p.yaml", SYNTH);
    let id = "q".repeat(100_000);
    refused(&env, &["why", "p.yaml", &id], &["no stage `qqqq", "…`"]);
}

/// The data pipeline with three splits: two take their `kind` and `seed` from the anchor, the
/// third overrides the seed.
fn anchored(seed: u32) -> String {
    format!(
        "\
name: data
x-split: &split {{kind: split, seed: {seed}}}
defaults: &inputs {{data: train_raw, selection: clean, groups: groups}}
.unused: {{anything: [1, 2]}}
stages:
  train_raw:
    kind: source
    format: raw
    images: data/db_train.raw
    labels: data/label_train.txt
    height: 16
    width: 16
  hashes: {{kind: hash, inputs: {{data: train_raw}}}}
  groups: {{kind: dedup, inputs: {{hashes: hashes, data: train_raw}}}}
  clean: {{kind: filter_conflicts, inputs: {{groups: groups, data: train_raw}}}}
  split_a:
    <<: *split
    inputs: *inputs
  split_b: {{<<: *split, inputs: *inputs}}
  split_c:
    seed: 5
    <<: *split
    inputs: *inputs
"
    )
}

/// [`anchored`] written out without anchors.
fn written_out(seed: u32) -> String {
    let inputs = "{data: train_raw, selection: clean, groups: groups}";
    let head = anchored(seed);
    let head = head.split("  split_a:").next().unwrap();
    format!(
        "{head}  split_a: {{kind: split, seed: {seed}, inputs: {inputs}}}\n  split_b: {{kind: split, \
         seed: {seed}, inputs: {inputs}}}\n  split_c: {{kind: split, seed: 5, inputs: {inputs}}}\n"
    )
    .replace("x-split: &split", "x-unused:")
    .replace("defaults: &inputs", "defaults:")
}

#[test]
fn anchors_and_merge_keys_resolve_into_the_cache_key() {
    let env = Env::new();
    write_raw(&env, 60);
    env.write("p.yaml", &anchored(3));
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(
        ran(&out),
        [
            "clean",
            "groups",
            "hashes",
            "split_a",
            "split_b",
            "split_c",
            "train_raw"
        ]
    );
    // The same stages written out have the same keys.
    env.write("q.yaml", &written_out(3));
    let out = env.ok(&["run", "q.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
    // Changing the anchor reruns the stages that merge it, not the one that overrides it.
    env.write("p.yaml", &anchored(4));
    let out = env.ok(&["run", "p.yaml"]);
    assert_eq!(ran(&out), ["split_a", "split_b"], "{out}");
    env.write("q.yaml", &written_out(4));
    let out = env.ok(&["run", "q.yaml"]);
    assert!(ran(&out).is_empty(), "{out}");
}

#[test]
fn problems_in_what_an_alias_brings_in_name_the_alias_and_the_anchor() {
    let env = Env::new();
    env.write(
        "p.yaml",
        "defaults: &d {seed: 3, bogus: 1}\nstages:\n  split:\n    kind: split\n    <<: *d\n",
    );
    refused(
        &env,
        &["validate", "p.yaml"],
        &[
            "p.yaml:5:9: stages.split.bogus: unknown field `bogus`",
            "(from the alias `*d`; its anchor `&d` is at p.yaml:1:14)",
        ],
    );
    env.write(
        "p.yaml",
        "x-s: &s {kind: split, seed: x}\nstages:\n  a: *s\n  b:\n    <<: *s\n    seed: 1\n    inputs: {data: src}\n  src: {kind: source, format: synthetic}\n",
    );
    let e = refused(
        &env,
        &["validate", "p.yaml"],
        &[
            "p.yaml:3:6: stages.a.seed: invalid type: string \"x\"",
            "its anchor `&s` is at p.yaml:1:9",
        ],
    );
    assert!(!e.contains("stages.b"), "{e}");
    env.write("p.yaml", "stages:\n  a: *nope\n");
    refused(
        &env,
        &["validate", "p.yaml"],
        &["p.yaml:2:6: YAML syntax: alias `*nope` has no anchor"],
    );
    let mut laughs = "x-a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_string();
    for (name, prev) in [
        ("b", "a"),
        ("c", "b"),
        ("d", "c"),
        ("e", "d"),
        ("f", "e"),
        ("g", "f"),
    ] {
        let items = vec![format!("*{prev}"); 10].join(", ");
        laughs.push_str(&format!("x-{name}: &{name} [{items}]\n"));
    }
    env.write("p.yaml", &laughs);
    refused(
        &env,
        &["run", "p.yaml"],
        &[
            "p.yaml:5:",
            "aliases copy more than 100000 values",
            "billion laughs",
        ],
    );
}
