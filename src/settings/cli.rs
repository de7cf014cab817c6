//! The command line as typed (clap derive): the low layer of the settings, which
//! [`super::Settings`] resolves with `pipe.toml` and the environment.

use crate::ml::device::DeviceRequest;
use crate::spec::Override;
use crate::sweep::prune::Pruner;
use crate::sweep::search::Objective;
use crate::sweep::tpe::SamplerChoice;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pipe",
    version,
    about = "Declarative ML pipelines with a content-addressed cache"
)]
pub struct Cli {
    /// Cache directory.
    #[arg(long, global = true, env = "PIPE_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The shared remote cache (see `pipe.toml`'s [remote] section).
    #[command(flatten)]
    pub remote: RemoteArgs,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant (`run`'s options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run (or resume) a pipeline: only stages whose key changed execute.
    Run {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// Override a value: stages.ID.FIELD=VALUE or params.NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// Stages run in parallel at most.
        #[arg(short, long, default_value_t = 2)]
        jobs: usize,
        /// Rerun this stage even if cached (repeatable).
        #[arg(long, value_name = "ID")]
        force: Vec<String>,
        /// Run only this stage and what it needs.
        #[arg(long, value_name = "ID")]
        until: Option<String>,
        /// Run this one stage; every stage it reads must be cached already, else exit 2 naming
        /// them (what each Slurm job runs).
        #[arg(long, value_name = "ID", conflicts_with_all = ["until", "sweep", "search"])]
        only: Option<String>,
        /// Where stages that miss the cache run: here (`-j` threads) or one Slurm job each.
        /// Default: `[executor] kind` in pipe.toml, else local.
        #[arg(long, value_enum)]
        executor: Option<super::project::ExecutorKind>,
        /// Print what would run and why; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Device of every stage that runs a model: the same as `--set stages.ID.device=D` on each
        /// (after the other `--set`s), so it enters their keys like the YAML field. `auto`: CUDA,
        /// else Vulkan, else the CPU, by what this binary has and this machine offers (the
        /// device it resolves to is the one in the keys; `pipe doctor` shows the choice).
        #[arg(long)]
        device: Option<DeviceRequest>,
        /// Fail at once if another run holds the cache, instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Internal, for Slurm jobs: once `--only ID` has committed (or found) its stage, write
        /// its completion record here; the driver counts the stage done only with it.
        #[arg(long, value_name = "FILE", hide = true, requires = "only")]
        completion_record: Option<PathBuf>,
        /// Internal, for the Slurm job of a training a pruned search watches: after each epoch,
        /// tell it at PREFIX.epochs and wait for the driver's verdict at PREFIX.verdicts.
        #[arg(long, value_name = "PREFIX", hide = true, requires = "only")]
        epoch_relay: Option<PathBuf>,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Check pipelines: schema, types, inputs, artifact kinds, cycles; every error at once.
    Validate {
        /// Pipeline files (YAML); each is checked with what it includes.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check with this value overridden: stages.ID.FIELD=VALUE or params.NAME=VALUE.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// text: one line per error; json: {"valid", "errors", "missing_files"}.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What would run and why.
    Status {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// As `run --set`: the status of the pipeline with this value overridden.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// One JSON object: stage id → state, digest or reasons.
        #[arg(long)]
        json: bool,
    },
    /// The pipeline graph as Graphviz DOT or Mermaid.
    Dag {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// dot (Graphviz) or mermaid.
        #[arg(long, value_enum, default_value_t = DagFormat::Dot)]
        format: DagFormat,
    },
    /// Which key components of a stage changed since its last recorded run.
    Why {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// The stage id.
        stage: String,
        /// As `run --set`: why the stage would rerun with this value overridden.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
    },
    /// Remove cache objects that no kept run record reaches, and leftovers of dead runs.
    Gc {
        /// Run records to keep (newest first).
        #[arg(long, default_value_t = 20)]
        keep_runs: usize,
        /// List what would be removed (path, size, why); remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Proceed although some run records cannot be read (objects only they reach are
        /// removed; the records themselves are left in place).
        #[arg(long)]
        ignore_unreadable: bool,
        /// With --remote (which then collects the remote cache instead: objects no remote key
        /// record reaches): never delete an object uploaded less than this long ago (an upload
        /// in progress).
        #[arg(long, default_value = crate::remote::gc::DEFAULT_GRACE, value_parser = humantime::parse_duration, requires = "remote")]
        grace: std::time::Duration,
    },
    /// Upload to the remote cache what the latest runs of these pipelines reached (everything
    /// in the local cache without FILE).
    Push {
        /// Pipeline files whose latest runs to upload (none: the whole local cache).
        files: Vec<PathBuf>,
        /// Also check every byte of what the remote already holds and replace damaged copies.
        #[arg(long)]
        repair: bool,
    },
    /// Download from the remote cache every stage of a pipeline it holds; runs nothing.
    Pull {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// As `run --set`: pull the stages of the pipeline with this value overridden.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
        /// Only this stage and what it needs.
        #[arg(long, value_name = "ID")]
        until: Option<String>,
    },
    /// The remote cache.
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// List recorded runs (with `--remote`: the runs shared on the remote, who pushed them,
    /// from where, when).
    Runs {
        /// How many of the newest runs to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Evaluation metrics of the latest runs of these pipelines, side by side (Markdown). With
    /// --sort, --filter, --columns or --all: one row per run and evaluation, the parameters that
    /// differ between runs beside the metrics. `--remote` (after the files) adds the runs
    /// colleagues pushed.
    Compare {
        /// Pipeline files whose runs to compare (with --all, none: every pipeline's).
        #[arg(required_unless_present = "all")]
        files: Vec<PathBuf>,
        /// Also draw every evaluation's confusion matrix side by side into this PNG (`-`:
        /// stdout, the table then goes to stderr).
        #[arg(long, value_name = "FILE")]
        png: Option<PathBuf>,
        /// Order rows by this metric or parameter: highest first (lowest first for a name with
        /// `loss` or `error`); ties keep run order, rows without it go last.
        #[arg(long, value_name = "METRIC")]
        sort: Option<String>,
        /// Keep rows where NAME OP VALUE holds (OP: < <= > >= = !=; e.g. lr<0.001, epochs>=5,
        /// model=b3); a parameter named by its field alone matches any stage's. Repeatable:
        /// all must hold.
        #[arg(long, value_name = "EXPR")]
        filter: Vec<crate::settings::filter::Filter>,
        /// Show exactly these columns: run, pipeline, stage, metrics, parameters.
        #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// Every recorded run, not only the latest of each pipeline.
        #[arg(long)]
        all: bool,
    },
    /// Parameters, metrics (with the change) and output digests that differ between two runs.
    /// `--remote` (after the runs) also finds the runs colleagues pushed.
    Diff {
        /// A run: an id from `pipe runs` (or its unique start), latest, latest~N, or a pipeline
        /// file (its latest run).
        #[arg(default_value = "latest~1")]
        a: String,
        /// The other run, named the same ways.
        #[arg(default_value = "latest")]
        b: String,
        /// Also what did not change.
        #[arg(long)]
        all: bool,
        /// One JSON object: {a, b, params, metrics, outputs}.
        #[arg(long)]
        json: bool,
    },
    /// A shell completion script, on stdout (e.g. `pipe completions bash >
    /// ~/.local/share/bash-completion/completions/pipe`).
    Completions { shell: CompletionShell },
    /// Start a project in DIR: pipe.toml, an example pipeline, a .gitignore; never overwrites.
    Init {
        /// The project directory (created if absent).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// One self-contained HTML page (no network) of the latest runs of these pipelines: DAG,
    /// data cleaning, learning curves, Table 1, ROC, predictions, provenance. `--remote`
    /// (after the files) includes the runs colleagues pushed.
    Report {
        /// Pipeline files whose latest runs the page shows.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the page (`-`: stdout). A regular file is replaced atomically; a
        /// device or FIFO is written into.
        #[arg(short, long, default_value = "report.html")]
        output: PathBuf,
    },
    /// Print a model's Keras-like summary (layers, output shapes, parameters).
    Model {
        /// b1, b2, b3, tl1, tl2 or tl3; with --stage, a pipeline file.
        name: String,
        /// Input shape HxWxC (without --stage).
        #[arg(long, default_value = "56x56x3")]
        input: String,
        /// The train stage of the pipeline file NAME whose model to show (declared or named),
        /// at the shape of its data.
        #[arg(long)]
        stage: Option<String>,
    },
    /// The backends compiled into this binary, whether each GPU one can start here (and why
    /// not), and what `--device auto` picks.
    Doctor,
}

/// `run`'s sweep and search options (see `crate::sweep`).
#[derive(clap::Args, Debug, Default)]
#[command(group(clap::ArgGroup::new("space").args(["sweep", "search"]).multiple(true)))]
pub struct SweepArgs {
    /// Run every combination of these values, each variant exactly like `--set PATH=VALUE`;
    /// values split at commas outside quotes and brackets (repeatable: the grid of all).
    #[arg(long, value_name = "PATH=V1,V2,…", conflicts_with = "search")]
    pub sweep: Vec<String>,
    /// Draw variants at random: lo..hi (uniform), lo..hi:log, lo..hi:int or a|b|c (repeatable).
    #[arg(long, value_name = "PATH=RANGE", requires_all = ["trials", "objective"])]
    pub search: Vec<String>,
    /// How many variants `--search` draws (at most 100 000).
    #[arg(long, value_name = "N", requires = "search",
          value_parser = clap::value_parser!(u32).range(1..=crate::sweep::MAX_VARIANTS as i64))]
    pub trials: Option<u32>,
    /// Seed of `--search`'s draws: the same seed draws the same variants.
    #[arg(long, value_name = "S", default_value_t = 0, requires = "search")]
    pub seed: u64,
    /// How `--search` proposes trials: random (each drawn independently) or tpe (Bayesian:
    /// each trial after the first 10 from the finished ones; tpe:startup=N,candidates=N).
    #[arg(
        long,
        value_name = "random|tpe",
        default_value = "random",
        requires = "search"
    )]
    pub sampler: SamplerChoice,
    /// Stop poor `--search` trials early, from the validation metric their training reports
    /// after each epoch: none, asha (asha:r=EPOCHS,eta=N) or median (median:startup=N,warmup=E).
    #[arg(
        long,
        value_name = "none|asha|median",
        default_value = "none",
        requires = "search"
    )]
    pub prune: Pruner,
    /// The metric to rank variants by, from the stage's run record (e.g.
    /// evaluate_b3.balanced_accuracy); highest wins unless --minimize.
    #[arg(long, value_name = "STAGE.METRIC", requires = "space")]
    pub objective: Option<Objective>,
    /// The lowest value of --objective wins.
    #[arg(long, requires = "objective")]
    pub minimize: bool,
}

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Which stages of a pipeline the local cache and the remote hold.
    Status {
        /// The pipeline file (YAML).
        file: PathBuf,
        /// As `run --set`: the pipeline with this value overridden.
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<Override>,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
pub enum DagFormat {
    Dot,
    Mermaid,
}

/// The remote's command-line flags (global: every command that reads the cache takes them).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Remote cache URL (s3://bucket/prefix or file:///path); overrides PIPE_REMOTE and
    /// pipe.toml. Bare `--remote` keeps the configured URL (`pipe gc --remote` collects it).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        num_args = 0..=1,
        default_missing_value = "",
        conflicts_with = "no_remote"
    )]
    pub remote: Option<String>,
    /// Use no remote cache, whatever PIPE_REMOTE or pipe.toml say.
    #[arg(long, global = true)]
    pub no_remote: bool,
    /// A remote failure (unreachable, refused, damaged object) ends the command with exit 1.
    #[arg(long, global = true)]
    pub remote_required: bool,
    /// Read from the remote but upload nothing after a run.
    #[arg(long, global = true)]
    pub no_push: bool,
}
