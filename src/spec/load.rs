//! Reading pipeline files: includes (with loop detection), params, `--set` overrides and
//! `${params.NAME}` substitution, producing one merged tree per stage that remembers where
//! every value came from.

use super::yaml::{self, Marked, Node, Pos};
use super::{Diagnostic, Pipeline, hint, ident};
use crate::ml::device::DeviceChoice;
use crate::quote::quote;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "include",
    "params",
    "stages",
    "defaults",
];

/// Top-level keys pipe does not read, where anchors for aliases can be defined: `defaults:`,
/// and (as in Docker Compose and GitLab CI) any key starting with `x-` or `.`.
fn holds_anchors(key: &str) -> bool {
    key == "defaults" || key.starts_with("x-") || key.starts_with('.')
}

/// `--set stages.ID.FIELD=VALUE` or `--set params.NAME=VALUE`.
///
/// Parsing never fails on the command line: a malformed override is kept with its `error` and
/// reported by [`load`] like any other diagnostic (exit 2, the value echoed truncated), because
/// clap would echo a 1 MB argument in full.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub path: Vec<String>,
    pub value: Marked,
    pub text: String,
    pub error: Option<String>,
}

impl std::str::FromStr for Override {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut o = Override {
            path: Vec::new(),
            value: Marked::new(Node::Null, Pos::default()),
            text: s.to_string(),
            error: None,
        };
        let shown = quote(s);
        let Some((path, value)) = s.split_once('=') else {
            o.error = Some(format!(
                "`{shown}`: expected PATH=VALUE, e.g. stages.train.lr=1e-4"
            ));
            return Ok(o);
        };
        let path: Vec<String> = path.trim().split('.').map(str::to_string).collect();
        let ok = match path.first().map(String::as_str) {
            Some("stages") => path.len() >= 3,
            Some("params") => path.len() == 2,
            _ => false,
        };
        if !ok || path.iter().any(String::is_empty) {
            o.error = Some(format!(
                "`{shown}`: the path must be stages.ID.FIELD[.SUBFIELD] or params.NAME"
            ));
            return Ok(o);
        }
        o.path = path;
        match yaml::parse(value) {
            Ok(mut v) => {
                clear_positions(&mut v);
                o.value = v;
            }
            Err(e) => {
                o.error = Some(format!(
                    "`{shown}`: bad value at {} of the value: {}",
                    e.pos, e.message
                ))
            }
        }
        Ok(o)
    }
}

/// Values from `--set` have no position in any file.
fn clear_positions(m: &mut Marked) {
    m.pos = Pos::default();
    match &mut m.node {
        Node::Seq(items) => items.iter_mut().for_each(clear_positions),
        Node::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            clear_positions(k);
            clear_positions(v);
        }),
        _ => {}
    }
}

/// A stage as written, before typing.
#[derive(Debug, Clone)]
pub struct RawStage {
    pub id: String,
    pub tree: Marked,
    pub key_pos: Pos,
    pub file: PathBuf,
    pub base_dir: PathBuf,
}

#[derive(Default)]
struct Collected {
    /// The top file's `name:`, where it is written.
    name: Option<(String, Pos)>,
    description: Option<String>,
    params: BTreeMap<String, (Marked, PathBuf)>,
    stages: Vec<RawStage>,
    /// Each stage id's index in `stages` (a duplicate is found without a scan).
    stage_index: BTreeMap<String, usize>,
    seen_files: Vec<PathBuf>,
    /// Aliases of every file read, for notes on the problems found where they were used.
    aliases: Vec<(PathBuf, yaml::AliasSite)>,
}

/// Loads, merges and validates a pipeline file; every problem at once.
pub fn load(path: &Path, overrides: &[Override]) -> Result<Pipeline, Vec<Diagnostic>> {
    load_with_device(path, overrides, None)
}

