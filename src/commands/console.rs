//! Everything pipe prints for a person goes through here ([`outln!`](crate::outln),
//! [`out!`](crate::out), [`errln!`](crate::errln)) instead of `println!`, which panics when the
//! reader has gone (Rust ignores SIGPIPE, so a write to a closed pipe returns EPIPE and `println!`
//! turns it into a panic: `pipe status | head -1` exited 101, and a `run` lost its record).
//!
//! A closed stream is a quiet stop of that stream: the rest of what would have gone there is
//! dropped and the command finishes as it would have, so a run still commits, saves its record
//! and releases the lock, and its exit code is the run's. (Stopping the whole process at the
//! first EPIPE, as a default SIGPIPE would, could kill a run between a stage's commit and its
//! record.) Any other error writing to stdout (`pipe status > /dev/full`) is remembered, the
//! output stops, and [`finish`] turns it into exit code 1 with the error on stderr.
//!
//! `clippy::print_stdout` and `clippy::print_stderr` (in `lib.rs` and `main.rs`) keep new
//! `println!`s out of the library.

use std::fmt;
use std::io::{self, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// One output stream's state: closed by its reader, or failed with another error.
struct Stream {
    closed: AtomicBool,
    failure: Mutex<Option<io::Error>>,
}

impl Stream {
    const fn new() -> Self {
        Self {
            closed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Writes with `write` unless the stream stopped; stops it on an error. Returns the error
    /// unless it was the reader going away.
    fn write(&self, write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match write() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.closed.store(true, Ordering::Relaxed);
                if e.kind() == io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                let copy = io::Error::new(e.kind(), e.to_string());
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert(e);
                }
                Err(copy)
            }
        }
    }
}

static STDOUT: Stream = Stream::new();
static STDERR: Stream = Stream::new();

/// `print!`/`println!` for pipe's output: see the module documentation.
pub fn out(args: fmt::Arguments<'_>, newline: bool) {
    let _ = STDOUT.write(|| {
        let mut w = io::stdout().lock();
        w.write_fmt(args)?;
        if newline {
            w.write_all(b"\n")?;
        }
        Ok(())
    });
}

/// `eprintln!` for pipe's messages; an error writing to stderr has nowhere to be reported.
pub fn err(args: fmt::Arguments<'_>, newline: bool) {
    let _ = STDERR.write(|| {
        let mut w = io::stderr().lock();
        w.write_fmt(args)?;
        if newline {
            w.write_all(b"\n")?;
        }
        Ok(())
    });
}

/// Raw bytes to stdout (`pipe report -o -`), flushed. A reader that went away is not an
/// error; any other failure is returned (and also ends the output).
pub fn out_bytes(bytes: &[u8]) -> io::Result<()> {
    STDOUT.write(|| {
        let mut w = io::stdout().lock();
        w.write_all(bytes)?;
        w.flush()
    })
}

/// Flushes stdout; the exit code to use: `code`, or 1 where it was 0 and stdout failed with
/// something other than a closed pipe (the error goes to stderr).
pub fn finish(code: i32) -> i32 {
    let _ = STDOUT.write(|| io::stdout().lock().flush());
    let failure = STDOUT.failure.lock().ok().and_then(|mut f| f.take());
    match failure {
        Some(e) => {
            err(format_args!("error: writing to stdout: {e}"), true);
            if code == super::exit::EXIT_OK {
                super::exit::EXIT_INTERNAL
            } else {
                code
            }
        }
        None => code,
    }
}

/// `println!` that stops quietly when stdout's reader has gone ([`crate::commands::console`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::commands::console::out(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::commands::console::out(format_args!($($arg)*), true)
    };
}

/// `print!` that stops quietly when stdout's reader has gone ([`crate::commands::console`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::commands::console::out(format_args!($($arg)*), false)
    };
}

/// `eprintln!` that stops quietly when stderr's reader has gone ([`crate::commands::console`]).
#[macro_export]
macro_rules! errln {
    () => {
        $crate::commands::console::err(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::commands::console::err(format_args!($($arg)*), true)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reader_stops_the_stream_quietly_and_other_errors_are_kept() {
        let s = Stream::new();
        assert!(s.write(|| Ok(())).is_ok());
        assert!(
            s.write(|| Err(io::ErrorKind::BrokenPipe.into())).is_ok(),
            "EPIPE is not an error"
        );
        let mut called = false;
        s.write(|| {
            called = true;
            Ok(())
        })
        .unwrap();
        assert!(!called, "nothing is written after the reader went away");
        assert!(s.failure.lock().unwrap().is_none());

        let full = Stream::new();
        let e = full
            .write(|| Err(io::Error::from_raw_os_error(28)))
            .unwrap_err();
        assert_eq!(e.raw_os_error(), None, "a copy of the error is returned");
        assert_eq!(
            full.failure
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .raw_os_error(),
            Some(28)
        );
        assert!(full.closed.load(Ordering::Relaxed));
    }
}
