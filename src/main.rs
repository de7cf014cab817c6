//! The `pipe` binary: its allocator, the command line, logging, and the exit code — the one
//! place a process ends ([`pipe::commands::exit`] picks the code, the console flushes).

mod allocator;

use clap::Parser;
use pipe::settings::cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() {
    allocator::tune();
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let code = pipe::commands::dispatch(cli);
    std::process::exit(pipe::commands::console::finish(code));
}
