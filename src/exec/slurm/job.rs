//! One stage as one Slurm job: its name (which carries the stage key, so a later driver finds
//! the job again), its batch script (`pipe run FILE --only STAGE` with the driver's `--cache`,
//! `--set` and `--device`, so the job computes the same key and commits to the same cache), and
//! the `sbatch` options its resources ask for.

use super::SlurmError;
use crate::cache::StageKey;
use crate::ml::device::DeviceChoice;
use crate::spec::resources::Resources;
use std::path::{Path, PathBuf};

/// Hex digits of the key in a job's name: enough to tell keys apart in one queue.
const KEY_CHARS: usize = 16;

/// `pipe.STAGE.KEY16.CACHE8`: the same key run for another cache (another project, another
/// user's checkout) is another job, so a driver only ever waits for jobs committing to its own.
pub fn name(stage: &str, key: &StageKey, cache_tag: &str) -> String {
    let hex = key.digest();
    format!(
        "pipe.{stage}.{}.{cache_tag}",
        &hex[..KEY_CHARS.min(hex.len())]
    )
}

/// Eight hex digits naming the cache directory (its absolute path) in job names.
pub fn cache_tag(abs_cache: &Path) -> String {
    let h = blake3::hash(abs_cache.as_os_str().as_encoded_bytes());
    h.to_hex()[..8].to_string()
}

/// What a job's `pipe run --only STAGE` leaves beside its log once the stage is committed (or
/// found committed): the driver counts the stage done only when its job ended successfully
/// *and* left this record for the stage's key. The key being in the cache says nothing about
/// the job: a forced rerun starts with it there, and a concurrent writer may commit it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    pub stage: String,
    /// The stage key's hex digest.
    pub key: String,
    /// The output digest the job committed or found (none when the stage was pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A search's pruner stopped the stage (a training) early: where, and its last metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
}

/// A stage a search's pruner stopped in its job: its [`crate::stages::StageError::Pruned`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pruned {
    pub epoch: u32,
    pub epochs: u32,
    pub val_loss: f64,
    pub val_bacc: f64,
}

impl Eq for Pruned {}

impl Pruned {
    pub fn error(self) -> crate::stages::StageError {
        crate::stages::StageError::Pruned {
            epoch: self.epoch,
            epochs: self.epochs,
            val_loss: self.val_loss,
            val_bacc: self.val_bacc,
        }
    }
}

impl Completion {
    /// The record of `stage` in a successful run's record, if it has an output or was pruned.
    pub fn of(rec: &crate::record::RunRecord, stage: &str) -> Option<Self> {
        let s = rec.stages.get(stage)?;
        let pruned = if s.outcome == crate::record::Outcome::Pruned {
            let m = |name: &str| s.report.metrics.get(name).copied();
            Some(Pruned {
                epoch: m(crate::record::PRUNED_EPOCH)? as u32,
                epochs: m("epochs")? as u32,
                val_loss: m("val_loss")?,
                val_bacc: m("val_bacc")?,
            })
        } else {
            None
        };
        if pruned.is_none() && s.digest.is_none() {
            return None;
        }
        Some(Self {
            stage: stage.to_string(),
            key: s.key.clone(),
            digest: s.digest.clone(),
            pruned,
        })
    }

    /// Written whole or not at all: the driver may read it while the job ends.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).expect("a completion record serialises");
        pipe_fs::write_atomic(path, &text, pipe_fs::Temp::Unique)
    }

    /// The record at `path`, if there is a readable one.
    pub fn load(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// The completion record job `id` of `name` leaves (see [`Completion`]).
pub fn completion_path(dir: &Path, name: &str, id: u64) -> PathBuf {
    dir.join(format!("{name}.{id}.done"))
}

/// What the job's command line is made of.
pub struct Command<'a> {
    /// The pipe binary (the driver's own).
    pub exe: &'a Path,
    pub file: &'a Path,
    pub cache: &'a Path,
    pub stage: &'a str,
    /// The `--set` overrides as typed.
    pub set: &'a [String],
    pub device: Option<DeviceChoice>,
    pub forced: bool,
    /// The job's name and the directory of its log: where its [`Completion`] goes.
    pub name: &'a str,
    pub dir: &'a Path,
    /// A search's pruner watches this training: its epochs go through [`super::relay`].
    pub relay: bool,
}