/// [`load`] for a run: `--device D` is `--set stages.ID.device=D` on every stage whose kind
/// has a `device` field (after the other overrides), so it enters the key exactly as the YAML
/// field does and the engine needs to know nothing about devices.
pub fn load_with_device(
    path: &Path,
    overrides: &[Override],
    device: Option<DeviceChoice>,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut acc = Collected::default();
    collect(path, None, &mut Vec::new(), &mut acc, &mut diags);
    apply_overrides(&mut acc, overrides, &mut diags);
    substitute_params(&mut acc, &mut diags);
    if let Some(d) = device {
        let all = device_overrides(&acc.stages, d);
        apply_overrides(&mut acc, &all, &mut diags);
    }
    let auto = resolve_auto_devices(&mut acc.stages);
    let name = match acc.name.clone() {
        Some((name, pos)) => {
            if let Err(e) = ident::check("pipeline name", &name) {
                diags.push(Diagnostic::new(path, Some(pos), "name", e));
            }
            name
        }
        None => ident::from_stem(
            &path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    let mut pipeline = super::validate::validate(
        name,
        acc.description.clone().unwrap_or_default(),
        path,
        acc.stages,
        &mut diags,
    );
    pipeline.auto_device = auto;
    if diags.is_empty() {
        Ok(pipeline)
    } else {
        note_aliases(&mut diags, &acc.aliases);
        Err(diags)
    }
}

/// `device: auto` (in the YAML, through a parameter or a `--set`) becomes the device `auto`
/// picks on this machine before anything is typed or keyed, so a key only ever holds a concrete
/// device; the pick, when some stage asked for it.
fn resolve_auto_devices(stages: &mut [RawStage]) -> Option<super::AutoDevice> {
    let mut ids = Vec::new();
    for s in stages {
        let uses_device = s
            .tree
            .get("kind")
            .and_then(|(_, k)| k.as_str())
            .is_some_and(crate::stages::kind_uses_device);
        let Some(field) = s.tree.get_mut("device").filter(|_| uses_device) else {
            continue;
        };
        if !field
            .as_str()
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(crate::ml::device::AUTO))
        {
            continue;
        }
        field.node = Node::Str(crate::ml::probe::auto().device.to_string());
        ids.push(s.id.clone());
    }
    (!ids.is_empty()).then(|| super::AutoDevice {
        pick: crate::ml::probe::auto().clone(),
        stages: ids,
    })
}

/// `--device D` as an override of each stage that runs a model (its `kind`, as written after
/// parameter substitution, has a `device` field).
fn device_overrides(stages: &[RawStage], device: DeviceChoice) -> Vec<Override> {
    stages
        .iter()
        .filter(|s| {
            s.tree
                .get("kind")
                .and_then(|(_, k)| k.as_str())
                .is_some_and(crate::stages::kind_uses_device)
        })
        .map(|s| Override {
            path: vec!["stages".into(), s.id.clone(), "device".into()],
            value: Marked::new(Node::Str(device.to_string()), Pos::default()),
            text: format!("--device {device}"),
            error: None,
        })
        .collect()
}

/// A problem at an alias is in what the alias brought in (every such value carries the alias's
/// position): its message also says where the anchor is.
fn note_aliases(diags: &mut [Diagnostic], aliases: &[(PathBuf, yaml::AliasSite)]) {
    if aliases.is_empty() {
        return;
    }
    let sites: std::collections::HashMap<(&Path, usize, usize), &yaml::AliasSite> = aliases
        .iter()
        .map(|(f, a)| ((f.as_path(), a.pos.line, a.pos.col), a))
        .collect();
    for d in diags {
        let (Some(line), Some(col)) = (d.line, d.column) else {
            continue;
        };
        if let Some(a) = sites.get(&(d.file.as_path(), line, col)) {
            d.message.push_str(&format!(
                " (from the alias `*{}`; its anchor `&{}` is at {}:{})",
                a.name,
                a.name,
                crate::quote::path(&d.file),
                a.anchor
            ));
        }
    }
}

/// Reads one pipeline file into `acc`, its includes first; `stack` holds the files being read
/// (an include loop is a file already on it).
fn collect(
    path: &Path,
    included_at: Option<(&Path, Pos)>,
    stack: &mut Vec<PathBuf>,
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    // Problems with the file itself are reported where it was included (or on the file).
    let origin = included_at
        .map(|(f, p)| (f.to_path_buf(), Some(p)))
        .unwrap_or((path.to_path_buf(), None));
    if let Some(start) = stack.iter().position(|p| p == &canon) {
        diags.push(include_loop(&stack[start..], &canon, origin));
        return;
    }
    if acc.seen_files.contains(&canon) {
        return; // diamond include: the shared file's stages are already in
    }
    let Some(tree) = read_tree(path, &canon, origin, acc, diags) else {
        return;
    };
    let Node::Map(entries) = &tree.node else {
        diags.push(Diagnostic::new(
            path,
            Some(tree.pos),
            "",
            format!(
                "a pipeline file must be a mapping, got {}",
                tree.type_name()
            ),
        ));
        return;
    };
    let src = Source {
        // Shown as given on the command line (relative stays relative); never enters a key.
        file: path.to_path_buf(),
        base_dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        is_top: stack.is_empty(),
    };
    stack.push(canon);
    // Includes first, so the including file's params win.
    if let Some((_, inc)) = tree.get("include") {
        collect_includes(&src, inc, stack, acc, diags);
    }
    for (k, v) in entries {
        collect_entry(&src, k, v, acc, diags);
    }
    stack.pop();
}

/// The file being read by [`collect`].
struct Source {
    file: PathBuf,
    base_dir: PathBuf,
    /// The file named on the command line (only its `name:` and `description:` count).
    is_top: bool,
}

/// `include loop: a.yaml → b.yaml → a.yaml`, reported at `origin`.
fn include_loop(chain: &[PathBuf], canon: &Path, origin: (PathBuf, Option<Pos>)) -> Diagnostic {
    let names: Vec<String> = chain
        .iter()
        .map(PathBuf::as_path)
        .chain(std::iter::once(canon))
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let (file, pos) = origin;
    Diagnostic::new(
        file,
        pos,
        "include",
        format!("include loop: {}", names.join(" → ")),
    )
}

/// Reads and parses the file, marking it seen once read and keeping its aliases; `None` (with
/// the problem pushed) when it cannot be read (reported at `origin`) or parsed.
fn read_tree(
    path: &Path,
    canon: &Path,
    origin: (PathBuf, Option<Pos>),
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) -> Option<Marked> {
    let bytes = match read_pipeline_file(path) {
        Ok(b) => b,
        Err(e) => {
            let (file, pos) = origin;
            diags.push(Diagnostic::new(
                file,
                pos,
                "",
                format!("cannot read {}: {e}", crate::quote::path(path)),
            ));
            return None;
        }
    };
    acc.seen_files.push(canon.to_path_buf());
    match yaml::decode(&bytes).and_then(yaml::parse_document) {
        Ok(p) => {
            let sites = p.aliases.into_iter().map(|a| (path.to_path_buf(), a));
            acc.aliases.extend(sites);
            Some(p.tree)
        }
        Err(e) => {
            diags.push(Diagnostic::new(
                path,
                Some(e.pos),
                "",
                format!("YAML syntax: {}", e.message),
            ));
            None
        }
    }
}

/// `include: FILE` or `include: [FILE, …]`, each relative to the including file.
fn collect_includes(
    src: &Source,
    inc: &Marked,
    stack: &mut Vec<PathBuf>,
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) {
    match &inc.node {
        Node::Seq(items) => {
            for item in items {
                match item.as_str() {
                    Some(rel) => collect(
                        &src.base_dir.join(rel),
                        Some((&src.file, item.pos)),
                        stack,
                        acc,
                        diags,
                    ),
                    None => diags.push(Diagnostic::new(
                        &src.file,
                        Some(item.pos),
                        "include",
                        format!("expected a file name, got {}", item.type_name()),
                    )),
                }
            }
        }
        Node::Str(rel) => collect(
            &src.base_dir.join(rel),
            Some((&src.file, inc.pos)),
            stack,
            acc,
            diags,
        ),
        _ => diags.push(Diagnostic::new(
            &src.file,
            Some(inc.pos),
            "include",
            format!("expected a list of files, got {}", inc.type_name()),
        )),
    }
}

/// One top-level `key: value` of the file.
fn collect_entry(
    src: &Source,
    k: &Marked,
    v: &Marked,
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(key) = k.as_str() else {
        diags.push(Diagnostic::new(
            &src.file,
            Some(k.pos),
            "",
            format!("keys must be strings, got {}", k.type_name()),
        ));
        return;
    };
    match key {
        "name" | "description" => collect_text(src, key, v, acc, diags),
        "include" => {}
        other if holds_anchors(other) => {}
        "params" => collect_params(src, v, acc, diags),
        "stages" => collect_stages(src, v, acc, diags),
        other => diags.push(Diagnostic::new(
            &src.file,
            Some(k.pos),
            quote(other),
            format!(
                "unknown top-level key `{}`{}; expected one of {} (or a key starting \
                 with `x-` or `.`, which holds anchors)",
                quote(other),
                hint(other, TOP_KEYS.iter().copied()),
                TOP_KEYS.join(", ")
            ),
        )),
    }
}

/// `name:` or `description:`: kept from the top file, checked to be a string in every file.
fn collect_text(
    src: &Source,
    key: &str,
    v: &Marked,
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) {
    match v.as_str() {
        Some(s) if src.is_top => {
            if key == "name" {
                acc.name = Some((s.to_string(), v.pos));
            } else {
                acc.description = Some(s.to_string());
            }
        }
        Some(_) => {}
        None => diags.push(Diagnostic::new(
            &src.file,
            Some(v.pos),
            key,
            format!("expected a string, got {}", v.type_name()),
        )),
    }
}

/// `params: {NAME: value, …}`; a later file's value replaces an earlier one's.
fn collect_params(src: &Source, v: &Marked, acc: &mut Collected, diags: &mut Vec<Diagnostic>) {
    match &v.node {
        Node::Map(params) => {
            for (pk, pv) in params {
                match pk.as_str() {
                    Some(name) => {
                        acc.params
                            .insert(name.to_string(), (pv.clone(), src.file.clone()));
                    }
                    None => diags.push(Diagnostic::new(
                        &src.file,
                        Some(pk.pos),
                        "params",
                        "parameter names must be strings",
                    )),
                }
            }
        }
        Node::Null => {}
        _ => diags.push(Diagnostic::new(
            &src.file,
            Some(v.pos),
            "params",
            format!("expected a mapping of NAME: value, got {}", v.type_name()),
        )),
    }
}

/// `stages: {ID: stage, …}`.
fn collect_stages(src: &Source, v: &Marked, acc: &mut Collected, diags: &mut Vec<Diagnostic>) {
    match &v.node {
        Node::Map(stages) => {
            for (sk, sv) in stages {
                collect_stage(src, sk, sv, acc, diags);
            }
        }
        Node::Null => {}
        _ => diags.push(Diagnostic::new(
            &src.file,
            Some(v.pos),
            "stages",
            format!(
                "expected a mapping of stage id → stage, got {}",
                v.type_name()
            ),
        )),
    }
}

/// One stage, unless its id is not a string or already taken.
fn collect_stage(
    src: &Source,
    sk: &Marked,
    sv: &Marked,
    acc: &mut Collected,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(id) = sk.as_str() else {
        diags.push(Diagnostic::new(
            &src.file,
            Some(sk.pos),
            "stages",
            format!("stage ids must be strings, got {}", sk.type_name()),
        ));
        return;
    };
    // Still collected, so that its dependents get no spurious errors.
    if let Err(e) = ident::check("stage id", id) {
        diags.push(Diagnostic::new(&src.file, Some(sk.pos), "stages", e));
    }
    if let Some(prev) = acc.stage_index.get(id).map(|&i| &acc.stages[i]) {
        diags.push(Diagnostic::new(
            &src.file,
            Some(sk.pos),
            format!("stages.{}", quote(id)),
            format!(
                "duplicate stage id `{}` (first defined at {}:{})",
                quote(id),
                prev.file.display(),
                prev.key_pos
            ),
        ));
        return;
    }
    acc.stage_index.insert(id.to_string(), acc.stages.len());
    acc.stages.push(RawStage {
        id: id.to_string(),
        tree: sv.clone(),
        key_pos: sk.pos,
        file: src.file.clone(),
        base_dir: src.base_dir.clone(),
    });
}

fn apply_overrides(acc: &mut Collected, overrides: &[Override], diags: &mut Vec<Diagnostic>) {
    for o in overrides {
        let result = match &o.error {
            Some(e) => Err(Diagnostic::new("--set", None, "", e.clone())),
            None if o.path[0] == "params" => override_param(acc, o),
            None => override_stage_field(acc, o),
        };
        if let Err(d) = result {
            diags.push(d);
        }
    }
}

/// `--set params.NAME=VALUE`, for a declared parameter.
fn override_param(acc: &mut Collected, o: &Override) -> Result<(), Diagnostic> {
    let name = &o.path[1];
    if !acc.params.contains_key(name) {
        let names: Vec<&str> = acc.params.keys().map(String::as_str).collect();
        let declared = if names.is_empty() {
            "the pipeline declares no `params:`".to_string()
        } else {
            format!("declared: {}", names.join(", "))
        };
        return Err(Diagnostic::new(
            "--set",
            None,
            quote(&o.path.join(".")),
            format!(
                "no parameter `{}`{}; {declared}",
                quote(name),
                hint(name, names.iter().copied())
            ),
        ));
    }
    acc.params
        .insert(name.clone(), (o.value.clone(), PathBuf::from("--set")));
    Ok(())
}

/// `--set stages.ID.FIELD[.SUBFIELD…]=VALUE`, for an existing stage; missing mappings on the
/// way are created.
fn override_stage_field(acc: &mut Collected, o: &Override) -> Result<(), Diagnostic> {
    let id = &o.path[1];
    let Some(stage) = acc.stages.iter_mut().find(|s| &s.id == id) else {
        let ids: Vec<&str> = acc.stages.iter().map(|s| s.id.as_str()).collect();
        return Err(Diagnostic::new(
            "--set",
            None,
            quote(&o.path.join(".")),
            format!(
                "`{}`: no stage `{}`{}",
                quote(&o.text),
                quote(id),
                hint(id, ids)
            ),
        ));
    };
    let mut node = &mut stage.tree;
    for seg in &o.path[2..o.path.len() - 1] {
        node = if matches!(node.node, Node::Seq(_)) {
            seq_item(node, seg).map_err(|m| seq_error(o, m))?
        } else {
            child_map(node, seg)
        };
    }
    let last = o.path.last().expect("path has at least 3 parts");
    if matches!(node.node, Node::Seq(_)) {
        *seq_item(node, last).map_err(|m| seq_error(o, m))? = o.value.clone();
        return Ok(());
    }
    match node.get_mut(last) {
        Some(v) => *v = o.value.clone(),
        None => {
            let entry = (
                Marked::new(Node::Str(last.clone()), Pos::default()),
                o.value.clone(),
            );
            if let Node::Map(entries) = &mut node.node {
                entries.push(entry);
            } else {
                node.node = Node::Map(vec![entry]);
            }
        }
    }
    Ok(())
}

/// Item `seg` of the list `node` (`--set stages.net.model.layers.2.max_pool.size=3`); an error
/// when `seg` is not one of its indices.
fn seq_item<'a>(node: &'a mut Marked, seg: &str) -> Result<&'a mut Marked, String> {
    let Node::Seq(items) = &mut node.node else {
        return Err("not a list".into());
    };
    let len = items.len();
    match seg.parse::<usize>() {
        Ok(i) if i < len => Ok(&mut items[i]),
        _ => Err(format!(
            "`{}` is not an index of this list of {len} (0 to {})",
            quote(seg),
            len.saturating_sub(1)
        )),
    }
}

