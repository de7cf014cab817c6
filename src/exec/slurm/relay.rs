//! A pruned search on Slurm: the training a search watches runs in a job, the pruner in the
//! driver. The job appends each epoch's curve row to `<job>.epochs` and waits for the driver's
//! verdict on it (line N of `<job>.verdicts` answers line N of the epochs: `go` or `stop`); the
//! driver reads new epochs at each poll, asks its observer (the search's study) and writes the
//! verdicts. Waiting makes the decisions those of a local run: the trial stops after the very
//! epoch the pruner judged, whatever the poll interval.
//!
//! A driver killed meanwhile: the next one adopts the job and answers its epochs from the first
//! (its study hears the whole curve). Nobody answering for [`PATIENCE`], the job stops asking
//! and trains to the end (a complete trial, never a wrong one).

use crate::ml::backend::DeviceChoice;
use crate::ml::curve::CurveRow;
use crate::ml::train::EpochDone;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a job waits for a verdict before it trains on unasked.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// One epoch as the job tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Told {
    row: CurveRow,
    epochs: u32,
    replayed: bool,
    #[serde(default)]
    device: DeviceChoice,
}

const GO: &str = "go";
const STOP: &str = "stop";

/// The two files of job `id` of `name` in `dir`.
pub fn paths(dir: &Path, name: &str, id: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.{id}.epochs")),
        dir.join(format!("{name}.{id}.verdicts")),
    )
}

/// The job's side: tells each epoch, waits for the verdict.
pub struct Asker {
    epochs: PathBuf,
    verdicts: PathBuf,
    told: std::sync::Mutex<usize>,
    patience: Duration,
    gave_up: AtomicBool,
}

impl Asker {
    /// `prefix`: `<dir>/<name>.<id>` (the files are `prefix.epochs` and `prefix.verdicts`).
    pub fn new(prefix: &Path, patience: Duration) -> Asker {
        let with = |ext: &str| {
            let mut p = prefix.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        Asker {
            epochs: with(".epochs"),
            verdicts: with(".verdicts"),
            told: std::sync::Mutex::new(0),
            patience,
            gave_up: AtomicBool::new(false),
        }
    }

    /// Tells `done`; whether the training goes on (the driver's verdict). An error writing the
    /// epoch, or no verdict within the patience: it goes on, and asks no more.
    pub fn ask(&self, done: &EpochDone) -> Result<bool, String> {
        if self.gave_up.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
        let line = serde_json::to_string(&Told {
            row: done.row.clone(),
            epochs: done.epochs,
            replayed: done.replayed,
            device: done.device,
        })
        .expect("an epoch serialises");
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.epochs)
            .and_then(|mut f| writeln!(f, "{line}").and_then(|()| f.sync_data()));
        if let Err(e) = appended {
            self.gave_up.store(true, Ordering::SeqCst);
            return Err(format!("{}: {e}", self.epochs.display()));
        }
        let n = *told;
        *told += 1;
        let deadline = Instant::now() + self.patience;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.verdicts).unwrap_or_default();
            if let Some(v) = text.lines().nth(n) {
                return Ok(v.trim() != STOP);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.gave_up.store(true, Ordering::SeqCst);
        Err(format!(
            "no verdict on epoch {} within {} s: the search's driver is gone; training on",
            done.row.epoch,
            self.patience.as_secs()
        ))
    }
}

/// The driver's side for one job.
#[derive(Debug)]
pub struct Answerer {
    epochs: PathBuf,
    verdicts: PathBuf,
    said: Vec<&'static str>,
}

impl Answerer {
    pub fn new((epochs, verdicts): (PathBuf, PathBuf)) -> Answerer {
        Answerer {
            epochs,
            verdicts,
            said: Vec::new(),
        }
    }

    /// Answers the epochs told since the last call with `decide` (whether the training goes
    /// on), in order; the verdicts file is rewritten whole.
    pub fn answer(&mut self, mut decide: impl FnMut(&EpochDone) -> bool) -> std::io::Result<()> {
        let text = match std::fs::read_to_string(&self.epochs) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        // Only whole lines: the job may be writing the next one.
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        let before = self.said.len();
        for line in whole.lines().skip(before) {
            let Ok(t) = serde_json::from_str::<Told>(line) else {
                // A line the job did not write whole (it died): nothing more is asked.
                break;
            };
            let done = EpochDone {
                row: t.row,
                epochs: t.epochs,
                images_per_second: 0.0,
                device: t.device,
                eta: Duration::ZERO,
                replayed: t.replayed,
            };
            self.said.push(if decide(&done) { GO } else { STOP });
        }
        if self.said.len() == before {
            return Ok(());
        }
        let mut out = self.said.join("\n");
        out.push('\n');
        pipe_fs::write_atomic(&self.verdicts, out.as_bytes(), pipe_fs::Temp::Unique)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: u32, val_bacc: f64) -> EpochDone {
        EpochDone {
            row: CurveRow {
                epoch: e,
                lr: 0.1,
                train_loss: 0.5,
                train_acc: 0.5,
                train_bacc: 0.5,
                val_loss: 0.5,
                val_acc: 0.5,
                val_bacc,
                test_bacc: None,
            },
            epochs: 3,
            images_per_second: 10.0,
            device: DeviceChoice::Cpu,
            eta: Duration::from_secs(1),
            replayed: e == 1,
        }
    }

    #[test]
    fn each_epoch_waits_for_the_drivers_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let asker = Asker::new(&dir.path().join("j.7"), Duration::from_secs(30));
        let mut answerer = Answerer::new(paths(dir.path(), "j", "7"));
        let seen = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let job = s.spawn(|| {
                [0.9, 0.8, 0.3]
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| asker.ask(&epoch(i as u32 + 1, b)).unwrap())
                    .collect::<Vec<bool>>()
            });
            while !job.is_finished() {
                answerer
                    .answer(|d| {
                        seen.lock().unwrap().push((d.row.epoch, d.replayed));
                        d.row.val_bacc > 0.5
                    })
                    .unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(job.join().unwrap(), [true, true, false]);
        });
        assert_eq!(
            *seen.lock().unwrap(),
            [(1, true), (2, false), (3, false)],
            "each epoch answered once, in order"
        );
        // A driver that comes back answers the whole curve again, to the same file.
        let mut again = Answerer::new(paths(dir.path(), "j", "7"));
        let mut n = 0;
        again
            .answer(|_| {
                n += 1;
                true
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 3);
    }

    #[test]
    fn without_an_answer_the_job_trains_on_and_asks_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let asker = Asker::new(&dir.path().join("j.1"), Duration::from_millis(100));
        let e = asker.ask(&epoch(1, 0.1)).unwrap_err();
        assert!(e.contains("no verdict on epoch 1"), "{e}");
        let t = Instant::now();
        assert_eq!(asker.ask(&epoch(2, 0.1)), Ok(true));
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
