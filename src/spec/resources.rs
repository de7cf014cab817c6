//! Per-stage `resources:` (issue 11): what a stage needs from the machine or the cluster (cpus,
//! memory, GPUs, wall time, partition, and sbatch options passed through). Resources never enter
//! a cache key: they change where and how fast a stage runs, not what it writes. The same
//! fields, as defaults, come from `pipe.toml`'s `[resources]` ([`crate::config`]); a stage's own
//! values win field by field ([`Resources::or`]).

use super::Diagnostic;
use super::yaml::{Marked, Node};
use crate::quote::quote;
use std::path::Path;

/// The field names of `resources:`, in the order the docs list them.
pub const FIELDS: [&str; 9] = [
    "cpus",
    "mem",
    "gpus",
    "time",
    "partition",
    "account",
    "qos",
    "constraint",
    "sbatch_args",
];

/// CPUs a stage gets when neither it nor `pipe.toml` says (the one place for this default).
pub const DEFAULT_CPUS: u32 = 1;

/// What one stage asks for; `None` leaves the choice to the defaults, then to the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpus: Option<u32>,
    /// Megabytes.
    pub mem_mb: Option<u64>,
    pub gpus: Option<u32>,
    /// Minutes (Slurm's unit), rounded up.
    pub time_min: Option<u64>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    /// Further `sbatch` options, passed as they are (each one argument).
    pub sbatch_args: Vec<String>,
}

impl Resources {
    /// These values, each missing one taken from `defaults`; `sbatch_args` are the defaults'
    /// followed by the stage's own (so a stage can override a global option).
    pub fn or(&self, defaults: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.or(defaults.cpus),
            mem_mb: self.mem_mb.or(defaults.mem_mb),
            gpus: self.gpus.or(defaults.gpus),
            time_min: self.time_min.or(defaults.time_min),
            partition: self
                .partition
                .clone()
                .or_else(|| defaults.partition.clone()),
            account: self.account.clone().or_else(|| defaults.account.clone()),
            qos: self.qos.clone().or_else(|| defaults.qos.clone()),
            constraint: self
                .constraint
                .clone()
                .or_else(|| defaults.constraint.clone()),
            sbatch_args: defaults
                .sbatch_args
                .iter()
                .chain(&self.sbatch_args)
                .cloned()
                .collect(),
        }
    }

    pub fn cpus(&self) -> u32 {
        self.cpus.unwrap_or(DEFAULT_CPUS)
    }

    pub fn gpus(&self) -> u32 {
        self.gpus.unwrap_or(0)
    }
}