fn seq_error(o: &Override, message: String) -> Diagnostic {
    Diagnostic::new(
        "--set",
        None,
        quote(&o.path.join(".")),
        format!("`{}`: {message}", quote(&o.text)),
    )
}

/// The value of `seg` in `node`, made a mapping (an empty one where it is absent) if `node` is
/// not one.
fn child_map<'a>(node: &'a mut Marked, seg: &str) -> &'a mut Marked {
    if !matches!(node.node, Node::Map(_)) {
        node.node = Node::Map(Vec::new());
    }
    if node.get_mut(seg).is_none()
        && let Node::Map(entries) = &mut node.node
    {
        entries.push((
            Marked::new(Node::Str(seg.to_string()), Pos::default()),
            Marked::new(Node::Map(Vec::new()), Pos::default()),
        ));
    }
    node.get_mut(seg).expect("inserted above")
}

fn substitute_params(acc: &mut Collected, diags: &mut Vec<Diagnostic>) {
    let params = acc.params.clone();
    for stage in &mut acc.stages {
        let field = format!("stages.{}", crate::quote::quote(&stage.id));
        let command = stage.tree.get("kind").and_then(|(_, k)| k.as_str()) == Some("command");
        match &mut stage.tree.node {
            // A command stage's `cmd` refers to its own params, deps and out when it runs
            // (stages/command/interp.rs); its other fields are the pipeline's like any stage's.
            Node::Map(entries) if command => {
                for (k, v) in entries
                    .iter_mut()
                    .filter(|(k, _)| k.as_str() != Some("cmd"))
                {
                    let f = format!("{field}.{}", k.as_str().unwrap_or("?"));
                    subst(v, &params, &stage.file, &f, diags);
                }
            }
            _ => subst(&mut stage.tree, &params, &stage.file, &field, diags),
        }
    }
}

