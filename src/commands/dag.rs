//! `pipe dag`: the pipeline graph as Graphviz DOT or Mermaid text.

use super::exit::{EXIT_INVALID, EXIT_OK};
use super::load_or_exit;
use crate::graph::Dag;
use crate::settings::cli::DagFormat;
use crate::spec::StageSpec;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn dag(file: &Path, format: DagFormat) -> i32 {
    let p = match load_or_exit(file, &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match Dag::build(p.graph()) {
        Ok(d) => {
            out!(
                "{}",
                if format == DagFormat::Dot {
                    to_dot(&d, &p.stages)
                } else {
                    to_mermaid(&d, &p.stages)
                }
            );
            EXIT_OK
        }
        Err(cycle) => {
            errln!("error: cycle: {}", cycle.join(" → "));
            EXIT_INVALID
        }
    }
}

fn to_dot(dag: &Dag, stages: &BTreeMap<String, StageSpec>) -> String {
    let mut s =
        String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for id in dag.order() {
        let kind = stages[&id].config.kind();
        s.push_str(&format!("  \"{id}\" [label=\"{id}\\n({kind})\"];\n"));
    }
    for (a, b, slot) in dag.edges() {
        s.push_str(&format!("  \"{a}\" -> \"{b}\" [label=\"{slot}\"];\n"));
    }
    s.push_str("}\n");
    s
}

fn to_mermaid(dag: &Dag, stages: &BTreeMap<String, StageSpec>) -> String {
    let mut s = String::from("flowchart LR\n");
    for id in dag.order() {
        s.push_str(&format!(
            "  {id}[\"{id} ({})\"]\n",
            stages[&id].config.kind()
        ));
    }
    for (a, b, slot) in dag.edges() {
        s.push_str(&format!("  {a} -->|{slot}| {b}\n"));
    }
    s
}
