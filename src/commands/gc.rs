//! `pipe gc`: the local cache (what no kept run record reaches, and what dead runs left) or,
//! with `--remote`, the remote cache (objects no remote key record reaches, past a grace
//! period). The stores plan what to delete; this module decides from the records what is
//! alive, and shows and applies the plan.

use super::exit::{self, EXIT_INTERNAL, EXIT_INVALID, EXIT_OK};
use super::render::human_bytes;
use crate::record::Outcome;
use crate::settings::Settings;
use std::path::Path;
use std::time::Duration;

/// Decides from the run records what is alive (gc itself knows only the cache's layout), then
/// plans, lists or removes the rest, holding the cache lock throughout.
pub(super) fn local(cache: &Path, keep: usize, dry_run: bool, ignore_unreadable: bool) -> i32 {
    use crate::cache::gc::{self as cache_gc, Roots, What};
    let store = match crate::cache::Store::open(cache) {
        Ok(s) => s,
        Err(e) => return exit::store_failed(&e),
    };
    let _lock = match crate::cache::lock::CacheLock::acquire(cache, super::render::busy(false)) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    };
    let loaded = match crate::record::load_all(cache) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    };
    let (readable, unreadable) = crate::record::split(loaded);
    if !unreadable.is_empty() {
        let level = if ignore_unreadable {
            "warning"
        } else {
            "error"
        };
        for e in &unreadable {
            errln!("{level}: {e}");
        }
        if !ignore_unreadable {
            errln!(
                "gc removes only what no run record reaches, so it stops while {} record(s) \
                 cannot be read: repair or delete them, or pass --ignore-unreadable",
                unreadable.len()
            );
            return EXIT_INVALID;
        }
    }
    let cut = readable.len().saturating_sub(keep);
    let mut roots = Roots::default();
    for (i, (path, rec)) in readable.iter().enumerate() {
        if i < cut {
            roots.stale_records.push(path.clone());
            continue;
        }
        for s in rec.stages.values() {
            roots.digests.extend(s.digest.iter().cloned());
            if matches!(s.outcome, Outcome::Failed | Outcome::Pruned) {
                roots.resumable.insert(s.key.clone());
            }
        }
    }
    let plan = match cache_gc::plan(&store, &roots) {
        Ok(p) => p,
        Err(e) => return exit::store_failed(&e),
    };
    if dry_run {
        for item in &plan.items {
            let rel = item.path.strip_prefix(cache).unwrap_or(&item.path);
            outln!(
                "would remove {:<6}  {}  {}  ({})",
                item.what.label(),
                rel.display(),
                human_bytes(item.bytes),
                item.why
            );
        }
    } else if let Err(e) = cache_gc::apply(&store, &plan) {
        return exit::store_failed(&e);
    }
    outln!(
        "{}{} objects, {} run records, {} keys, {} work directories, {} temporary and {} stray \
         entries; {:.1} MB {}",
        if dry_run { "would remove " } else { "removed " },
        plan.count(What::Object),
        plan.count(What::Record),
        plan.count(What::Key),
        plan.count(What::Work),
        plan.count(What::Temp),
        plan.count(What::Stray),
        plan.bytes() as f64 / 1e6,
        if dry_run { "to free" } else { "freed" }
    );
    EXIT_OK
}

/// `pipe gc --remote [--grace D] [--dry-run]`.
pub(super) fn remote(s: &Settings, grace: Duration, dry_run: bool) -> i32 {
    let remote = match super::remote::open_required(s) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let plan = match remote.gc_plan(grace) {
        Ok(p) => p,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    };
    let bytes: u64 = plan.doomed.iter().map(|(_, l)| l.bytes).sum();
    for (digest, l) in &plan.doomed {
        let verb = if dry_run { "would remove" } else { "removing" };
        outln!(
            "{verb} object {digest}  {}  {} file(s)  (no key record reaches it)",
            human_bytes(l.bytes),
            l.files.len()
        );
        if !dry_run && let Err(e) = remote.delete_object(digest, l) {
            errln!("error: {e}");
            return EXIT_INTERNAL;
        }
    }
    outln!(
        "{} {} object(s), {} from {}; kept {} reached by key records and {} younger than {}{}",
        if dry_run { "would remove" } else { "removed" },
        plan.doomed.len(),
        human_bytes(bytes),
        remote.shown(),
        plan.reached,
        plan.young,
        humantime::format_duration(grace),
        if plan.keys_without_object > 0 {
            format!(
                "; {} key record(s) name an object the remote lacks (readers treat them as misses)",
                plan.keys_without_object
            )
        } else {
            String::new()
        }
    );
    EXIT_OK
}
