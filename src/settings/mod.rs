//! Settings, resolved once per command (ripgrep's low args → high args): the command line as
//! typed ([`cli`]), `pipe.toml` ([`project`], read at most once, and only by the commands that
//! use it) and the environment (`PIPE_CACHE`, `PIPE_REMOTE`) become the typed values the layers
//! below receive — the run options, the local budget, the Slurm backend's settings, the remote
//! to open. Nothing below this layer reads a flag, the file or the environment for a setting.

pub mod cli;
pub mod filter;
pub mod project;

use crate::engine::RunOptions;
use crate::exec::budget::Limits;
use crate::exec::slurm;
use crate::ml::device::DeviceChoice;
use crate::remote::{self, RemoteError, Target};
use crate::spec::Override;
use cli::RemoteArgs;
use project::{ConfigError, ExecutorKind, ProjectConfig};
use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a command's settings could not be resolved for.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `pipe.toml` (shared: the file is read once, its error kept for every question).
    #[error(transparent)]
    Config(Arc<ConfigError>),
    #[error(transparent)]
    Remote(Box<RemoteError>),
}

impl From<ConfigError> for SettingsError {
    fn from(e: ConfigError) -> Self {
        SettingsError::Config(Arc::new(e))
    }
}

impl From<RemoteError> for SettingsError {
    fn from(e: RemoteError) -> Self {
        SettingsError::Remote(Box::new(e))
    }
}

impl SettingsError {
    /// Bad settings are the user's to fix; a remote that cannot be reached is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            SettingsError::Config(e) => e.is_user_error(),
            SettingsError::Remote(e) => e.is_user_error(),
        }
    }
}

/// The settings every command shares, with `pipe.toml` read on first use.
pub struct Settings {
    /// `--cache` / `PIPE_CACHE`.
    pub cache: PathBuf,
    pub remote: RemoteArgs,
    project: OnceCell<Result<ProjectConfig, Arc<ConfigError>>>,
}

impl Settings {
    pub fn new(cache: PathBuf, remote: RemoteArgs) -> Self {
        Self {
            cache,
            remote,
            project: OnceCell::new(),
        }
    }

    /// `pipe.toml` of the working directory (every default when there is none), read once.
    pub fn project(&self) -> Result<&ProjectConfig, SettingsError> {
        self.project
            .get_or_init(|| ProjectConfig::load(Path::new(".")).map_err(Arc::new))
            .as_ref()
            .map_err(|e| SettingsError::Config(Arc::clone(e)))
    }

    /// The remote cache the flags, `PIPE_REMOTE` or `pipe.toml` name (`None`: none is), not
    /// yet connected; and how the command uses it.
    pub fn remote_target(&self) -> Result<Option<(Target, remote::Options)>, SettingsError> {
        let config = self.project()?;
        let a = &self.remote;
        let Some(url) =
            remote::settings::chosen_url(a.remote.as_deref(), a.no_remote, &config.remote)
        else {
            return Ok(None);
        };
        let target = remote::settings::target(&url, &config.remote)?;
        let options = remote::Options {
            required: a.remote_required,
            push: !a.no_push,
        };
        Ok(Some((target, options)))
    }

    /// Whether `run` hands its stages to Slurm: `--executor`, else `pipe.toml`.
    pub fn slurm(&self, flag: Option<ExecutorKind>) -> Result<bool, SettingsError> {
        let kind = match flag {
            Some(k) => Some(k),
            None => self.project()?.executor.kind,
        };
        Ok(kind == Some(ExecutorKind::Slurm))
    }

    /// The local backend's budget: `pipe.toml`'s `[resources]` and `[executor] local_gpus`.
    pub fn limits(&self) -> Result<Limits, SettingsError> {
        let config = self.project()?;
        Ok(Limits {
            defaults: config.default_resources()?,
            gpus: Some(config.executor.local_gpus()),
            cpus: None,
        })
    }

    /// The Slurm backend's settings for a run of `file` with these overrides.
    pub fn slurm_settings(
        &self,
        file: &Path,
        set: &[Override],
        device: Option<DeviceChoice>,
    ) -> Result<slurm::Settings, SettingsError> {
        let config = self.project()?;
        Ok(slurm::Settings {
            poll: config.executor.poll(),
            defaults: config.default_resources()?,
            file: file.to_path_buf(),
            set: set.iter().map(|o| o.text.clone()).collect(),
            device,
            watch: None,
        })
    }
}

/// `run`'s options from its flags; the budget and backend are added by the caller.
pub fn run_options(
    jobs: usize,
    force: Vec<String>,
    until: Option<String>,
    only: bool,
    no_wait: bool,
    set: &[Override],
    device: Option<DeviceChoice>,
) -> RunOptions {
    RunOptions {
        jobs,
        force,
        until,
        no_wait,
        only,
        overrides: override_texts(set, device),
        ..RunOptions::default()
    }
}

/// The run's overrides for its record: each `--set` as typed, then `--device D`.
fn override_texts(set: &[Override], device: Option<DeviceChoice>) -> Vec<String> {
    let mut out: Vec<String> = set.iter().map(|o| o.text.clone()).collect();
    out.extend(device.map(|d| format!("--device {d}")));
    out
}