fn subst(
    m: &mut Marked,
    params: &BTreeMap<String, (Marked, PathBuf)>,
    file: &Path,
    field: &str,
    diags: &mut Vec<Diagnostic>,
) {
    match &mut m.node {
        Node::Str(s) if s.contains("${") => match expand(s, params) {
            Ok(node) => m.node = node,
            Err(msg) => diags.push(Diagnostic::new(file, Some(m.pos), field, msg)),
        },
        Node::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                subst(item, params, file, &format!("{field}[{i}]"), diags);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let f = format!("{field}.{}", k.as_str().unwrap_or("?"));
                subst(v, params, file, &f, diags);
            }
        }
        _ => {}
    }
}

/// A string with `${params.NAME}` references, each replaced by the parameter's value; `Err`
/// says what could not be resolved.
fn expand(s: &str, params: &BTreeMap<String, (Marked, PathBuf)>) -> Result<Node, String> {
    let mut out = String::new();
    let mut rest = s;
    let mut whole: Option<Marked> = None;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            return Err(format!("unterminated `${{` in `{s}`"));
        };
        let expr = &rest[start + 2..start + end];
        let name = expr.strip_prefix("params.").unwrap_or("");
        let Some((v, _)) = params.get(name) else {
            let names: Vec<&str> = params.keys().map(String::as_str).collect();
            return Err(if expr.starts_with("params.") {
                format!(
                    "unresolved `${{{expr}}}`: no parameter `{name}`{}",
                    hint(name, names)
                )
            } else {
                format!("unresolved `${{{expr}}}`: only `${{params.NAME}}` is supported")
            });
        };
        if start == 0 && end + 1 == rest.len() && out.is_empty() {
            whole = Some(v.clone());
        }
        out.push_str(&scalar_text(v));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(match whole {
        // `lr: ${params.lr}` keeps the parameter's type (a number stays a number).
        Some(v) => v.node,
        None => Node::Str(out),
    })
}

fn scalar_text(m: &Marked) -> String {
    match &m.node {
        Node::Str(s) | Node::NonFinite(s) => s.clone(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Null => String::new(),
        _ => serde_json::to_string(&m.to_json()).unwrap_or_default(),
    }
}

/// Largest pipeline file read (a YAML file this big is a mistake, e.g. `include: data.raw`).
const MAX_PIPELINE_FILE_BYTES: u64 = 16 << 20;

/// The bytes of a pipeline file: a regular file of at most [`MAX_PIPELINE_FILE_BYTES`] (a FIFO
/// or `/dev/zero` would block or never end).
fn read_pipeline_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Stat before opening: opening a FIFO blocks until someone writes to it.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a directory, FIFO or device)",
        ));
    }
    if meta.len() > MAX_PIPELINE_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {} MiB a pipeline file may have",
            meta.len(),
            MAX_PIPELINE_FILE_BYTES >> 20
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PIPELINE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}
