//! The pipeline as a petgraph DAG: producer → consumer edges, stable topological order.

use crate::spec::StageSpec;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::BTreeMap;

pub struct Dag {
    pub graph: DiGraph<String, String>,
    pub index: BTreeMap<String, NodeIndex>,
}

impl Dag {
    /// Builds the graph over stages whose inputs resolve; `Err` holds the stages of one cycle.
    pub fn build(stages: &BTreeMap<String, StageSpec>) -> Result<Dag, Vec<String>> {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for id in stages.keys() {
            index.insert(id.clone(), graph.add_node(id.clone()));
        }
        for (id, spec) in stages {
            for (slot, target) in &spec.inputs {
                if let Some(&from) = index.get(target) {
                    graph.add_edge(from, index[id], slot.clone());
                }
            }
        }
        if toposort(&graph, None).is_err() {
            let cycle = tarjan_scc(&graph)
                .into_iter()
                .find(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0]))
                .map(|mut scc| {
                    scc.sort_by_key(|n| graph[*n].clone());
                    order_cycle(&graph, &scc)
                })
                .unwrap_or_default();
            return Err(cycle);
        }
        Ok(Dag { graph, index })
    }

    /// Topological order, ties broken by stage id so output is deterministic.
    pub fn order(&self) -> Vec<String> {
        let mut indeg: BTreeMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| {
                (
                    n,
                    self.graph.neighbors_directed(n, petgraph::Incoming).count(),
                )
            })
            .collect();
        let mut ready: std::collections::BTreeSet<String> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| self.graph[*n].clone())
            .collect();
        let mut out = Vec::new();
        while let Some(id) = ready.pop_first() {
            let n = self.index[&id];
            for m in self.graph.neighbors_directed(n, petgraph::Outgoing) {
                let d = indeg.get_mut(&m).expect("node in graph");
                *d -= 1;
                if *d == 0 {
                    ready.insert(self.graph[m].clone());
                }
            }
            out.push(id);
        }
        out
    }

    /// `id` and every stage it depends on.
    pub fn ancestors(&self, id: &str) -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![self.index[id]];
        while let Some(n) = stack.pop() {
            if seen.insert(self.graph[n].clone()) {
                stack.extend(self.graph.neighbors_directed(n, petgraph::Incoming));
            }
        }
        seen
    }

    /// `id` and every stage downstream of it.
    pub fn descendants(&self, id: &str) -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![self.index[id]];
        while let Some(n) = stack.pop() {
            if seen.insert(self.graph[n].clone()) {
                stack.extend(self.graph.neighbors_directed(n, petgraph::Outgoing));
            }
        }
        seen
    }

    pub fn to_dot(&self, stages: &BTreeMap<String, StageSpec>) -> String {
        let mut s =
            String::from("digraph pipeline {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
        for id in self.order() {
            let kind = stages[&id].config.kind();
            s.push_str(&format!("  \"{id}\" [label=\"{id}\\n({kind})\"];\n"));
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                s.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
                    self.graph[a], self.graph[b], self.graph[e]
                ));
            }
        }
        s.push_str("}\n");
        s
    }

    pub fn to_mermaid(&self, stages: &BTreeMap<String, StageSpec>) -> String {
        let mut s = String::from("flowchart LR\n");
        for id in self.order() {
            s.push_str(&format!(
                "  {id}[\"{id} ({})\"]\n",
                stages[&id].config.kind()
            ));
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                s.push_str(&format!(
                    "  {} -->|{}| {}\n",
                    self.graph[a], self.graph[e], self.graph[b]
                ));
            }
        }
        s
    }
}

/// Walks the strongly connected component from its first stage to list the cycle in order.
fn order_cycle(graph: &DiGraph<String, String>, scc: &[NodeIndex]) -> Vec<String> {
    let mut out = vec![graph[scc[0]].clone()];
    let mut cur = scc[0];
    for _ in 1..scc.len() {
        let next = graph
            .neighbors_directed(cur, petgraph::Outgoing)
            .filter(|n| scc.contains(n) && !out.contains(&graph[*n]))
            .min_by_key(|n| graph[*n].clone());
        match next {
            Some(n) => {
                out.push(graph[n].clone());
                cur = n;
            }
            None => break,
        }
    }
    out
}
