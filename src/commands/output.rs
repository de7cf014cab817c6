//! The one way pipe writes a file outside the cache (`report -o`, `compare --png`), whatever
//! the path names:
//!
//! - `-`, or the file that is already this process's stdout (`/dev/stdout`, `/proc/self/fd/1`,
//!   or the file stdout was redirected to): written through stdout (a closed reader is a quiet
//!   stop, see [`super::console`]), so nothing else printed on stdout lands in the middle of it.
//! - Nothing yet, or a regular file: replaced atomically. The bytes go to a temporary file
//!   created beside it with `O_EXCL` under a fresh random name (the `tempfile` crate), synced,
//!   then renamed over the path: a reader never sees half a file, and no file of the user's
//!   (`notes.html.tmp`) is ever written or deleted. A file that existed keeps its permissions.
//!   A symbolic link to a regular file has its target replaced; the link stays.
//! - Anything else — a device (`/dev/null`, `/dev/full`, a terminal), a FIFO, a dangling
//!   link — is opened and written into as it is; renaming over it would turn `/dev/null` into a
//!   regular file. A write that fails (`/dev/full`: no space) is an error.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What an output path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written to stdout: the caller's own messages belong on stderr.
    Stdout,
    /// A regular file, created or replaced atomically.
    Replaced,
    /// A device, FIFO or the like, written into.
    Into,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `bytes` to `path` by the rules of the module documentation.
pub fn write(path: &Path, bytes: &[u8]) -> Result<Written, OutputError> {
    let err = |source| OutputError {
        path: path.to_path_buf(),
        source,
    };
    if is_stdout(path) {
        super::console::out_bytes(bytes).map_err(err)?;
        return Ok(Written::Stdout);
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            // Through a link, the file it names is replaced (the link stays a link).
            let target = std::fs::canonicalize(path).map_err(err)?;
            replace(&target, bytes, Some(&meta)).map_err(err)?;
            Ok(Written::Replaced)
        }
        Ok(_) => {
            write_into(path, bytes).map_err(err)?;
            Ok(Written::Into)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                // A dangling link: create what it names, as `>` does.
                write_into(path, bytes).map_err(err)?;
                return Ok(Written::Into);
            }
            replace(path, bytes, None).map_err(err)?;
            Ok(Written::Replaced)
        }
        Err(e) => Err(err(e)),
    }
}

/// Whether `path` is `-` or names the very file this process's stdout is open on.
pub fn is_stdout(path: &Path) -> bool {
    if path == Path::new("-") {
        return true;
    }
    use std::os::fd::AsFd;
    let Ok(out) = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|f| f.metadata())
    else {
        return false;
    };
    std::fs::metadata(path).is_ok_and(|m| m.dev() == out.dev() && m.ino() == out.ino())
}

/// Through a temporary file beside `path`, renamed over it; `old` is what `path` was.
fn replace(path: &Path, bytes: &[u8], old: Option<&Metadata>) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A new file gets the mode `File::create` would give it (0666 less the umask).
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Some(old) = old {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o7777))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary file is removed when `tmp` drops.
    tmp.persist(path).map(drop).map_err(|e| e.error)
}

/// Into an existing non-regular file (never created, never truncated: a device or FIFO has
/// nothing to truncate), or through a dangling link.
fn write_into(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_new_or_regular_file_is_replaced_through_a_fresh_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.html");
        // The user's own file with the name a fixed temporary name would have had.
        let theirs = dir.path().join("notes.html.tmp");
        std::fs::write(&theirs, "mine").unwrap();
        assert_eq!(write(&p, b"one").unwrap(), Written::Replaced);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(write(&p, b"two").unwrap(), Written::Replaced);
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640, "the replaced file keeps its permissions");
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "mine");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["notes.html", "notes.html.tmp"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_link_to_a_file_keeps_being_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.html");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.html");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(write(&link, b"new").unwrap(), Written::Replaced);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn devices_are_written_into_and_their_errors_reported() {
        assert_eq!(write(Path::new("/dev/null"), b"x").unwrap(), Written::Into);
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let e = write(Path::new("/dev/full"), b"x").unwrap_err();
        assert_eq!(e.source.raw_os_error(), Some(28), "{e}");
        assert!(e.to_string().starts_with("/dev/full: "), "{e}");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/r.html");
        let e = write(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/r.html"), "{e}");
    }
}
