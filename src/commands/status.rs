//! `pipe status` (where every stage stands: the plan `run` would start from) and `pipe why`
//! (what made a stage and its upstream not cached), both rendered from the one planner.

use super::exit::{self, EXIT_OK};
use super::load_or_exit;
use super::render::joined;
use super::render::short;
use crate::engine::Engine;
use crate::plan::{Plan, Reason, StageState};
use crate::remote::Remote;
use crate::settings::Settings;
use crate::spec::{Override, Pipeline};
use std::path::Path;
use std::sync::Arc;

pub(super) fn status(s: &Settings, file: &Path, set: &[Override], json: bool) -> i32 {
    let remote = match super::remote::open(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match load_or_exit(file, set) {
        Ok(p) => status_of(&p, &s.cache, json, remote),
        Err(code) => code,
    }
}

fn status_of(p: &Pipeline, cache: &Path, json: bool, remote: Option<Arc<Remote>>) -> i32 {
    match Engine::new(p, cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| e.plan(None, &[]))
    {
        Ok(plan) if json => {
            let map: serde_json::Map<String, serde_json::Value> = plan
                .stages
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        serde_json::to_value(&s.state).unwrap_or_default(),
                    )
                })
                .collect();
            outln!("{}", serde_json::Value::Object(map));
            EXIT_OK
        }
        Ok(plan) => {
            print_status(&plan);
            EXIT_OK
        }
        Err(e) => exit::run_failed(&e),
    }
}

/// One line per stage: `cached`, `remote` (a run pulls it), `missing` (never ran), `stale`
/// (with why) or `blocked`.
fn print_status(plan: &Plan) {
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in &plan.stages {
        let id = &s.id;
        match &s.state {
            StageState::Cached { digest } => {
                outln!("{id:width$}  cached   {}", short(digest))
            }
            StageState::Remote { digest } => {
                outln!("{id:width$}  remote   {}", short(digest))
            }
            StageState::WouldRun { reasons } if reasons.contains(&Reason::NeverRan) => {
                outln!("{id:width$}  missing  ({})", joined(reasons))
            }
            StageState::WouldRun { reasons } => {
                outln!("{id:width$}  stale    {}", joined(reasons))
            }
            StageState::Blocked { reason } => outln!("{id:width$}  blocked  {reason}"),
        }
    }
}

pub(super) fn why(s: &Settings, file: &Path, stage: &str, set: &[Override]) -> i32 {
    let remote = match super::remote::open(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let p = match load_or_exit(file, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let planned = Engine::new(&p, &s.cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| e.why(stage));
    let stages = match planned {
        Ok(stages) => stages,
        Err(e) => return exit::run_failed(&e),
    };
    for s in stages {
        let sid = &s.id;
        let who = if sid == stage {
            format!("`{sid}`")
        } else {
            format!("upstream `{sid}`")
        };
        match s.state {
            StageState::Cached { .. } if sid == stage => {
                outln!("`{sid}` is cached: nothing changed")
            }
            StageState::Remote { .. } if sid == stage => {
                outln!("`{sid}` is not in the local cache but the remote holds it: a run pulls it")
            }
            StageState::Cached { .. } | StageState::Remote { .. } => {}
            StageState::Blocked { reason } => outln!("{who} is blocked: {reason}"),
            StageState::WouldRun { reasons } => {
                for r in reasons {
                    match r {
                        Reason::NeverRan => outln!("{who} has never run in this pipeline"),
                        r => outln!("{who}: {r}"),
                    }
                }
            }
        }
    }
    EXIT_OK
}