impl Command<'_> {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--cache".into(),
            self.cache.display().to_string(),
            "run".into(),
            self.file.display().to_string(),
            "--only".into(),
            self.stage.into(),
            // A `pipe.toml` saying `kind = "slurm"` must not make the job submit again.
            "--executor".into(),
            "local".into(),
            "--jobs".into(),
            "1".into(),
        ];
        for o in self.set {
            a.push("--set".into());
            a.push(o.clone());
        }
        if let Some(d) = self.device {
            a.push("--device".into());
            a.push(d.to_string());
        }
        if self.forced {
            a.push("--force".into());
            a.push(self.stage.into());
        }
        a
    }

    /// The batch script: one `exec` of pipe, every word shell-quoted, so the job's exit code
    /// is pipe's (2: the stage's input or configuration, 1: internal). The completion record's
    /// path takes the job id from Slurm's `$SLURM_JOB_ID`, known only when the job runs.
    pub fn script(&self, key: &StageKey) -> Result<String, SlurmError> {
        let quote = |w: &str| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                .map_err(|_| SlurmError::Unquotable { word: w.into() })
        };
        let mut words = vec![quote(&self.exe.display().to_string())?];
        for a in self.args() {
            words.push(quote(&a)?);
        }
        let prefix = self.dir.join(format!("{}.", self.name));
        words.push("--completion-record".into());
        words.push(format!(
            "{}\"$SLURM_JOB_ID\"{}",
            quote(&prefix.display().to_string())?,
            quote(".done")?
        ));
        if self.relay {
            words.push("--epoch-relay".into());
            words.push(format!(
                "{}\"$SLURM_JOB_ID\"",
                quote(&prefix.display().to_string())?
            ));
        }
        Ok(format!(
            "#!/bin/sh\n# pipe: stage {} of {}, key {}\nexec {}\n",
            self.stage,
            self.file.display(),
            key.digest(),
            words.join(" ")
        ))
    }
}

/// `sbatch` options for a stage (without `--parsable` and the script): name, log, working
/// directory, then what its resources ask for, then its pass-through options. `gpu_device`: the
/// stage's `device` is a GPU, so it gets one GPU when it declares none (declared GPUs win,
/// `gpus: 0` included: [`crate::exec::budget::gpus`]).
pub fn sbatch_args(
    name: &str,
    log: &Path,
    workdir: &Path,
    r: &Resources,
    gpu_device: bool,
) -> Vec<String> {
    let mut a = vec![
        format!("--job-name={name}"),
        format!("--output={}", log.display()),
        format!("--chdir={}", workdir.display()),
        format!("--cpus-per-task={}", r.cpus()),
    ];
    if let Some(mb) = r.mem_mb {
        a.push(format!("--mem={mb}M"));
    }
    if let Some(min) = r.time_min {
        a.push(format!("--time={min}"));
    }
    let gpus = crate::exec::budget::gpus(r, gpu_device);
    if gpus > 0 {
        a.push(format!("--gres=gpu:{gpus}"));
    }
    for (flag, v) in [
        ("partition", &r.partition),
        ("account", &r.account),
        ("qos", &r.qos),
        ("constraint", &r.constraint),
    ] {
        if let Some(v) = v {
            a.push(format!("--{flag}={v}"));
        }
    }
    a.extend(r.sbatch_args.iter().cloned());
    a
}

/// Where the job of `name` logs: `%j` is Slurm's job id.
pub fn log_pattern(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.%j.log"))
}

