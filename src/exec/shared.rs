//! What the executors of a sweep's variants share when they run at once (`pipe run --sweep …
//! -j N`): a job budget of N stages across all variants, and a registry of the stage keys being
//! run right now, so a stage two variants have in common is computed once: the second waits for
//! the first to commit and then takes the cache hit (or runs it itself if the first failed).

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The budget and the in-flight registry; one per sweep, borrowed by every variant's executor.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<Inner>,
    changed: Condvar,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    running: BTreeSet<String>,
    /// Claimants blocked in [`Shared::claim`] (lets tests wait for a waiter).
    waiting: usize,
    /// Keys run (and committed) by some variant during this sweep: a `--force`d stage they
    /// share runs once, not once per variant.
    done: BTreeSet<String>,
}

/// What [`Shared::claim`] found.
pub enum Claim<'s> {
    /// Nobody runs the key: it is the caller's until the guard drops (after its commit).
    Mine(KeyGuard<'s>),
    /// Another variant ran the key meanwhile (it waited for it): decide again.
    WaitedFor,
}

/// The right to run one key; dropping it wakes whoever waits for that key.
pub struct KeyGuard<'s> {
    shared: &'s Shared,
    key: String,
    ok: bool,
}

/// One of the N job slots; dropping it gives the slot back.
pub struct Permit<'s> {
    shared: &'s Shared,
}

impl Shared {
    pub fn new(jobs: usize) -> Self {
        Self {
            state: Mutex::new(Inner {
                free: jobs.max(1),
                running: BTreeSet::new(),
                waiting: 0,
                done: BTreeSet::new(),
            }),
            changed: Condvar::new(),
        }
    }

    // A panic while holding the lock cannot leave the sets half-updated (each update is one
    // insert or remove), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'g>(&self, g: MutexGuard<'g, Inner>) -> MutexGuard<'g, Inner> {
        self.changed.wait(g).unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `key` when nobody runs it; otherwise blocks until its runner is done.
    pub fn claim(&self, key: &str) -> Claim<'_> {
        let mut g = self.lock();
        if !g.running.contains(key) {
            g.running.insert(key.to_string());
            return Claim::Mine(KeyGuard {
                shared: self,
                key: key.to_string(),
                ok: false,
            });
        }
        g.waiting += 1;
        self.changed.notify_all();
        while g.running.contains(key) {
            g = self.wait(g);
        }
        g.waiting -= 1;
        Claim::WaitedFor
    }

    /// Whether some variant already ran `key` in this sweep.
    pub fn ran(&self, key: &str) -> bool {
        self.lock().done.contains(key)
    }

    /// Blocks until one of the N slots is free and takes it.
    pub fn permit(&self) -> Permit<'_> {
        let mut g = self.lock();
        while g.free == 0 {
            g = self.wait(g);
        }
        g.free -= 1;
        Permit { shared: self }
    }
}

#[cfg(test)]
impl Shared {
    /// Blocks until `n` claimants wait.
    fn await_waiters(&self, n: usize) {
        let mut g = self.lock();
        while g.waiting < n {
            g = self.wait(g);
        }
    }
}

impl KeyGuard<'_> {
    /// Notes that the key's output was committed (before the guard drops).
    pub fn succeeded(&mut self) {
        self.ok = true;
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.running.remove(&self.key);
        if self.ok {
            g.done.insert(self.key.clone());
        }
        drop(g);
        self.shared.changed.notify_all();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.shared.lock().free += 1;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A second claimant of a running key waits for the first, then sees its result.
    #[test]
    fn a_second_claimant_waits_and_then_sees_the_result() {
        let shared = Shared::new(2);
        let committed = Mutex::new(None::<&str>);
        let Claim::Mine(mut first) = shared.claim("k") else {
            panic!("the first claim of a free key is the caller's");
        };
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                let claim = shared.claim("k");
                (
                    matches!(claim, Claim::WaitedFor),
                    *committed.lock().unwrap(),
                )
            });
            shared.await_waiters(1);
            *committed.lock().unwrap() = Some("digest");
            first.succeeded();
            drop(first);
            let (waited, seen) = second.join().unwrap();
            assert!(waited, "the second claimant must wait, not run");
            assert_eq!(seen, Some("digest"), "it must see the first's commit");
        });
        assert!(shared.ran("k"));
        assert!(!shared.ran("other"));
    }

    /// When the first runner fails, the waiter is woken and may claim the key itself.
    #[test]
    fn a_failure_of_the_first_lets_the_second_run() {
        let shared = Shared::new(2);
        let Claim::Mine(first) = shared.claim("k") else {
            panic!("free key");
        };
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                assert!(matches!(shared.claim("k"), Claim::WaitedFor));
                matches!(shared.claim("k"), Claim::Mine(_))
            });
            shared.await_waiters(1);
            drop(first); // never `succeeded`: a failed stage
            assert!(
                second.join().unwrap(),
                "after a failure the key is free again"
            );
        });
        assert!(!shared.ran("k"), "a failed key does not count as run");
    }

    #[test]
    fn other_keys_do_not_wait() {
        let shared = Shared::new(1);
        let _a = shared.claim("a");
        assert!(matches!(shared.claim("b"), Claim::Mine(_)));
    }

    /// No more than N permits are out at once.
    #[test]
    fn the_budget_bounds_concurrent_jobs() {
        let shared = Shared::new(2);
        let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _p = shared.permit();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
