//! Batches prepared ahead of the model: a producer thread runs the batch iterator (decode,
//! augment, dropout masks, upload to the device) while the caller's thread runs the steps.
//!
//! The queue between them is bounded ([`PREFETCH_DEPTH`]), so at most `depth + 2` batches exist
//! at once (the one in the step, those queued, and one finished by the producer waiting for
//! room): memory does not grow with the epoch. Determinism does not depend on timing: the
//! iterator draws every random number (masks; augmentation is seeded per epoch and image) in
//! batch order on its own thread, and the channel hands the batches over in that order.

use std::sync::mpsc::sync_channel;

/// Batches queued between the producer and the training step.
pub(super) const PREFETCH_DEPTH: usize = 2;

/// Runs `consume` on every item of `produce`, in order, while a second thread produces the
/// next items (at most `depth` queued). The first error of `consume` ends the loop; the
/// producer then stops at its next hand-over.
pub(super) fn prefetched<T: Send, E>(
    depth: usize,
    produce: impl Iterator<Item = T> + Send,
    mut consume: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<T>(depth);
        scope.spawn(move || {
            for item in produce {
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        // On an early return `rx` is dropped, so a producer blocked in `send` wakes up and ends.
        for item in rx {
            consume(item)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Waits until `cond` holds; false after `limit` (a generous bound, so a slow machine does
    /// not fail the test, while a producer that never runs ahead does).
    fn eventually(cond: impl Fn() -> bool, limit: Duration) -> bool {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn the_producer_runs_ahead_of_a_slow_consumer_within_the_bound() {
        const N: usize = 8;
        let prepared = AtomicUsize::new(0);
        let items = (0..N).inspect(|_| {
            prepared.fetch_add(1, Ordering::SeqCst);
        });
        let mut seen = Vec::new();
        prefetched(PREFETCH_DEPTH, items, |k| -> Result<(), String> {
            // A step that lasts until batch k+1 is ready: it never ends on the sequential
            // path, where batch k+1 is made only after this step returns.
            if k + 1 < N
                && !eventually(
                    || prepared.load(Ordering::SeqCst) > k + 1,
                    Duration::from_secs(20),
                )
            {
                return Err(format!("batch {} was not prepared during step {k}", k + 1));
            }
            // Bounded: this one, `depth` queued and one waiting for room, no more.
            let ahead = prepared.load(Ordering::SeqCst);
            if ahead > k + 2 + PREFETCH_DEPTH {
                return Err(format!("{ahead} batches prepared during step {k}"));
            }
            seen.push(k);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..N).collect::<Vec<_>>());
    }

    #[test]
    fn an_error_stops_the_producer() {
        let prepared = AtomicUsize::new(0);
        let items = (0..1000).inspect(|_| {
            prepared.fetch_add(1, Ordering::SeqCst);
        });
        let r = prefetched(
            PREFETCH_DEPTH,
            items,
            |k| if k == 3 { Err(k) } else { Ok(()) },
        );
        assert_eq!(r, Err(3));
        // The producer ended at its next hand-over instead of making all 1000.
        assert!(prepared.load(Ordering::SeqCst) <= 4 + 1 + PREFETCH_DEPTH);
    }
}
