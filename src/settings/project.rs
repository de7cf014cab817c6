//! `pipe.toml`: project-level settings that are not part of any pipeline (where the shared cache
//! lives, which executor runs the stages). They never enter a cache key: the same pipeline must
//! give the same keys on every machine, whatever its project settings.
//!
//! The file is read from the working directory (the directory `cache/` is relative to); a missing
//! file means every default. Unknown keys are errors, reported with the file and line, so a typo
//! never silently turns a setting off. Each section is owned by the module that uses it.

use crate::spec::resources::{self, Resources};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file name looked up in the working directory.
pub const FILE_NAME: &str = "pipe.toml";

/// The whole file. Every section is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The shared remote cache (issue 10).
    #[serde(default)]
    pub remote: crate::remote::RemoteSection,
    /// Which executor runs stages, and its options (issue 11).
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Default per-stage resources (issue 11): a stage's own `resources:` win field by field.
    #[serde(default)]
    pub resources: ResourcesSection,
}

/// `[executor]`: how stages that miss the cache are run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// `local` (the default) or `slurm`.
    pub kind: Option<ExecutorKind>,
    /// Slurm: seconds between two `squeue` polls (default [`DEFAULT_POLL_SECONDS`]).
    pub poll_seconds: Option<f64>,
    /// Local executor: GPU stages that may run at once (default 1: two GPU stages never share
    /// the GPU unless this says so).
    pub local_gpus: Option<u32>,
}

/// The executors `--executor` and `[executor] kind` name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Worker threads on this machine (`-j`).
    #[default]
    Local,
    /// One `sbatch` job per stage that misses the cache.
    Slurm,
}

/// Seconds between two polls of the Slurm queue when `pipe.toml` does not say.
pub const DEFAULT_POLL_SECONDS: f64 = 1.0;

impl ExecutorSection {
    pub fn poll(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.poll_seconds.unwrap_or(DEFAULT_POLL_SECONDS))
    }

    pub fn local_gpus(&self) -> u32 {
        self.local_gpus.unwrap_or(1)
    }
}

/// `[resources]`: the fields of a stage's `resources:` (see [`crate::spec::resources`]), as
/// defaults; sizes and durations are checked by the same parsers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSection {
    pub cpus: Option<u32>,
    pub mem: Option<TextOrInt>,
    pub gpus: Option<u32>,
    pub time: Option<TextOrInt>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub constraint: Option<String>,
    #[serde(default)]
    pub sbatch_args: Vec<String>,
}

/// `mem = "32G"` or `mem = 512` (megabytes); `time = "2h"` or `time = 90` (minutes).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TextOrInt {
    Int(u64),
    Text(String),
}

impl TextOrInt {
    fn text(&self) -> String {
        match self {
            TextOrInt::Int(n) => n.to_string(),
            TextOrInt::Text(s) => s.clone(),
        }
    }
}

/// `pipe.toml` could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax error or an unknown / mistyped key; `line` is 1-based when toml gives a span.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A value of the right type that does not make sense (`mem = "lots"`).
    #[error("{path}: [{section}] {field}: {message}")]
    Invalid {
        path: PathBuf,
        section: &'static str,
        field: &'static str,
        message: String,
    },
}

impl ProjectConfig {
    /// Reads `pipe.toml` from `dir`; all defaults when it does not exist.
    pub fn load(dir: &Path) -> Result<ProjectConfig, ConfigError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProjectConfig::default());
            }
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::parse(&text, Path::new(FILE_NAME))
    }

    /// The `[resources]` defaults, checked like a stage's `resources:`.
    pub fn default_resources(&self) -> Result<Resources, ConfigError> {
        let r = &self.resources;
        let invalid = |field, message| ConfigError::Invalid {
            path: PathBuf::from(FILE_NAME),
            section: "resources",
            field,
            message,
        };
        let mem_mb = r
            .mem
            .as_ref()
            .map(|m| resources::parse_mem(&m.text()).map_err(|e| invalid("mem", e)))
            .transpose()?;
        let time_min = r
            .time
            .as_ref()
            .map(|t| resources::parse_time(&t.text()).map_err(|e| invalid("time", e)))
            .transpose()?;
        if r.cpus == Some(0) {
            return Err(invalid("cpus", "must be at least 1".into()));
        }
        if let Some(bad) = r.sbatch_args.iter().find(|a| !a.starts_with('-')) {
            return Err(invalid(
                "sbatch_args",
                format!("`{bad}` is not an sbatch option (they start with -)"),
            ));
        }
        Ok(Resources {
            cpus: r.cpus,
            mem_mb,
            gpus: r.gpus,
            time_min,
            partition: r.partition.clone(),
            account: r.account.clone(),
            qos: r.qos.clone(),
            constraint: r.constraint.clone(),
            sbatch_args: r.sbatch_args.clone(),
        })
    }

    /// Parses the text of a `pipe.toml`; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ProjectConfig, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|s| text[..s.start].matches('\n').count() + 1),
            message: e.message().trim().to_string(),
        })
    }
}

