//! Write-through: each committed stage is uploaded on its own thread while the next stages
//! run (its object, the objects it refers to, then its key record), and the run waits for
//! every upload before it ends, with a progress line, so `pipe run` never exits with a
//! half-pushed stage it believes pushed. Plain threads, each blocking on the shared runtime:
//! a runtime's own blocking pool cannot block on it again.

use super::{Remote, RemoteError};
use indicatif::{ProgressBar, ProgressStyle};
use pipe_cache::store::{KeyEntry, Store};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Upload = JoinHandle<Result<u64, RemoteError>>;

/// The uploads started by this process and not yet waited for.
#[derive(Default)]
pub(super) struct Queue {
    pending: Mutex<Vec<(String, Upload)>>,
    started: Mutex<Option<Instant>>,
}

/// What the uploads of a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pushed {
    pub stages: usize,
    pub bytes: u64,
    pub seconds: f64,
}

impl Remote {
    /// Whether runs upload what they commit (not with `--no-push`, nor once the remote failed).
    pub fn pushes(&self) -> bool {
        self.push && self.usable()
    }

    /// Starts uploading the output `entry` names (committed in the cache at `root`) in the
    /// background; [`Remote::wait_uploads`] waits for it.
    pub fn push_later(self: &Arc<Self>, root: &Path, entry: KeyEntry) {
        if !self.pushes() {
            return;
        }
        let me = Arc::clone(self);
        let store = Store {
            root: root.to_path_buf(),
        };
        let stage = entry.stage.clone();
        let handle = std::thread::spawn(move || {
            let bytes = me.push_object(&store, &entry.digest, false)?;
            me.push_key(&entry)?;
            Ok(bytes)
        });
        if let Ok(mut started) = self.uploads.started.lock() {
            started.get_or_insert_with(Instant::now);
        }
        if let Ok(mut p) = self.uploads.pending.lock() {
            p.push((stage, handle));
        }
    }

    /// Waits for every background upload; failures are reported (see [`Remote::report`]).
    pub fn wait_uploads(&self) -> Pushed {
        let pending = match self.uploads.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Pushed::default(),
        };
        if pending.is_empty() {
            return Pushed::default();
        }
        let pb = ProgressBar::new(pending.len() as u64);
        if let Ok(style) = ProgressStyle::with_template("  {msg} {pos}/{len} {elapsed}") {
            pb.set_style(style);
        }
        pb.set_message(format!("uploading to {}", self.shown()));
        pb.enable_steady_tick(Duration::from_millis(200));
        let mut done = Pushed::default();
        for (stage, handle) in pending {
            match handle.join() {
                Ok(Ok(bytes)) => {
                    done.stages += 1;
                    done.bytes += bytes;
                }
                Ok(Err(e)) => pb.suspend(|| self.report(&e)),
                Err(_) => pb.suspend(|| {
                    self.notify(&super::Notice::UploadPanicked {
                        stage: &stage,
                        remote: self.shown(),
                    })
                }),
            }
            pb.inc(1);
        }
        pb.finish_and_clear();
        let started = self.uploads.started.lock().ok().and_then(|mut s| s.take());
        done.seconds = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        done
    }
}
