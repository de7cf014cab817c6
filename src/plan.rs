//! The planner: for every stage, without running or locking anything, whether it is cached, would
//! run (and why, transitively), or is blocked. `run`, `run --dry-run`, `status` and `why` all
//! consume one [`Plan`], and the executor decides each stage with the same [`decide`] function,
//! so what they say cannot disagree.
//!
//! The planner sees the pipeline only as plain data ([`Node`]s in topological order) and the
//! cache only through the [`World`] trait, so it is unit-tested with fake keys and stores.

use crate::cache::StageKey;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One stage as the planner sees it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    /// Slot name → producing stage id.
    pub inputs: BTreeMap<String, String>,
}

/// What the planner needs from the cache and the stage definitions.
pub trait World {
    /// Why a key could not be computed (a source file that cannot be read): the world's own
    /// error, which the planner passes through untouched.
    type Error;
    /// The key of stage `id` given its inputs' output digests (slot → digest).
    fn key(&mut self, id: &str, inputs: &BTreeMap<String, String>)
    -> Result<StageKey, Self::Error>;
    /// The committed output digest of the key with this hex digest, if any.
    fn lookup(&self, key_hex: &str) -> Option<String>;
    /// The stage's most recent recorded run.
    fn last_run(&self, id: &str) -> Option<LastRun>;
    /// The output digest a shared remote cache holds for this key, asked only after a local
    /// miss (see `crate::remote`); none without a remote.
    fn remote_lookup(&self, _key_hex: &str) -> Option<String> {
        None
    }
}

/// What the planner uses of a stage's last run record.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub key: StageKey,
    pub failed: bool,
}

