//! `pipe run --dry-run` (also for each variant of a sweep): the plan a real run would start
//! from, one line a stage; runs and locks nothing.

use super::exit::{self, EXIT_OK};
use super::render::{self, joined};
use crate::engine::{Engine, RunError, RunOptions};
use crate::plan::StageState;
use crate::remote::Remote;
use crate::spec::Pipeline;
use std::path::Path;
use std::sync::Arc;

/// `run --dry-run`: the plan a real run would start from; runs and locks nothing.
pub(super) fn plan_only(
    p: &Pipeline,
    cache: &Path,
    opts: &RunOptions,
    remote: Option<Arc<Remote>>,
) -> i32 {
    let planned = Engine::new(p, cache)
        .map(|e| e.with_remote(remote))
        .and_then(|mut e| {
            let missing = e.missing_paths(opts.until.as_deref())?;
            match e.plan(opts.until.as_deref(), &opts.force) {
                Ok(plan) => Ok((plan, missing)),
                // A missing folder cannot even be listed for its key: name every missing path.
                Err(_) if !missing.is_empty() => Err(RunError::MissingPaths(missing)),
                Err(e) => Err(e),
            }
        });
    let (plan, missing) = match planned {
        Ok(planned) => planned,
        Err(e) => return exit::run_failed(&e),
    };
    render::header(p, cache);
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut cached = 0;
    for s in &plan.stages {
        match &s.state {
            StageState::Cached { digest } => {
                cached += 1;
                outln!("  cached    {:width$}  {}", s.id, render::short(digest));
            }
            StageState::Remote { digest } => {
                cached += 1;
                outln!(
                    "  remote    {:width$}  {}  (would be pulled)",
                    s.id,
                    render::short(digest)
                );
            }
            StageState::WouldRun { reasons } => {
                outln!("  would run {:width$}  ({})", s.id, joined(reasons))
            }
            StageState::Blocked { .. } => {}
        }
    }
    outln!(
        "dry run: {cached} cached, {} would run (at most: a stage whose inputs come out \
         byte-identical stays cached)",
        plan.would_run().len()
    );
    if missing.is_empty() {
        EXIT_OK
    } else {
        exit::run_failed(&RunError::MissingPaths(missing))
    }
}
