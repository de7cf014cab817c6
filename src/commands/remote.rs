//! The remote's commands (`pipe push`, `pipe pull`, `pipe remote status`) and the one place
//! that decides what a remote that cannot be opened means for a command: bad settings are the
//! user's to fix (exit 2); an unreachable, refusing or missing remote is a warning (the
//! command carries on with the local cache) unless `--remote-required` makes it exit 1.

use super::exit::{self, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use super::load_or_exit;
use super::render::{self, human_bytes};
use crate::cache::store::{KeyEntry, Store};
use crate::engine::Engine;
use crate::plan::StageState;
use crate::remote::{Remote, RemoteError};
use crate::settings::{Settings, SettingsError};
use crate::spec::Override;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The remote for a command that can do without one (`run`, `status`, `why`): `Err(code)`
/// when the command must stop.
pub(super) fn open(s: &Settings) -> Result<Option<Arc<Remote>>, i32> {
    let required = s.remote.remote_required;
    match connect(s) {
        Ok(r) => Ok(r),
        Err(e) if e.is_user_error() => {
            errln!("error: {e}");
            Err(EXIT_INVALID)
        }
        Err(e) if required => {
            errln!("error: {e}");
            Err(EXIT_INTERNAL)
        }
        Err(e) => {
            errln!("warning: {e}; carrying on with the local cache");
            Ok(None)
        }
    }
}

/// The remote for a command that is about the remote (`push`, `pull`, `remote status`,
/// `gc --remote`): any failure to open it ends the command.
pub(super) fn open_required(s: &Settings) -> Result<Arc<Remote>, i32> {
    match connect(s) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => {
            errln!(
                "error: no remote cache is configured: set `url` in the [remote] section of \
                 pipe.toml, PIPE_REMOTE, or pass --remote URL"
            );
            Err(EXIT_INVALID)
        }
        Err(e) => {
            errln!("error: {e}");
            Err(exit::code(e.is_user_error()))
        }
    }
}

