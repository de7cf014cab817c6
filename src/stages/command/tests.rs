use super::*;

fn command(fields: serde_json::Value) -> Command {
    Command::from_json(fields).unwrap()
}

fn messages(c: &Command) -> Vec<String> {
    c.check()
        .into_iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect()
}

#[test]
fn a_list_or_a_string() {
    let list = command(serde_json::json!({"cmd": ["python3", "x.py"]}));
    assert_eq!(list.cmd, Cmd::Args(vec!["python3".into(), "x.py".into()]));
    let shell = command(serde_json::json!({"cmd": "echo hi > $PIPE_OUT/a"}));
    assert!(matches!(shell.cmd, Cmd::Shell(_)));
    let e = Command::from_json(serde_json::json!({"cmd": 3})).unwrap_err();
    assert!(e.to_string().contains("a command string or a list"), "{e}");
    let e = Command::from_json(serde_json::json!({"cmd": "x", "outz": []})).unwrap_err();
    assert!(e.to_string().contains("unknown field `outz`"), "{e}");
}

#[test]
fn every_problem_is_reported() {
    let c = command(serde_json::json!({
        "cmd": ["run", "${params.lrr}", "${deps.nope}", "${oops}"],
        "deps": ["../outside", "ok.py"],
        "params": {"lr": 0.1, "bad-name": 1, "nested": {"a": 1}},
        "outs": ["report.json", "/abs", "fine.csv"],
        "metrics": "m/../../x.json",
        "env": ["PIPE_OUT", "HOME", "1X"],
    }));
    let m = messages(&c);
    let want = [
        "cmd[1]: `${params.lrr}`: no param `lrr`",
        "cmd[2]: `${deps.nope}`: `nope` is not one of deps",
        "params.bad-name: param name `bad-name`",
        "params.nested: expected a string",
        "deps[0]: `../outside`",
        "outs[0]: `report.json` is a name pipe writes",
        "outs[1]: `/abs`",
        "metrics: `m/../../x.json`",
        "env[0]: `PIPE_OUT`",
        "env[2]: `1X`",
    ];
    for w in want {
        assert!(m.iter().any(|l| l.starts_with(w)), "{w}\n{m:#?}");
    }
    assert_eq!(m.len(), want.len(), "{m:#?}");
}

#[test]
fn deps_split_into_stages_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts/lib")).unwrap();
    std::fs::write(dir.path().join("scripts/a.py"), "1").unwrap();
    std::fs::write(dir.path().join("scripts/lib/b.py"), "2").unwrap();
    let mut c = command(serde_json::json!({
        "cmd": "x", "deps": ["evaluate", "scripts", "scripts/a.py", "gone.txt"],
    }));
    let bad = c.resolve_deps(&["evaluate".into(), "train".into()], dir.path());
    assert_eq!(bad, [3]);
    assert_eq!(c.stage_deps, BTreeSet::from(["evaluate".to_string()]));
    let files = c.external_files(dir.path()).unwrap();
    let roles: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["scripts", "scripts/a.py", "gone.txt"]);
    assert_eq!(
        files[0].1,
        [
            dir.path().join("scripts/a.py"),
            dir.path().join("scripts/lib/b.py")
        ]
    );
    // stage_deps never enters the key: `deps` does.
    assert!(c.canonical_has_no_stage_deps());
}

#[test]
fn env_values_enter_the_key_as_digests() {
    let c = command(serde_json::json!({"cmd": "x", "env": ["PIPE_TEST_SURELY_UNSET_VAR"]}));
    assert_eq!(c.env_digests()["env PIPE_TEST_SURELY_UNSET_VAR"], "(unset)");
    let c = command(serde_json::json!({"cmd": "x", "env": ["PATH"]}));
    let d = &c.env_digests()["env PATH"];
    assert_eq!(d.len(), 16);
    assert!(!std::env::var("PATH").unwrap().contains(d.as_str()));
}

#[test]
fn variable_names() {
    assert_eq!(param_var("lr"), "PIPE_PARAM_LR");
    assert_eq!(dep_var("eval-b3.x"), "PIPE_DEP_EVAL_B3_X");
    assert_eq!(param_text(&serde_json::json!(0.001)), "0.001");
    assert_eq!(param_text(&serde_json::json!("a b")), "a b");
    assert_eq!(param_text(&serde_json::json!(true)), "true");
}

impl Command {
    fn canonical_has_no_stage_deps(&self) -> bool {
        let v = serde_json::to_value(self).unwrap();
        v.get("stage_deps").is_none() && v.get("deps").is_some()
    }
}
