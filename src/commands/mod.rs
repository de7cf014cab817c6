//! The command layer: one module per command family, each a function from its settings to an
//! exit code. Everything pipe prints for a person ([`console`]'s macros, the run's lines in
//! [`render`]) and every exit code ([`exit`]) is decided here; the layers below return values,
//! typed errors and events.

#[macro_use]
pub mod console;

mod compare;
mod compare_rows;
mod completions;
mod dag;
mod diff;
mod doctor;
mod dry_run;
pub mod exit;
mod gc;
mod history;
mod init;
mod model;
pub mod output;
mod remote;
pub mod render;
mod report;
mod run;
mod runs;
mod search;
mod status;
mod sweep;
mod validate;

use crate::settings::Settings;
use crate::settings::cli::{Cli, Command, RemoteCommand};
pub use crate::settings::filter::Filter;
use crate::spec::{Diagnostic, Override, Pipeline, load};
use exit::EXIT_INVALID;
use std::path::Path;

pub fn dispatch(cli: Cli) -> i32 {
    let s = Settings::new(cli.cache, cli.remote);
    match cli.command {
        Command::Run {
            file,
            set,
            jobs,
            force,
            until,
            only,
            executor,
            dry_run,
            device,
            no_wait,
            completion_record,
            epoch_relay,
            sweep,
        } => {
            let flags = run::Flags {
                file: &file,
                set: &set,
                jobs,
                force,
                until,
                only,
                executor,
                dry_run,
                device,
                no_wait,
                completion_record: completion_record.as_deref(),
                epoch_relay: epoch_relay.as_deref(),
            };
            run::run(&s, flags, sweep)
        }
        Command::Validate { files, set, format } => validate::validate(&files, &set, format),
        Command::Status { file, set, json } => status::status(&s, &file, &set, json),
        Command::Dag { file, format } => dag::dag(&file, format),
        Command::Why { file, stage, set } => status::why(&s, &file, &stage, &set),
        Command::Gc { grace, dry_run, .. } if s.remote.remote.is_some() => {
            gc::remote(&s, grace, dry_run)
        }
        Command::Gc {
            keep_runs,
            dry_run,
            ignore_unreadable,
            ..
        } => gc::local(&s.cache, keep_runs, dry_run, ignore_unreadable),
        Command::Push { files, repair } => remote::push(&s, &files, repair),
        Command::Pull { file, set, until } => remote::pull(&s, &file, &set, until.as_deref()),
        Command::Remote {
            command: RemoteCommand::Status { file, set },
        } => remote::status(&s, &file, &set),
        Command::Runs { limit } if s.remote.remote.is_some() => runs::remote(&s, limit),
        Command::Runs { limit } => runs::runs(&s.cache, limit),
        Command::Compare {
            files,
            png,
            sort,
            filter,
            columns,
            all,
        } => {
            let remote = s.remote.remote.is_some();
            let flags = compare::Flags {
                files: &files,
                png: png.as_deref(),
                sort: sort.as_deref(),
                filters: &filter,
                columns: columns.as_deref(),
                all,
                remote,
            };
            compare::compare(&s, flags)
        }
        Command::Diff { a, b, all, json } => {
            let remote = s.remote.remote.is_some();
            let flags = diff::Flags {
                a: &a,
                b: &b,
                all,
                json,
                remote,
            };
            diff::diff(&s, flags)
        }
        Command::Completions { shell } => completions::completions(shell),
        Command::Init { dir } => init::init(&dir),
        Command::Report { files, output } => {
            let remote = s.remote.remote.is_some();
            report::report(&s, &files, &output, remote)
        }
        Command::Model { name, input, stage } => match stage {
            Some(id) => model::stage_model(Path::new(&name), &id),
            None => model::model(&name, &input),
        },
        Command::Doctor => doctor::doctor(),
    }
}

/// Every diagnostic, then how many.
fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        errln!("error: {d}");
    }
    errln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

/// Loads `file` with `set`, or prints every diagnostic and gives the exit code to return.
fn load_or_exit(file: &Path, set: &[Override]) -> Result<Pipeline, i32> {
    load(file, set).map_err(|diags| {
        print_diagnostics(&diags);
        EXIT_INVALID
    })
}
