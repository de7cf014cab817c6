//! The pipeline as a petgraph DAG: producer → consumer edges, stable topological order. It sees
//! stages only as ids and their inputs (slot → producing stage), so the spec's validator and the
//! engine both build it and it imports neither.

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::BTreeMap;

pub struct Dag {
    pub graph: DiGraph<String, String>,
    pub index: BTreeMap<String, NodeIndex>,
}

impl Dag {
    /// Builds the graph over `stages` (id, inputs: slot → producer) whose inputs resolve;
    /// `Err` holds the stages of one cycle.
    pub fn build<'s>(
        stages: impl IntoIterator<Item = (&'s str, &'s BTreeMap<String, String>)>,
    ) -> Result<Dag, Vec<String>> {
        let stages: Vec<_> = stages.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for (id, _) in &stages {
            index.insert(id.to_string(), graph.add_node(id.to_string()));
        }
        for (id, inputs) in &stages {
            for (slot, target) in *inputs {
                if let Some(&from) = index.get(target) {
                    graph.add_edge(from, index[*id], slot.clone());
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

    /// Every edge: producer, consumer, slot.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.graph.edge_indices().filter_map(|e| {
            let (a, b) = self.graph.edge_endpoints(e)?;
            Some((
                self.graph[a].as_str(),
                self.graph[b].as_str(),
                self.graph[e].as_str(),
            ))
        })
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
