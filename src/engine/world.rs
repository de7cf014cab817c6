//! The planner's and the scheduler's view of the real cache ([`plan::World`]): stage keys
//! computed from the stage definitions and the stat cache, lookups in the local store and the
//! remote, and each stage's last recorded run.

use crate::cache::key::CACHE_FORMAT;
use crate::cache::statcache::StatCache;
use crate::cache::{StageKey, Store};
use crate::exec::RunError;
use crate::plan::{LastRun, World};
use crate::record::Outcome;
use crate::remote::Remote;
use crate::spec::{Pipeline, StageSpec};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) struct CacheWorld<'a> {
    pub pipeline: &'a Pipeline,
    pub store: &'a Store,
    pub stat: &'a mut StatCache,
    pub remote: Option<&'a Arc<Remote>>,
    pub last_runs: &'a OnceCell<BTreeMap<String, LastRun>>,
}

impl World for CacheWorld<'_> {
    type Error = RunError;

    fn key(&mut self, id: &str, inputs: &BTreeMap<String, String>) -> Result<StageKey, RunError> {
        compute_key(self.stat, &self.pipeline.stages[id], inputs)
    }

    fn lookup(&self, key_hex: &str) -> Option<String> {
        self.store.lookup(key_hex).hit().map(|e| e.digest)
    }

    fn remote_lookup(&self, key_hex: &str) -> Option<String> {
        self.remote?.lookup(key_hex).map(|e| e.digest)
    }

    fn last_run(&self, id: &str) -> Option<LastRun> {
        let all = self.last_runs.get_or_init(|| {
            let root = &self.store.root;
            let ids = self.pipeline.stages.keys();
            crate::record::last_stage_records(root, &self.pipeline.name, ids)
                .into_iter()
                .map(|(id, r)| {
                    let failed = r.outcome == Outcome::Failed;
                    (
                        id,
                        LastRun {
                            key: r.key_parts,
                            failed,
                        },
                    )
                })
                .collect()
        });
        all.get(id).cloned()
    }
}

/// The key of `spec` given its inputs' output digests (slot → digest).
fn compute_key(
    stat: &mut StatCache,
    spec: &StageSpec,
    inputs: &BTreeMap<String, String>,
) -> Result<StageKey, RunError> {
    let mut files = BTreeMap::new();
    let external = spec
        .config
        .external_files(&spec.base_dir)
        .map_err(|source| RunError::Sources {
            stage: spec.id.clone(),
            source,
        })?;
    for (role, paths) in external {
        let d = stat
            .digest_files(&spec.base_dir, &paths)
            .map_err(|source| RunError::Files {
                stage: spec.id.clone(),
                source,
            })?;
        files.insert(role, d);
    }
    Ok(StageKey {
        format: CACHE_FORMAT,
        kind: spec.config.kind().to_string(),
        version: spec.config.version(),
        implementation: spec.config.implementation(),
        config: spec.config.canonical(),
        inputs: inputs.clone(),
        files,
    })
}