/// Why a stage would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Forced,
    NeverRan,
    /// One component of the key that differs from the last recorded run.
    Changed(String),
    LastFailed,
    OutputGone,
    /// An upstream stage will run, so this input's digest is not known yet.
    Upstream {
        slot: String,
        producer: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Forced => f.write_str("forced"),
            Reason::NeverRan => f.write_str("never ran in this pipeline"),
            Reason::Changed(what) => f.write_str(what),
            Reason::LastFailed => f.write_str("its last run failed"),
            Reason::OutputGone => f.write_str("its cached output was removed or is damaged"),
            Reason::Upstream { slot, producer } => {
                write!(
                    f,
                    "input `{slot}` would change (upstream `{producer}` will run)"
                )
            }
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Where a stage stands before anything runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StageState {
    Cached {
        digest: String,
    },
    /// Not in the local cache, but the remote holds its output: a run pulls it.
    Remote {
        digest: String,
    },
    /// An upper bound: a stage whose upstream reruns with byte-identical output stays cached.
    WouldRun {
        reasons: Vec<Reason>,
    },
    Blocked {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct PlannedStage {
    pub id: String,
    pub state: StageState,
    /// The key, when every input digest is known.
    pub key: Option<StageKey>,
}

/// Every stage of the pipeline in topological order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// Each stage's position in `stages` (the executor asks about every stage it decides).
    index: BTreeMap<String, usize>,
}

impl Plan {
    pub fn new(stages: Vec<PlannedStage>) -> Self {
        let index = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        Self { stages, index }
    }

    pub fn get(&self, id: &str) -> Option<&PlannedStage> {
        self.index.get(id).map(|&i| &self.stages[i])
    }

    /// Ids of the stages that would run, in plan order.
    pub fn would_run(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter(|s| matches!(s.state, StageState::WouldRun { .. }))
            .map(|s| s.id.as_str())
            .collect()
    }
}

/// How one stage whose input digests are all known is to be handled.
#[derive(Debug, Clone)]
pub enum Decision {
    Hit {
        key: StageKey,
        digest: String,
    },
    /// A local miss the remote cache holds: pulled instead of run.
    Remote {
        key: StageKey,
        digest: String,
    },
    Miss {
        key: StageKey,
    },
}

/// The one rule for a stage whose inputs are known: a hit unless forced or absent; a local
/// miss the remote holds is pulled.
pub fn decide<W: World>(
    world: &mut W,
    id: &str,
    inputs: &BTreeMap<String, String>,
    forced: bool,
) -> Result<Decision, W::Error> {
    let key = world.key(id, inputs)?;
    if forced {
        return Ok(Decision::Miss { key });
    }
    let hex = key.digest();
    if let Some(digest) = world.lookup(&hex) {
        return Ok(Decision::Hit { key, digest });
    }
    if let Some(digest) = world.remote_lookup(&hex) {
        return Ok(Decision::Remote { key, digest });
    }
    Ok(Decision::Miss { key })
}

/// What to plan: `nodes` in topological order; stages outside `selected` are blocked with
/// `unselected_reason`.
pub struct Request<'a> {
    pub nodes: &'a [Node],
    pub selected: &'a BTreeSet<String>,
    pub forced: &'a BTreeSet<String>,
    pub unselected_reason: &'a str,
}

/// Plans every stage. Fails only when a key cannot be computed (e.g. a source file is missing).
pub fn plan<W: World>(req: &Request, world: &mut W) -> Result<Plan, W::Error> {
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    let mut stages = Vec::new();
    for node in req.nodes {
        let id = node.id.clone();
        if !req.selected.contains(&id) {
            blocked.insert(id.clone());
            stages.push(PlannedStage {
                id,
                state: StageState::Blocked {
                    reason: req.unselected_reason.to_string(),
                },
                key: None,
            });
            continue;
        }
        if let Some(p) = node.inputs.values().find(|p| blocked.contains(*p)) {
            blocked.insert(id.clone());
            stages.push(PlannedStage {
                state: StageState::Blocked {
                    reason: format!("upstream `{p}` is blocked"),
                },
                id,
                key: None,
            });
            continue;
        }
        let pending: BTreeMap<&String, &String> = node
            .inputs
            .iter()
            .filter(|(_, p)| !digests.contains_key(*p))
            .collect();
        let forced = req.forced.contains(&id);
        let planned = if pending.is_empty() {
            let inputs = known_inputs(node, &digests);
            match decide(world, &id, &inputs, forced)? {
                Decision::Hit { key, digest } => {
                    digests.insert(id.clone(), digest.clone());
                    PlannedStage {
                        state: StageState::Cached { digest },
                        key: Some(key),
                        id,
                    }
                }
                Decision::Remote { key, digest } => {
                    digests.insert(id.clone(), digest.clone());
                    PlannedStage {
                        state: StageState::Remote { digest },
                        key: Some(key),
                        id,
                    }
                }
                Decision::Miss { key } => PlannedStage {
                    state: StageState::WouldRun {
                        reasons: miss_reasons(&*world, &id, &key, forced),
                    },
                    key: Some(key),
                    id,
                },
            }
        } else {
            PlannedStage {
                state: StageState::WouldRun {
                    reasons: upstream_reasons(world, node, &digests, &pending, forced)?,
                },
                key: None,
                id,
            }
        };
        stages.push(planned);
    }
    Ok(Plan::new(stages))
}

fn known_inputs(node: &Node, digests: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    node.inputs
        .iter()
        .filter_map(|(slot, p)| digests.get(p).map(|d| (slot.clone(), d.clone())))
        .collect()
}

/// Why a stage with a known key is not a hit, against its last recorded run.
fn miss_reasons(world: &impl World, id: &str, key: &StageKey, forced: bool) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if forced {
        reasons.push(Reason::Forced);
    }
    match world.last_run(id) {
        None => reasons.push(Reason::NeverRan),
        Some(last) => {
            let diff = key.diff(&last.key);
            if diff.is_empty() && !forced {
                reasons.push(if last.failed {
                    Reason::LastFailed
                } else {
                    Reason::OutputGone
                });
            }
            reasons.extend(diff.into_iter().map(Reason::Changed));
        }
    }
    reasons
}