/// `32G`, `512M`, `1T`, `2048K` or a bare number of megabytes (Slurm's convention) → MB.
pub fn parse_mem(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{}` is not a memory size like 32G or 512M", quote(s)))?;
    let mb = match unit.to_ascii_uppercase().trim_end_matches('B') {
        "" | "M" => Some(n),
        "K" => Some(n.div_ceil(1024)),
        "G" => n.checked_mul(1024),
        "T" => n.checked_mul(1024 * 1024),
        _ => {
            return Err(format!(
                "unknown unit in `{}`: use K, M, G or T (e.g. 32G)",
                quote(s)
            ));
        }
    };
    match mb {
        Some(0) => Err("memory must be more than zero".into()),
        Some(mb) => Ok(mb),
        None => Err(format!("`{}` is too large", quote(s))),
    }
}

/// `2h`, `30m`, `1h 30m`, `1d`, `1:30:00` (h:mm:ss), `45:00` (mm:ss), `1-12:00:00` (days-h:mm:ss)
/// or a bare number of minutes (Slurm's convention) → whole minutes, rounded up.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "`{}` is not a duration like 2h, 30m, 1:30:00 or 1-12:00:00",
            quote(s)
        )
    };
    let secs = if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
        t.parse::<u64>().map_err(|_| bad())?.saturating_mul(60)
    } else if t.contains(':') {
        let (days, clock) = match t.split_once('-') {
            Some((d, rest)) => (d.parse::<u64>().map_err(|_| bad())?, rest),
            None => (0, t),
        };
        let parts: Vec<u64> = clock
            .split(':')
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (h, m, sec) = match parts[..] {
            [m, sec] => (0, m, sec),
            [h, m, sec] => (h, m, sec),
            _ => return Err(bad()),
        };
        if m >= 60 && parts.len() == 3 || sec >= 60 {
            return Err(bad());
        }
        ((days * 24 + h) * 60 + m) * 60 + sec
    } else {
        humantime::parse_duration(t).map_err(|_| bad())?.as_secs()
    };
    match secs.div_ceil(60) {
        0 => Err("the time limit must be at least one second".into()),
        m => Ok(m),
    }
}

/// Reads a stage's `resources:` mapping, pushing one diagnostic per bad field.
pub fn from_yaml(
    node: &Marked,
    file: &Path,
    field: &str,
    diags: &mut Vec<Diagnostic>,
) -> Resources {
    let mut r = Resources::default();
    let entries = match &node.node {
        Node::Map(entries) => entries,
        Node::Null => return r,
        _ => {
            diags.push(Diagnostic::new(
                file,
                Some(node.pos),
                field,
                format!(
                    "expected a mapping of {}, got {}",
                    FIELDS.join(", "),
                    node.type_name()
                ),
            ));
            return r;
        }
    };
    for (k, v) in entries {
        let name = k.as_str().unwrap_or_default();
        let mut push = |pos, msg: String| {
            diags.push(Diagnostic::new(
                file,
                Some(pos),
                format!("{field}.{}", quote(name)),
                msg,
            ))
        };
        let result = match name {
            "cpus" => count(v, 1).map(|n| r.cpus = Some(n)),
            "gpus" => count(v, 0).map(|n| r.gpus = Some(n)),
            "mem" => text_or_int(v)
                .and_then(|t| parse_mem(&t))
                .map(|m| r.mem_mb = Some(m)),
            "time" => text_or_int(v)
                .and_then(|t| parse_time(&t))
                .map(|m| r.time_min = Some(m)),
            "partition" => name_value(v).map(|s| r.partition = Some(s)),
            "account" => name_value(v).map(|s| r.account = Some(s)),
            "qos" => name_value(v).map(|s| r.qos = Some(s)),
            "constraint" => text(v).map(|s| r.constraint = Some(s)),
            "sbatch_args" => args(v).map(|a| r.sbatch_args = a),
            other => {
                push(
                    k.pos,
                    format!(
                        "unknown field `{}`{}; expected one of {}",
                        quote(other),
                        super::hint(other, FIELDS),
                        FIELDS.join(", ")
                    ),
                );
                continue;
            }
        };
        if let Err(msg) = result {
            push(v.pos, msg);
        }
    }
    r
}

fn count(v: &Marked, min: i64) -> Result<u32, String> {
    match v.node {
        Node::Int(n) if n >= min && n <= i64::from(u32::MAX) => Ok(n as u32),
        Node::Int(n) => Err(format!("must be at least {min}, got {n}")),
        _ => Err(format!("expected an integer, got {}", v.type_name())),
    }
}

fn text(v: &Marked) -> Result<String, String> {
    match &v.node {
        Node::Str(s) if !s.trim().is_empty() => Ok(s.clone()),
        Node::Str(_) => Err("must not be empty".into()),
        _ => Err(format!("expected a string, got {}", v.type_name())),
    }
}

fn text_or_int(v: &Marked) -> Result<String, String> {
    match &v.node {
        Node::Int(n) => Ok(n.to_string()),
        _ => text(v),
    }
}

/// A partition, account or QOS name: one word (it becomes one sbatch argument).
fn name_value(v: &Marked) -> Result<String, String> {
    let s = text(v)?;
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{}` must be one word", quote(&s)));
    }
    Ok(s)
}

