//! `pipe.toml`: project-level settings that are not part of any pipeline (where the shared cache
//! lives, which executor runs the stages). They never enter a cache key: the same pipeline must
//! give the same keys on every machine, whatever its project settings.
//!
//! The file is read from the working directory (the directory `cache/` is relative to); a missing
//! file means every default. Unknown keys are errors, reported with the file and line, so a typo
//! never silently turns a setting off. Each section is owned by the module that uses it.

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
    pub remote: RemoteSection,
    /// Which executor runs stages, and its options (issue 11).
    #[serde(default)]
    pub executor: ExecutorSection,
}

/// `[remote]`: one remote cache, named by URL (see `crate::remote`). Credentials never go
/// here: they come from the standard AWS environment variables only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteSection {
    /// `s3://bucket/prefix` or `file:///shared/path`.
    pub url: Option<String>,
    /// An S3-compatible server's URL (`http://127.0.0.1:9000`); AWS itself when absent.
    pub endpoint: Option<String>,
    /// The S3 region (`us-east-1` when neither this nor `AWS_REGION` says otherwise).
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted servers need.
    pub path_style: Option<bool>,
    /// Allow a plain-HTTP endpoint (a server on loopback or a trusted network).
    pub allow_http: Option<bool>,
}

/// `[executor]`: how stages that miss the cache are run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// `local` (the default) or `slurm`.
    pub kind: Option<String>,
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
        assert_eq!(c.executor.kind.as_deref(), Some("slurm"));
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
}
