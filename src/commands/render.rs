//! How a run looks in a terminal: the [`Lines`] observer turns the engine's events into the
//! lines `pipe run` prints (one per stage outcome, aligned), the remote's notices into warnings,
//! and owns the screen the stages draw their progress bars on. The small formats every command
//! shares (sizes, short digests, the header and the closing line) live here too.

use crate::cache::lock::Busy;
use crate::exec::event::{Blocked, Event, HitNote, Observer, Started};
use crate::plan::Reason;
use crate::record::{Outcome, RunRecord};
use crate::remote::Notice;
use crate::spec::Pipeline;
use indicatif::MultiProgress;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The lines of one run (one variant of a sweep): each starts with `prefix` (`[2] ` when the
/// variants of a sweep run at once), stage ids padded to the longest scheduled one.
pub struct Lines {
    prefix: String,
    width: AtomicUsize,
    screen: MultiProgress,
}

impl Lines {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            width: AtomicUsize::new(0),
            screen: MultiProgress::new(),
        }
    }

    fn say(&self, line: std::fmt::Arguments<'_>) {
        self.screen.suspend(|| outln!("{}{line}", self.prefix));
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new("")
    }
}

impl Observer for Lines {
    fn on(&self, event: &Event<'_>) {
        let w = self.width.load(Ordering::Relaxed);
        match *event {
            Event::Waiting { cache, holder } => waiting(cache, holder),
            Event::Scheduled { ids } => {
                let width = ids.iter().map(|s| s.len()).max().unwrap_or(0);
                self.width.store(width, Ordering::Relaxed);
            }
            Event::Cached { id, digest, note } => {
                let note = match note {
                    HitNote::None => "",
                    HitNote::InputsUnchanged => {
                        "  (planned to run: its inputs turned out unchanged)"
                    }
                    HitNote::RunByAnother => "  (run by another variant)",
                };
                self.say(format_args!(
                    "  {} {id:w$}  {}{note}",
                    tag("cached"),
                    short(digest)
                ));
            }
            Event::Pulled {
                id,
                digest,
                bytes,
                seconds,
            } => self.say(format_args!(
                "  {} {id:w$}  {}  {} in {seconds:.1} s",
                tag("pulled"),
                short(digest),
                human_bytes(bytes)
            )),
            Event::RemoteNotUsed { id } => self.say(format_args!(
                "  {} {id:w$}  not used: running it locally (then `pipe push --repair` \
                 replaces the remote copy)",
                tag("remote")
            )),
            Event::Damaged { id, error } => self.say(format_args!(
                "  {} {id:w$}  {error}: rebuilding",
                tag("damaged")
            )),
            Event::Started { id, kind, how } => match how {
                Started::Here => self.say(format_args!("  {} {id:w$}  ({kind})", tag("run"))),
                Started::Job { label, log } => self.say(format_args!(
                    "  {} {id:w$}  {label} ({kind}) → {}",
                    tag("submit"),
                    log.display()
                )),
                Started::Adopted { label, state } => self.say(format_args!(
                    "  {} {id:w$}  {label} ({state}, submitted by an earlier run)",
                    tag("waiting")
                )),
            },
            Event::Ran {
                id,
                seconds,
                job,
                report,
                dir,
            } => {
                let figures = if report.figures.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", report.figures.join(", "))
                };
                let job = job.map(|j| format!(" ({j})")).unwrap_or_default();
                self.say(format_args!(
                    "  {} {id:w$}  in {seconds:.1} s{job}: {} → {}{figures}",
                    tag("ran"),
                    report.summary,
                    dir.display()
                ));
            }
            Event::Failed { id, seconds } => self.say(format_args!(
                "  {} {id:w$}  after {seconds:.1} s",
                tag("failed")
            )),
            Event::Pruned {
                id,
                seconds,
                report,
            } => self.say(format_args!(
                "  {} {id:w$}  in {seconds:.1} s: {}",
                tag("pruned"),
                report.summary
            )),
            Event::Blocked { id, why } => match why {
                Blocked::UpstreamPruned(p) => self.say(format_args!(
                    "  {} {id:w$}  (upstream `{p}` was pruned)",
                    tag("blocked")
                )),
                Blocked::UpstreamFailed(f) => self.say(format_args!(
                    "  {} {id:w$}  (upstream `{f}` failed)",
                    tag("blocked")
                )),
                Blocked::RunStopped(e) => self.say(format_args!(
                    "  {} {id:w$}  (not started: the run stopped ({e}))",
                    tag("blocked")
                )),
            },
            // The stage's own line, as it wrote it.
            Event::Note { line } => self.screen.suspend(|| outln!("{line}")),
            Event::Pushed {
                remote,
                stages,
                bytes,
                seconds,
            } => outln!(
                "pushed {stages} stage(s) to {remote}: {} in {seconds:.1} s",
                human_bytes(bytes)
            ),
        }
    }

    fn progress(&self) -> &MultiProgress {
        &self.screen
    }
}