/// Why a stage downstream of a stage that will run would run: those inputs, plus whatever else
/// of its key changed (compared with the pending inputs taken as unchanged).
fn upstream_reasons<W: World>(
    world: &mut W,
    node: &Node,
    digests: &BTreeMap<String, String>,
    pending: &BTreeMap<&String, &String>,
    forced: bool,
) -> Result<Vec<Reason>, W::Error> {
    let mut reasons = Vec::new();
    if forced {
        reasons.push(Reason::Forced);
    }
    let last = world.last_run(&node.id);
    if last.is_none() {
        reasons.push(Reason::NeverRan);
    }
    reasons.extend(pending.iter().map(|(slot, p)| Reason::Upstream {
        slot: slot.to_string(),
        producer: p.to_string(),
    }));
    if let Some(last) = last {
        let mut probe = known_inputs(node, digests);
        for slot in pending.keys() {
            let old = last.key.inputs.get(*slot).cloned().unwrap_or_default();
            probe.insert(slot.to_string(), old);
        }
        let key = world.key(&node.id, &probe)?;
        reasons.extend(key.diff(&last.key).into_iter().map(Reason::Changed));
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CACHE_FORMAT;

    /// Keys from a per-stage config number; a store of key → digest; last runs by id.
    #[derive(Default)]
    struct Fake {
        config: BTreeMap<String, u32>,
        store: BTreeMap<String, String>,
        last: BTreeMap<String, LastRun>,
        /// The remote cache: key → digest.
        remote: BTreeMap<String, String>,
    }

    impl World for Fake {
        type Error = std::convert::Infallible;
        fn key(
            &mut self,
            id: &str,
            inputs: &BTreeMap<String, String>,
        ) -> Result<StageKey, Self::Error> {
            Ok(StageKey {
                format: CACHE_FORMAT,
                kind: "fake".into(),
                version: 1,
                implementation: BTreeMap::new(),
                config: serde_json::json!({"id": id, "n": self.config.get(id).copied().unwrap_or(0)}),
                inputs: inputs.clone(),
                files: BTreeMap::new(),
            })
        }
        fn lookup(&self, key_hex: &str) -> Option<String> {
            self.store.get(key_hex).cloned()
        }
        fn last_run(&self, id: &str) -> Option<LastRun> {
            self.last.get(id).cloned()
        }
        fn remote_lookup(&self, key_hex: &str) -> Option<String> {
            self.remote.get(key_hex).cloned()
        }
    }

    /// a → b → c, a → d (slots named after the producer).
    fn chain() -> Vec<Node> {
        let node = |id: &str, ins: &[&str]| Node {
            id: id.into(),
            inputs: ins.iter().map(|p| (p.to_string(), p.to_string())).collect(),
        };
        vec![
            node("a", &[]),
            node("b", &["a"]),
            node("c", &["b"]),
            node("d", &["a"]),
        ]
    }

    /// Simulates a run of every stage: commits each key with the digest `out-<id>-<n>`.
    fn run_all(world: &mut Fake, nodes: &[Node]) {
        let mut digests = BTreeMap::new();
        for n in nodes {
            let inputs = known_inputs(n, &digests);
            let key = world.key(&n.id, &inputs).unwrap();
            let digest = format!("out-{}-{}", n.id, world.config.get(&n.id).unwrap_or(&0));
            world.store.insert(key.digest(), digest.clone());
            world
                .last
                .insert(n.id.clone(), LastRun { key, failed: false });
            digests.insert(n.id.clone(), digest);
        }
    }

    fn all(nodes: &[Node]) -> BTreeSet<String> {
        nodes.iter().map(|n| n.id.clone()).collect()
    }

    fn plan_of(
        world: &mut Fake,
        nodes: &[Node],
        selected: &BTreeSet<String>,
        forced: &[&str],
    ) -> Plan {
        let forced = forced.iter().map(|s| s.to_string()).collect();
        let req = Request {
            nodes,
            selected,
            forced: &forced,
            unselected_reason: "outside --until",
        };
        plan(&req, world).unwrap()
    }

    #[test]
    fn an_empty_cache_runs_everything_because_nothing_ever_ran() {
        let nodes = chain();
        let p = plan_of(&mut Fake::default(), &nodes, &all(&nodes), &[]);
        assert_eq!(p.would_run(), ["a", "b", "c", "d"]);
        match &p.get("c").unwrap().state {
            StageState::WouldRun { reasons } => assert_eq!(
                reasons,
                &[
                    Reason::NeverRan,
                    Reason::Upstream {
                        slot: "b".into(),
                        producer: "b".into()
                    }
                ]
            ),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn a_changed_source_takes_every_stage_downstream_with_it() {
        let nodes = chain();
        let mut w = Fake::default();
        run_all(&mut w, &nodes);
        assert!(
            plan_of(&mut w, &nodes, &all(&nodes), &[])
                .would_run()
                .is_empty()
        );
        w.config.insert("a".into(), 7);
        let p = plan_of(&mut w, &nodes, &all(&nodes), &[]);
        assert_eq!(p.would_run(), ["a", "b", "c", "d"]);
        let StageState::WouldRun { reasons } = &p.get("a").unwrap().state else {
            panic!()
        };
        assert_eq!(reasons, &[Reason::Changed("field `n`: 0 → 7".into())]);
        let StageState::WouldRun { reasons } = &p.get("c").unwrap().state else {
            panic!()
        };
        assert_eq!(
            reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            ["input `b` would change (upstream `b` will run)"]
        );
        assert!(p.get("c").unwrap().key.is_none());
    }

    #[test]
    fn a_changed_middle_stage_leaves_its_siblings_cached() {
        let nodes = chain();
        let mut w = Fake::default();
        run_all(&mut w, &nodes);
        w.config.insert("b".into(), 1);
        let p = plan_of(&mut w, &nodes, &all(&nodes), &[]);
        assert_eq!(p.would_run(), ["b", "c"]);
        assert_eq!(
            p.get("d").unwrap().state,
            StageState::Cached {
                digest: "out-d-0".into()
            }
        );
    }

    #[test]
    fn forced_removed_and_failed_stages_say_so() {
        let nodes = chain();
        let mut w = Fake::default();
        run_all(&mut w, &nodes);
        let p = plan_of(&mut w, &nodes, &all(&nodes), &["d"]);
        assert_eq!(p.would_run(), ["d"]);
        assert_eq!(
            p.get("d").unwrap().state,
            StageState::WouldRun {
                reasons: vec![Reason::Forced]
            }
        );
        let c_key = w.last["c"].key.digest();
        w.store.remove(&c_key);
        w.last.get_mut("b").unwrap().failed = true;
        let b_key = w.last["b"].key.digest();
        w.store.remove(&b_key);
        let p = plan_of(&mut w, &nodes, &all(&nodes), &[]);
        let reasons = |id| match &p.get(id).unwrap().state {
            StageState::WouldRun { reasons } => reasons.clone(),
            s => panic!("{s:?}"),
        };
        assert_eq!(reasons("b"), [Reason::LastFailed]);
        assert_eq!(
            reasons("c"),
            [Reason::Upstream {
                slot: "b".into(),
                producer: "b".into()
            }]
        );
    }

    #[test]
    fn stages_outside_the_selection_and_their_dependents_are_blocked() {
        let nodes = chain();
        let selected: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let p = plan_of(&mut Fake::default(), &nodes, &selected, &[]);
        assert_eq!(p.would_run(), ["a", "b"]);
        assert_eq!(
            p.get("c").unwrap().state,
            StageState::Blocked {
                reason: "outside --until".into()
            }
        );
    }

    #[test]
    fn plan_and_decide_agree_on_every_stage_with_known_inputs() {
        let nodes = chain();
        let mut w = Fake::default();
        run_all(&mut w, &nodes);
        w.config.insert("d".into(), 2);
        let p = plan_of(&mut w, &nodes, &all(&nodes), &[]);
        let mut digests = BTreeMap::new();
        for n in &nodes {
            let inputs = known_inputs(n, &digests);
            match (
                decide(&mut w, &n.id, &inputs, false).unwrap(),
                &p.get(&n.id).unwrap().state,
            ) {
                (Decision::Hit { digest, .. }, StageState::Cached { digest: d }) => {
                    assert_eq!(&digest, d);
                    digests.insert(n.id.clone(), digest);
                }
                (Decision::Miss { .. }, StageState::WouldRun { .. }) => {}
                (d, s) => panic!("{}: decide {d:?} but plan {s:?}", n.id),
            }
        }
    }

    #[test]
    fn stages_the_remote_holds_are_pulled_and_feed_their_dependents() {
        let nodes = chain();
        let mut a = Fake::default();
        run_all(&mut a, &nodes);
        // A fresh cache sharing A's remote: everything is on the remote, nothing ran here.
        let mut b = Fake {
            remote: std::mem::take(&mut a.store),
            ..Fake::default()
        };
        let p = plan_of(&mut b, &nodes, &all(&nodes), &[]);
        assert!(p.would_run().is_empty());
        assert_eq!(
            p.get("c").unwrap().state,
            StageState::Remote {
                digest: "out-c-0".into()
            }
        );
        // A local hit wins over the remote; a forced stage is neither.
        let a_key = p.get("a").unwrap().key.clone().unwrap().digest();
        b.store.insert(a_key, "out-a-0".into());
        let p = plan_of(&mut b, &nodes, &all(&nodes), &["d"]);
        assert!(matches!(
            p.get("a").unwrap().state,
            StageState::Cached { .. }
        ));
        assert_eq!(p.would_run(), ["d"]);
        // A tweak reruns only what it reaches; its siblings still come from the remote.
        b.config.insert("b".into(), 1);
        let p = plan_of(&mut b, &nodes, &all(&nodes), &[]);
        assert_eq!(p.would_run(), ["b", "c"]);
        assert!(matches!(
            p.get("d").unwrap().state,
            StageState::Remote { .. }
        ));
    }
}