/// The log of job `id` submitted with [`log_pattern`].
pub fn log_path(dir: &Path, name: &str, id: u64) -> PathBuf {
    dir.join(format!("{name}.{id}.log"))
}

/// What the failed stage said: pipe's `error:` and `caused by:` lines in the job's log, else
/// its last lines (the job may have died before pipe could say anything).
pub fn failure_message(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("error:") || l.trim_start().starts_with("caused by:"))
        .collect();
    let lines: Vec<&str> = if errors.is_empty() {
        let all: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(10)..].to_vec()
    } else {
        errors
    };
    lines
        .iter()
        .map(|l| printable(l.trim_end()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A log line as pipe wrote it (already quoted where it echoes user text), with control
/// characters escaped and cut at [`MAX_LINE`] characters.
fn printable(line: &str) -> String {
    let mut out = String::new();
    for (i, c) in line.chars().enumerate() {
        if i == MAX_LINE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters of one log line repeated in an error.
const MAX_LINE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::CACHE_FORMAT;
    use std::collections::BTreeMap;

    fn key() -> StageKey {
        StageKey {
            format: CACHE_FORMAT,
            kind: "hash".into(),
            version: 1,
            implementation: BTreeMap::new(),
            config: serde_json::json!({}),
            inputs: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    #[test]
    fn the_name_carries_the_stage_and_its_key() {
        let tag = cache_tag(Path::new("/home/a/project/cache"));
        assert_eq!(tag.len(), 8);
        assert_ne!(tag, cache_tag(Path::new("/home/b/project/cache")));
        let n = name("train_b3", &key(), &tag);
        assert_eq!(n, format!("pipe.train_b3.{}.{tag}", &key().digest()[..16]));
    }

    #[test]
    fn the_script_runs_the_one_stage_with_the_drivers_arguments() {
        let set = ["stages.faces.count=300".to_string()];
        let cmd = Command {
            exe: Path::new("/opt/pipe bin/pipe"),
            file: Path::new("pipelines/quick start.yaml"),
            cache: Path::new("cache"),
            stage: "train_b3",
            set: &set,
            device: Some(DeviceChoice::Cpu),
            forced: true,
            name: "pipe.train_b3.x",
            dir: Path::new("/c/work/slurm"),
            relay: false,
        };
        let s = cmd.script(&key()).unwrap();
        let last = s.lines().last().unwrap();
        assert_eq!(
            last,
            "exec '/opt/pipe bin/pipe' --cache cache run 'pipelines/quick start.yaml' --only \
             train_b3 --executor local --jobs 1 --set 'stages.faces.count=300' --device cpu \
             --force train_b3 --completion-record /c/work/slurm/pipe.train_b3.x.\"$SLURM_JOB_ID\".done"
        );
        let words = shlex::split(&last[5..]).unwrap();
        assert_eq!(words[1..words.len() - 2], cmd.args()[..]);
        // The shell expands the job id into the record's path.
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("echo {}", s.split(' ').next_back().unwrap())])
            .env("SLURM_JOB_ID", "42")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            completion_path(Path::new("/c/work/slurm"), "pipe.train_b3.x", 42)
                .display()
                .to_string()
        );
        let relayed = Command { relay: true, ..cmd }.script(&key()).unwrap();
        assert!(
            relayed
                .trim_end()
                .ends_with("--epoch-relay /c/work/slurm/pipe.train_b3.x.\"$SLURM_JOB_ID\""),
            "{relayed}"
        );
        let bad = Command {
            file: Path::new("a\0b"),
            ..cmd
        };
        assert!(bad.script(&key()).is_err());
    }

    #[test]
    fn resources_become_sbatch_options() {
        let r = Resources {
            cpus: Some(8),
            mem_mb: Some(32768),
            gpus: Some(2),
            time_min: Some(120),
            partition: Some("gpu".into()),
            account: Some("lab".into()),
            qos: None,
            constraint: Some("a100".into()),
            sbatch_args: vec!["--exclusive".into()],
        };
        let a = sbatch_args("n", Path::new("/l/n.%j.log"), Path::new("/w"), &r, true);
        assert_eq!(
            a,
            [
                "--job-name=n",
                "--output=/l/n.%j.log",
                "--chdir=/w",
                "--cpus-per-task=8",
                "--mem=32768M",
                "--time=120",
                "--gres=gpu:2",
                "--partition=gpu",
                "--account=lab",
                "--constraint=a100",
                "--exclusive"
            ]
        );
        let plain = sbatch_args(
            "n",
            Path::new("l"),
            Path::new("w"),
            &Resources::default(),
            false,
        );
        assert_eq!(plain.len(), 4, "{plain:?}");
        let gpu = sbatch_args(
            "n",
            Path::new("l"),
            Path::new("w"),
            &Resources::default(),
            true,
        );
        assert_eq!(gpu.last().unwrap(), "--gres=gpu:1");
        // Declared resources win over the device: `gpus: 0` asks for none.
        let none = Resources {
            gpus: Some(0),
            ..Resources::default()
        };
        let a = sbatch_args("n", Path::new("l"), Path::new("w"), &none, true);
        assert!(!a.iter().any(|a| a.starts_with("--gres")), "{a:?}");
    }

    #[test]
    fn a_completion_record_comes_from_the_run_record_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let mut stages = BTreeMap::new();
        stages.insert(
            "h".to_string(),
            crate::record::StageRecord {
                kind: "hash".into(),
                key: k.digest(),
                key_parts: k.clone(),
                digest: Some("ab".repeat(32)),
                outcome: crate::record::Outcome::Ran,
                seconds: 1.0,
                report: Default::default(),
                error: None,
            },
        );
        let rec = crate::record::RunRecord {
            pipeline: "p".into(),
            file: "p.yaml".into(),
            started: "2026-12-01T08:00:00.000Z".into(),
            seconds: 1.0,
            ok: true,
            stages,
            sweep: None,
            variant: BTreeMap::new(),
            overrides: Vec::new(),
        };
        assert!(Completion::of(&rec, "other").is_none());
        let c = Completion::of(&rec, "h").unwrap();
        assert_eq!(c.key, k.digest());
        let p = completion_path(dir.path(), "pipe.h.x", 7);
        assert!(Completion::load(&p).is_none());
        c.save(&p).unwrap();
        assert_eq!(Completion::load(&p), Some(c));

        // A pruned training: no output, where it stopped.
        let mut rec = rec;
        let h = rec.stages.get_mut("h").unwrap();
        h.digest = None;
        h.outcome = crate::record::Outcome::Pruned;
        assert!(Completion::of(&rec, "h").is_none(), "no metrics: no record");
        let h = rec.stages.get_mut("h").unwrap();
        for (m, v) in [("pruned_epoch", 2.0), ("epochs", 5.0), ("val_loss", 0.7)] {
            h.report.metrics.insert(m.into(), v);
        }
        h.report.metrics.insert("val_bacc".into(), 0.5);
        let c = Completion::of(&rec, "h").unwrap();
        assert_eq!(c.digest, None);
        let want = Pruned {
            epoch: 2,
            epochs: 5,
            val_loss: 0.7,
            val_bacc: 0.5,
        };
        assert_eq!(c.pruned, Some(want));
        c.save(&p).unwrap();
        assert_eq!(Completion::load(&p), Some(c));
    }

    #[test]
    fn the_failure_is_what_pipe_said_else_the_logs_tail() {
        let log = "pipeline q (3 stages)\n  run  faces\nerror: stage `faces` failed: bad\n  \
                   caused by: no such file\n";
        assert_eq!(
            failure_message(log),
            "error: stage `faces` failed: bad\n  caused by: no such file"
        );
        let killed = (1..=20).map(|i| format!("line {i}\n")).collect::<String>();
        let m = failure_message(&killed);
        assert!(m.starts_with("line 11\n") && m.ends_with("line 20"), "{m}");
    }
}