impl ConfigError {
    /// Every `pipe.toml` error is the user's to fix.
    pub fn is_user_error(&self) -> bool {
        match self {
            ConfigError::Io { .. } | ConfigError::Parse { .. } | ConfigError::Invalid { .. } => {
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_all_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = ProjectConfig::load(dir.path()).unwrap();
        assert!(c.remote.url.is_none());
        assert!(c.executor.kind.is_none());
    }

    #[test]
    fn sections_are_read() {
        let c = ProjectConfig::parse(
            "[remote]\nurl = \"file:///srv/cache\"\n[executor]\nkind = \"slurm\"\n",
            Path::new(FILE_NAME),
        )
        .unwrap();
        assert_eq!(c.remote.url.as_deref(), Some("file:///srv/cache"));
        assert_eq!(c.executor.kind, Some(ExecutorKind::Slurm));
    }

    #[test]
    fn executor_and_resource_defaults() {
        let c = ProjectConfig::parse(
            "[executor]\nkind = \"local\"\npoll_seconds = 0.5\nlocal_gpus = 2\n\
             [resources]\ncpus = 2\nmem = \"4G\"\ntime = 90\npartition = \"cpu\"\n\
             sbatch_args = [\"--exclusive\"]\n",
            Path::new(FILE_NAME),
        )
        .unwrap();
        assert_eq!(c.executor.poll(), std::time::Duration::from_millis(500));
        assert_eq!(c.executor.local_gpus(), 2);
        let r = c.default_resources().unwrap();
        assert_eq!(
            (r.cpus, r.mem_mb, r.time_min),
            (Some(2), Some(4096), Some(90))
        );
        assert_eq!(r.sbatch_args, ["--exclusive"]);
        assert_eq!(ProjectConfig::default().executor.local_gpus(), 1);
    }

    #[test]
    fn bad_resource_defaults_name_section_and_field() {
        let c =
            ProjectConfig::parse("[resources]\nmem = \"lots\"\n", Path::new(FILE_NAME)).unwrap();
        let msg = c.default_resources().unwrap_err().to_string();
        assert!(msg.starts_with("pipe.toml: [resources] mem: "), "{msg}");
        let e =
            ProjectConfig::parse("[executor]\nkind = \"pbs\"\n", Path::new(FILE_NAME)).unwrap_err();
        assert!(e.to_string().starts_with("pipe.toml:2: "), "{e}");
    }

    #[test]
    fn remote_options_are_read_and_credentials_have_no_place() {
        let c = ProjectConfig::parse(
            "[remote]\nurl = \"s3://b/p\"\nendpoint = \"http://127.0.0.1:9000\"\n\
             region = \"eu-west-1\"\npath_style = true\nallow_http = true\n",
            Path::new(FILE_NAME),
        )
        .unwrap();
        assert_eq!(c.remote.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.remote.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            (c.remote.path_style, c.remote.allow_http),
            (Some(true), Some(true))
        );
        let e = ProjectConfig::parse(
            "[remote]\nurl = \"s3://b\"\nsecret_access_key = \"x\"\n",
            Path::new(FILE_NAME),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("pipe.toml:3: "), "{e}");
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let e = ProjectConfig::parse(
            "[remote]\nurl = \"s3://b\"\nurll = 1\n",
            Path::new(FILE_NAME),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("pipe.toml:3: "), "{msg}");
        assert!(msg.contains("urll"), "{msg}");
    }

    use std::io::{Error, ErrorKind};
    fn p() -> std::path::PathBuf {
        std::path::PathBuf::from("x")
    }

    #[test]
    fn config_errors() {
        let io = ConfigError::Io {
            path: p(),
            source: Error::from(ErrorKind::PermissionDenied),
        };
        let parse = ConfigError::Parse {
            path: p(),
            line: Some(3),
            message: "unknown field".into(),
        };
        let invalid = ConfigError::Invalid {
            path: p(),
            section: "resources",
            field: "mem",
            message: "not a size".into(),
        };
        assert!(io.is_user_error() && parse.is_user_error() && invalid.is_user_error());
    }
}