/// The remote the settings name, connected, its notices shown as warnings.
fn connect(s: &Settings) -> Result<Option<Arc<Remote>>, SettingsError> {
    let Some((target, options)) = s.remote_target()? else {
        return Ok(None);
    };
    let notices = Box::new(|n: &crate::remote::Notice<'_>| render::remote_notice(n));
    Ok(Some(Remote::connect(target, options, notices)?))
}

/// The exit code a command ends with: 1 when the remote failed under `--remote-required`.
pub(super) fn exit_code(remote: &Remote, code: i32) -> i32 {
    if remote.required() && remote.failed() && code == EXIT_OK {
        errln!(
            "error: the remote {} failed (see above) and --remote-required is set",
            remote.shown()
        );
        EXIT_INTERNAL
    } else {
        code
    }
}

/// `pipe push [FILE…] [--repair]`: the outputs the latest runs of these pipelines reached
/// (every key of the local cache without files), objects first, key records next, then the
/// pipelines' run records (shared experiments).
pub(super) fn push(s: &Settings, files: &[PathBuf], repair: bool) -> i32 {
    let cache = s.cache.as_path();
    let remote = match open_required(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let store = match Store::open_existing(cache) {
        Ok(Some(s)) => s,
        Ok(None) => {
            outln!("nothing to push: {} is not a cache yet", cache.display());
            return EXIT_OK;
        }
        Err(e) => return exit::store_failed(&e),
    };
    let _lock = match crate::cache::lock::CacheLock::acquire(cache, render::busy(false)) {
        Ok(l) => l,
        Err(e) => {
            return exit::fail(&e, e.is_user_error());
        }
    };
    let entries = if files.is_empty() {
        local_keys(&store)
    } else {
        match latest_entries(cache, files) {
            Ok(e) => e,
            Err(code) => return code,
        }
    };
    let t0 = Instant::now();
    let (mut objects, mut bytes, mut failed) = (0, 0u64, 0);
    let width = entries.iter().map(|e| e.stage.len()).max().unwrap_or(0);
    for e in &entries {
        let res = match remote.push_object(&store, &e.digest, repair) {
            Ok(b) => remote.push_key(e).map(|()| b),
            Err(err) => Err(err),
        };
        match res {
            Ok(b) => {
                objects += usize::from(b > 0);
                bytes += b;
                let what = if b > 0 { "pushed " } else { "present" };
                outln!(
                    "  {what} {:width$}  {}  {}",
                    e.stage,
                    &e.digest[..12],
                    human_bytes(b)
                );
            }
            Err(err) => {
                failed += 1;
                errln!("error: {err}");
                if matches!(
                    err,
                    RemoteError::Unreachable { .. } | RemoteError::Refused { .. }
                ) {
                    break;
                }
            }
        }
    }
    outln!(
        "pushed {objects} object(s), {} in {:.1} s, and {} key record(s) to {}{}",
        human_bytes(bytes),
        t0.elapsed().as_secs_f64(),
        entries.len() - failed,
        remote.shown(),
        failed_suffix(failed)
    );
    if failed > 0 {
        return exit_for(failed);
    }
    match push_runs(&remote, cache, files) {
        Ok(failed) => exit_for(failed),
        Err(code) => code,
    }
}

/// Shares the run records of these pipelines (every local one without FILE) on the remote,
/// scrubbed of secrets and of this machine's paths, with who pushed them from where; a record
/// the remote holds already is left as it is. The number that failed, or the exit code.
fn push_runs(remote: &Remote, cache: &Path, files: &[PathBuf]) -> Result<usize, i32> {
    let mut names = Vec::new();
    for f in files {
        names.push(load_or_exit(f, &[])?.name);
    }
    let runs = super::history::local(cache)?;
    let shared = super::history::shared_now();
    let scrub = super::history::Scrub::here();
    let (mut pushed, mut present, mut scrubbed, mut failed) = (0, 0, 0, 0);
    for r in runs
        .iter()
        .filter(|r| names.is_empty() || names.contains(&r.record.pipeline))
    {
        let name = format!("{}.json", r.id);
        if !crate::remote::runs::is_run_name(&name) {
            errln!("warning: run record {name}: not a name pipe writes; not shared");
            continue;
        }
        let (bytes, changed) = super::history::shareable(&r.record, &shared, &scrub);
        match remote.push_run(&name, bytes) {
            Ok(true) => {
                pushed += 1;
                scrubbed += usize::from(changed > 0);
            }
            Ok(false) => present += 1,
            Err(e) => {
                failed += 1;
                errln!("error: {e}");
                break;
            }
        }
    }
    outln!(
        "shared {pushed} run record(s) as {}@{} ({present} already there){}",
        shared.user,
        shared.host,
        failed_suffix(failed)
    );
    if scrubbed > 0 {
        outln!(
            "  {scrubbed} of them named this machine's paths or a credential: shared with the \
             project directory as relative paths, the home directory as ~ and credentials as ***"
        );
    }
    Ok(failed)
}

/// "; N failed" after a push/pull summary, or nothing.
fn failed_suffix(failed: usize) -> String {
    if failed > 0 {
        format!("; {failed} failed")
    } else {
        String::new()
    }
}

/// A push or pull with failed transfers ends with exit 1.
fn exit_for(failed: usize) -> i32 {
    if failed > 0 { EXIT_INTERNAL } else { EXIT_OK }
}

/// Every readable key record of the local cache, in key order.
fn local_keys(store: &Store) -> Vec<KeyEntry> {
    let mut files = Vec::new();
    if let Ok(shards) = std::fs::read_dir(store.root.join("keys")) {
        for shard in shards.flatten() {
            if let Ok(rd) = std::fs::read_dir(shard.path()) {
                files.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| serde_json::from_slice::<KeyEntry>(&b).ok())
        .filter(|e| store.has_key(&e.key.digest()))
        .collect()
}

/// The stages the latest run of each pipeline reached (with an output).
fn latest_entries(cache: &Path, files: &[PathBuf]) -> Result<Vec<KeyEntry>, i32> {
    let (records, _) = match crate::record::load_all(cache) {
        Ok(l) => crate::record::split(l),
        Err(e) => {
            errln!("error: {e}");
            return Err(EXIT_INTERNAL);
        }
    };
    let mut out = Vec::new();
    for f in files {
        let p = load_or_exit(f, &[])?;
        let Some((_, rec)) = records.iter().rev().find(|(_, r)| r.pipeline == p.name) else {
            errln!(
                "warning: {} has no recorded run: nothing to push",
                f.display()
            );
            continue;
        };
        for (id, s) in &rec.stages {
            if let Some(d) = &s.digest {
                out.push(KeyEntry {
                    digest: d.clone(),
                    stage: id.clone(),
                    key: s.key_parts.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// `pipe pull FILE [--until STAGE]`: downloads every stage the remote holds that the local
/// cache lacks, runs nothing.
pub(super) fn pull(s: &Settings, file: &Path, set: &[Override], until: Option<&str>) -> i32 {
    let cache = s.cache.as_path();
    let remote = match open_required(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let p = match load_or_exit(file, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let _lock = match crate::engine::lock_cache(cache, render::busy(false)) {
        Ok(l) => l,
        Err(e) => return exit::run_failed(&e),
    };
    let plan = match Engine::new(&p, cache)
        .map(|e| e.with_remote(Some(Arc::clone(&remote))))
        .and_then(|mut e| e.plan(until, &[]))
    {
        Ok(plan) => plan,
        Err(e) => return exit::run_failed(&e),
    };
    let store = match Store::open(cache) {
        Ok(s) => s,
        Err(e) => return exit::store_failed(&e),
    };
    render::header(&p, cache);
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let (mut pulled, mut failed, mut bytes) = (0, 0, 0u64);
    for s in &plan.stages {
        let id = &s.id;
        match &s.state {
            StageState::Cached { digest } => outln!("  cached  {id:width$}  {}", &digest[..12]),
            StageState::Remote { .. } => {
                let entry = s.key.as_ref().and_then(|k| remote.lookup(&k.digest()));
                let Some(entry) = entry else { continue };
                match remote.pull(&store, &entry) {
                    Ok(r) => {
                        pulled += 1;
                        bytes += r.bytes;
                        outln!(
                            "  pulled  {id:width$}  {}  {} in {:.1} s",
                            &r.digest[..12],
                            human_bytes(r.bytes),
                            r.seconds
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        errln!("error: {e}");
                    }
                }
            }
            StageState::WouldRun { .. } => {
                outln!("  absent  {id:width$}  (not on the remote: `pipe run` computes it)")
            }
            StageState::Blocked { .. } => {}
        }
    }
    outln!(
        "{pulled} stage(s) pulled, {} from {}{}",
        human_bytes(bytes),
        remote.shown(),
        failed_suffix(failed)
    );
    exit_for(failed)
}

/// `pipe remote status FILE`: for every stage, whether the local cache and the remote hold
/// its output.
pub(super) fn status(s: &Settings, file: &Path, set: &[Override]) -> i32 {
    let cache = s.cache.as_path();
    let remote = match open_required(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let p = match load_or_exit(file, set) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let plan = match Engine::new(&p, cache)
        .map(|e| e.with_remote(Some(Arc::clone(&remote))))
        .and_then(|mut e| e.plan(None, &[]))
    {
        Ok(plan) => plan,
        Err(e) => return exit::run_failed(&e),
    };
    outln!("remote {}", remote.shown());
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let mut on_remote = 0;
    for s in &plan.stages {
        let id = &s.id;
        let on = s
            .key
            .as_ref()
            .is_some_and(|k| remote.lookup(&k.digest()).is_some());
        on_remote += usize::from(on);
        let line = match (&s.state, on) {
            (StageState::Cached { digest }, true) => format!("local+remote  {}", &digest[..12]),
            (StageState::Cached { digest }, false) => format!("local only    {}", &digest[..12]),
            (StageState::Remote { digest }, _) => format!("remote        {}", &digest[..12]),
            (StageState::WouldRun { .. }, _) if s.key.is_some() => "neither".to_string(),
            (StageState::WouldRun { .. }, _) => {
                "unknown       (an upstream stage is in neither)".into()
            }
            (StageState::Blocked { reason }, _) => format!("blocked       {reason}"),
        };
        outln!("{id:width$}  {line}");
    }
    outln!(
        "{on_remote} of {} stage(s) on the remote",
        plan.stages.len()
    );
    exit_code(&remote, EXIT_OK)
}
