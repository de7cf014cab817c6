//! The Slurm commands the driver uses — `sbatch`, `squeue`, `scontrol`, `scancel` — run as
//! programs with argument lists (never through a shell), and the parsers of what they print.
//! The parsers are separate pure functions so their edge cases are unit-tested without Slurm.

use super::SlurmError;
use std::collections::BTreeMap;
use std::process::Command;

/// A job as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: u64,
    pub state: String,
    /// Why it pends (`Resources`, `Priority`, …), `None` when it does not.
    pub reason: String,
    pub name: String,
}

impl QueuedJob {
    /// Still to run or running (not ended): a driver that finds one waits for it.
    pub fn active(&self) -> bool {
        ACTIVE.contains(&self.state.as_str())
    }

    /// Pending for a reason waiting cannot cure (a cluster that does not refuse such requests
    /// at submission leaves them pending forever).
    pub fn never_starts(&self) -> bool {
        self.state == "PENDING" && NEVER.contains(&self.reason.as_str())
    }
}

/// Pending reasons that no amount of waiting resolves: the request itself exceeds what the
/// partition, account or QOS allows.
const NEVER: [&str; 9] = [
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxWallDurationPerJobLimit",
];

/// Job states of a job that has not ended (squeue's long names).
const ACTIVE: [&str; 9] = [
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_HOLD",
    "RESIZING",
    "STAGE_OUT",
];

/// Runs `program args`; its stdout when it exits 0.
fn output(program: &str, args: &[String]) -> Result<String, SlurmError> {
    tracing::debug!(program, ?args, "slurm command");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sbatch --parsable ARGS`: the new job's id; a refusal (bad partition, more CPUs than any
/// node has) comes back as [`SlurmError::Refused`] with sbatch's message.
pub fn submit(stage: &str, args: &[String]) -> Result<u64, SlurmError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend_from_slice(args);
    let out = output("sbatch", &all).map_err(|e| match e {
        SlurmError::Command { stderr, .. } => SlurmError::Refused {
            stage: stage.to_string(),
            message: stderr,
        },
        e => e,
    })?;
    parse_job_id(&out).ok_or_else(|| SlurmError::Parse {
        command: "sbatch --parsable".into(),
        output: out.trim().to_string(),
    })
}

/// `sbatch --parsable` prints `ID` or `ID;CLUSTER` (possibly after warnings on other lines).
pub fn parse_job_id(out: &str) -> Option<u64> {
    out.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .and_then(|l| l.split(';').next())
        .and_then(|id| id.trim().parse().ok())
}

/// Every job of this user that Slurm still knows (ended ones stay listed for `MinJobAge`).
pub fn queue() -> Result<Vec<QueuedJob>, SlurmError> {
    let args = ["--me", "--noheader", "--states=all", "--format=%i|%T|%r|%j"].map(String::from);
    Ok(parse_queue(&output("squeue", &args)?))
}

/// Lines `ID|STATE|REASON|NAME` (the name last: it may hold `|`); lines that do not parse
/// (array tasks `12_3`, noise) are skipped.
pub fn parse_queue(out: &str) -> Vec<QueuedJob> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.trim().splitn(4, '|');
            let id = parts.next()?.trim().parse().ok()?;
            let state = parts.next()?.trim().to_string();
            let reason = parts.next()?.trim().to_string();
            let name = parts.next()?.trim().to_string();
            Some(QueuedJob {
                id,
                state,
                reason,
                name,
            })
        })
        .collect()
}

/// How an ended job ended: its state and exit code, from `scontrol show job` (None once Slurm
/// has forgotten the job).
pub fn job_end(id: u64) -> Option<(String, Option<i32>)> {
    let args = ["show", "job", "--oneliner", &id.to_string()].map(String::from);
    let out = output("scontrol", &args).ok()?;
    let fields = parse_fields(&out);
    let state = fields.get("JobState")?.clone();
    let code = fields
        .get("ExitCode")
        .and_then(|c| c.split(':').next())
        .and_then(|c| c.parse().ok());
    Some((state, code))
}

/// `Key=Value Key=Value …` (scontrol's one-line form) → map; values have no spaces except in
/// fields we do not read, so a token without `=` is skipped.
pub fn parse_fields(out: &str) -> BTreeMap<String, String> {
    out.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `scancel ID…`; errors are logged, not returned (the jobs may have ended meanwhile).
pub fn cancel(ids: &[u64]) {
    if ids.is_empty() {
        return;
    }
    let args: Vec<String> = ids.iter().map(u64::to_string).collect();
    if let Err(e) = output("scancel", &args) {
        tracing::warn!("scancel: {e}");
    }
}

/// Whether a Slurm controller answers (`sinfo`).
pub fn available() -> bool {
    output("sinfo", &["--noheader".to_string()]).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_from_sbatch() {
        assert_eq!(parse_job_id("42\n"), Some(42));
        assert_eq!(parse_job_id("42;cluster\n"), Some(42));
        assert_eq!(parse_job_id("sbatch: warning: something\n 7 \n\n"), Some(7));
        assert_eq!(parse_job_id(""), None);
        assert_eq!(parse_job_id("Submitted batch job 5"), None);
    }

    #[test]
    fn queue_lines() {
        let q = parse_queue(
            "12|RUNNING|None|pipe.train.0123\n13_1|PENDING|Priority|arr\nbad\n\
             14|COMPLETED|None|a|b\n15|PENDING|PartitionConfig|big\n16|PENDING|Resources|x\n",
        );
        let job = |id, state: &str, reason: &str, name: &str| QueuedJob {
            id,
            state: state.into(),
            reason: reason.into(),
            name: name.into(),
        };
        assert_eq!(
            q,
            [
                job(12, "RUNNING", "None", "pipe.train.0123"),
                job(14, "COMPLETED", "None", "a|b"),
                job(15, "PENDING", "PartitionConfig", "big"),
                job(16, "PENDING", "Resources", "x"),
            ]
        );
        assert!(q[0].active() && !q[1].active());
        assert!(q[2].never_starts(), "a request the partition cannot hold");
        assert!(!q[3].never_starts(), "waiting for resources ends");
    }

    #[test]
    fn scontrol_fields() {
        let f = parse_fields(
            "JobId=1 JobName=pipe.x.ab UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
             Dependency=(null) ExitCode=2:0 Command=/tmp/a b.sh",
        );
        assert_eq!(f["JobState"], "FAILED");
        assert_eq!(f["ExitCode"], "2:0");
        assert_eq!(f["JobName"], "pipe.x.ab");
    }
}