/// Waits for a busy cache (saying so first), or fails at once with `--no-wait`.
pub fn busy(no_wait: bool) -> Busy<'static> {
    if no_wait {
        Busy::Fail
    } else {
        Busy::Wait(&waiting)
    }
}

fn waiting(cache: &Path, holder: &str) {
    errln!(
        "waiting for another pipe run on {}{holder} to finish…",
        cache.display()
    );
}

/// The remote's notices, as warnings on stderr (errors under `--remote-required`).
pub fn remote_notice(n: &Notice<'_>) {
    match n {
        Notice::Failed { error, required } => {
            let (level, tail) = if *required {
                ("error", " (--remote-required: the command will exit 1)")
            } else {
                ("warning", "; carrying on with the local cache")
            };
            errln!("{level}: {error}{tail}");
        }
        Notice::Repaired { digest, files } => errln!(
            "  repair  object {}: {files} damaged remote file(s) replaced",
            short(digest)
        ),
        Notice::UploadPanicked { stage, remote } => {
            errln!("warning: the upload of `{stage}` to {remote} panicked")
        }
    }
}

/// `pipeline quickstart (9 stages), cache cache`.
pub fn header(p: &Pipeline, cache: &Path) {
    outln!(
        "pipeline {} ({} stages), cache {}",
        p.name,
        p.stages.len(),
        cache.display()
    );
}

/// `done in 1.2 s: 3 ran, 2 cached` (`, 1 pruned` when a search's pruner stopped a stage).
pub fn done_line(rec: &RunRecord) {
    let count = |o| rec.stages.values().filter(|s| s.outcome == o).count();
    let pruned = match count(Outcome::Pruned) {
        0 => String::new(),
        n => format!(", {n} pruned"),
    };
    outln!(
        "done in {:.1} s: {} ran, {} cached{pruned}",
        rec.seconds,
        count(Outcome::Ran),
        count(Outcome::Cached),
    );
}

/// A stage's outcome word, padded to its column and coloured on a terminal; plain text when
/// stdout is not a terminal or `NO_COLOR` is set (console's rules, which also honour `CLICOLOR`
/// and `CLICOLOR_FORCE`).
fn tag(word: &str) -> console::StyledObject<String> {
    let s = console::style(format!("{word:7}"));
    match word {
        "ran" | "pulled" => s.green(),
        "cached" | "remote" => s.cyan(),
        "failed" | "damaged" => s.red().bold(),
        "blocked" | "pruned" => s.yellow(),
        _ => s,
    }
}

/// The first 12 hex digits of a digest.
pub fn short(d: &str) -> &str {
    &d[..12.min(d.len())]
}

/// `1.2 MB`, `13.0 kB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// Reasons as one line: `forced; never ran in this pipeline`.
pub fn joined(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(Reason::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