fn args(v: &Marked) -> Result<Vec<String>, String> {
    let Node::Seq(items) = &v.node else {
        return Err(format!(
            "expected a list of sbatch options like [\"--exclusive\"], got {}",
            v.type_name()
        ));
    };
    items
        .iter()
        .map(|i| {
            let s = text(i)?;
            if s.starts_with('-') {
                Ok(s)
            } else {
                Err(format!(
                    "`{}` is not an sbatch option (they start with -)",
                    quote(&s)
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("32G"), Ok(32 * 1024));
        assert_eq!(parse_mem("512M"), Ok(512));
        assert_eq!(parse_mem("512"), Ok(512));
        assert_eq!(parse_mem("1t"), Ok(1024 * 1024));
        assert_eq!(parse_mem("1500K"), Ok(2));
        assert_eq!(parse_mem("4GB"), Ok(4096));
        assert!(parse_mem("32X").unwrap_err().contains("unknown unit"));
        assert!(parse_mem("G").is_err());
        assert!(parse_mem("0G").is_err());
        assert!(parse_mem("99999999999999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_time("2h"), Ok(120));
        assert_eq!(parse_time("30m"), Ok(30));
        assert_eq!(parse_time("1h 30m"), Ok(90));
        assert_eq!(parse_time("1:30:00"), Ok(90));
        assert_eq!(parse_time("45:30"), Ok(46));
        assert_eq!(parse_time("1-12:00:00"), Ok(36 * 60));
        assert_eq!(parse_time("90"), Ok(90));
        assert_eq!(parse_time("10s"), Ok(1));
        for bad in ["", "2 hours please", "1:2:3:4", "1:61:00", "0", "x:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    fn yaml(text: &str) -> (Resources, Vec<Diagnostic>) {
        let node = super::super::yaml::parse(text).unwrap();
        let mut diags = Vec::new();
        let r = from_yaml(&node, Path::new("p.yaml"), "stages.t.resources", &mut diags);
        (r, diags)
    }

    #[test]
    fn a_full_mapping_is_read() {
        let (r, d) = yaml(
            "{cpus: 8, mem: 32G, gpus: 1, time: 2h, partition: gpu, account: lab, qos: high, \
             constraint: 'a100|h100', sbatch_args: ['--exclusive']}",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.cpus, Some(8));
        assert_eq!(r.mem_mb, Some(32768));
        assert_eq!(r.time_min, Some(120));
        assert_eq!(r.partition.as_deref(), Some("gpu"));
        assert_eq!(r.constraint.as_deref(), Some("a100|h100"));
        assert_eq!(r.sbatch_args, ["--exclusive"]);
    }

    #[test]
    fn every_bad_field_is_reported_with_its_position() {
        let (_, d) = yaml("cpus: 0\nmem: lots\ngpus: -1\ntime: soon\npartition: a b\ncpu: 2\n");
        let text: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(d.len(), 6, "{text:#?}");
        assert!(text[0].starts_with("p.yaml:1:7: stages.t.resources.cpus: must be at least 1"));
        assert!(
            text[1].contains(":2:6: stages.t.resources.mem:"),
            "{}",
            text[1]
        );
        assert!(text[5].contains("unknown field `cpu` (did you mean `cpus`?)"));
    }

    #[test]
    fn stage_values_win_over_defaults() {
        let defaults = Resources {
            cpus: Some(2),
            partition: Some("cpu".into()),
            sbatch_args: vec!["--account=x".into()],
            ..Resources::default()
        };
        let stage = Resources {
            partition: Some("gpu".into()),
            sbatch_args: vec!["--exclusive".into()],
            ..Resources::default()
        };
        let r = stage.or(&defaults);
        assert_eq!(r.cpus(), 2);
        assert_eq!(r.partition.as_deref(), Some("gpu"));
        assert_eq!(r.sbatch_args, ["--account=x", "--exclusive"]);
        assert_eq!(Resources::default().cpus(), DEFAULT_CPUS);
    }
}
