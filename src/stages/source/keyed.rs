//! A source stores exactly the bytes its key digested. The key's file digests are computed
//! before the stage runs (through the stat cache); a file rewritten between then and the copy,
//! or during it, would otherwise put other bytes under the key. So a source digests every byte
//! as it reads it (one pass: the copy or decode reads each file once) and compares the result
//! with the key's digest of the same role ([`check`]); on a mismatch the stage fails with
//! [`StageError::Changed`] and nothing is committed.
//!
//! A file stored as it is ([`store_hashed`]) is cloned (`FICLONE`: the filesystem shares the
//! blocks copy-on-write, so no byte is copied and a later write to either file leaves the
//! other as it was) where the filesystem can, and copied otherwise; never hardlinked, since a
//! hardlink is the user's file itself (see the README's design notes).

use super::{StageContext, StageError};
use crate::cache::statcache;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Test-only: a source sleeps this many milliseconds after each chunk (raw) or image (folder)
/// it reads, so a test can rewrite a file while it is being copied. Inert unless set; not a
/// user feature.
pub const TEST_READ_DELAY_ENV: &str = "PIPE_TEST_SOURCE_READ_DELAY_MS";

/// The pause [`TEST_READ_DELAY_ENV`] asks for, if any.
pub(super) fn test_read_delay() -> Option<Duration> {
    std::env::var(TEST_READ_DELAY_ENV)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// Bytes read (and hashed, then written) at a time by [`copy_hashed`]: large enough for the
/// multi-threaded hasher, small enough to stay in cache.
const CHUNK: usize = 4 << 20;

/// The digest (hex) of one file's bytes, as the stat cache computes it for the key.
pub(super) fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// How [`store_hashed`] stored a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stored {
    /// A copy-on-write clone sharing the source's blocks.
    Cloned,
    /// A byte-for-byte copy.
    Copied,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StageError {
    let path = path.to_path_buf();
    move |source| StageError::Io { path, source }
}

/// Stores the bytes of `src` as the new file `dst` and returns their digest (hex), with how
/// they were stored: a clone where the filesystem can make one (its digest is then computed
/// from the clone, which no later write to `src` can change), else [`copy_hashed`]. A file that
/// does not hold exactly `len` bytes has changed since it was inspected. The digest is
/// declared to the store ([`crate::cache::object::declare_digest`]), so commit does not read
/// the bytes again. `pause` (tests only) forces the copy and sleeps after each of its chunks,
/// so a test can rewrite the file while it is being read.
pub(super) fn store_hashed(
    src: &Path,
    dst: &Path,
    len: u64,
    pause: Option<Duration>,
) -> Result<(String, Stored), StageError> {
    let input = std::fs::File::open(src).map_err(|e| StageError::Input {
        path: src.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let output = std::fs::File::create_new(dst).map_err(io(dst))?;
    let cloned = pause.is_none() && rustix::fs::ioctl_ficlone(&output, &input).is_ok();
    let (digest, how) = if cloned {
        drop(input);
        (hash_clone(output, src, dst, len)?, Stored::Cloned)
    } else {
        // No clone here (ext4, tmpfs, the cache on another filesystem than the file): copy.
        let digest = copy_hashed(input, src, output, dst, len, pause)?;
        (digest, Stored::Copied)
    };
    let out = dst.parent().unwrap_or(Path::new("."));
    let rel = dst.strip_prefix(out).unwrap_or(dst).to_string_lossy();
    crate::cache::object::declare_digest(out, &rel, &digest).map_err(|e| StageError::Artifact {
        path: dst.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((digest, how))
}

/// The digest of `dst` (the open file `file`), a clone of `src` that must hold `len` bytes.
fn hash_clone(file: std::fs::File, src: &Path, dst: &Path, len: u64) -> Result<String, StageError> {
    let size = file.metadata().map_err(io(dst))?.len();
    if size != len {
        return Err(changed(src));
    }
    drop(file);
    let mut h = blake3::Hasher::new();
    // Mapped: nothing else writes to a file in the stage's own output directory.
    h.update_mmap_rayon(dst).map_err(io(dst))?;
    Ok(h.finalize().to_hex().to_string())
}

/// Copies `input` (the file `src`) to `output` (the new file `dst`) in one pass, hashing every
/// byte written, and returns the digest (hex). A file that does not hold exactly `len` bytes
/// when read has changed since it was inspected. `pause` (tests only) sleeps after each chunk.
fn copy_hashed(
    mut input: std::fs::File,
    src: &Path,
    mut output: std::fs::File,
    dst: &Path,
    len: u64,
    pause: Option<Duration>,
) -> Result<String, StageError> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK)).max(1)];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io(src))?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > len {
            return Err(changed(src));
        }
        hasher.update_rayon(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io(dst))?;
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    if copied != len {
        return Err(changed(src));
    }
    Ok(hasher.finalize().to_hex().to_string())
}

pub(super) fn changed(path: &Path) -> StageError {
    StageError::Changed {
        path: path.to_path_buf(),
    }
}

/// Fails with [`StageError::Changed`] (naming `shown`) unless the digests of `files` as read
/// (in the key's order, each with its path) combine to the key's digest of `role`.
pub(super) fn check<'a>(
    ctx: &StageContext,
    role: &str,
    shown: &Path,
    files: impl IntoIterator<Item = (&'a Path, &'a str)>,
) -> Result<(), StageError> {
    let keyed = ctx.files.get(role).ok_or_else(|| StageError::Artifact {
        path: shown.to_path_buf(),
        message: format!("internal: the stage key has no digest of its `{role}` files"),
    })?;
    if statcache::combine(ctx.base_dir, files) == *keyed {
        Ok(())
    } else {
        Err(changed(shown))
    }
}

/// [`check`] for a role of one file.
pub(super) fn check_one(
    ctx: &StageContext,
    role: &str,
    path: &Path,
    digest: &str,
) -> Result<(), StageError> {
    check(ctx, role, path, [(path, digest)])
}

/// Paths with their digests, borrowed for [`check`].
pub(super) fn pairs<'a>(
    paths: &'a [PathBuf],
    digests: &'a [String],
) -> impl Iterator<Item = (&'a Path, &'a str)> {
    paths
        .iter()
        .map(PathBuf::as_path)
        .zip(digests.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// [`copy_hashed`] between two paths.
    fn copy(
        src: &Path,
        dst: &Path,
        len: u64,
        pause: Option<Duration>,
    ) -> Result<String, StageError> {
        let input = std::fs::File::open(src).unwrap();
        let output = std::fs::File::create_new(dst).unwrap();
        copy_hashed(input, src, output, dst, len, pause)
    }

    /// Stores `bytes` from a file in `dir` into `dir/out/pixels.u8`, then rewrites the source in
    /// place (same size, same inode, as `dd conv=notrunc` or an editor that writes in place
    /// would): what was stored keeps its bytes, inode and digest. Returns how it was stored.
    fn store_then_edit_in_place(dir: &Path) -> Stored {
        let src = dir.join("db.raw");
        let bytes: Vec<u8> = (0..CHUNK + 77).map(|i| (i % 253) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let out = dir.join("out");
        std::fs::create_dir(&out).unwrap();
        let dst = out.join("pixels.u8");
        let (d, how) = store_hashed(&src, &dst, bytes.len() as u64, None).unwrap();
        assert_eq!(d, digest(&bytes));
        let (s, t) = (
            std::fs::metadata(&src).unwrap(),
            std::fs::metadata(&dst).unwrap(),
        );
        assert_ne!(s.ino(), t.ino(), "never a hardlink");
        assert_eq!((s.nlink(), t.nlink()), (1, 1));
        assert!(std::fs::read(out.join(crate::cache::object::DIGESTED)).is_ok());

        let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[!bytes[5]; 4096], 0).unwrap();
        drop(f);
        assert_ne!(std::fs::read(&src).unwrap()[5], bytes[5]);
        assert!(std::fs::read(&dst).unwrap() == bytes);
        assert_eq!(digest(&std::fs::read(&dst).unwrap()), d);
        how
    }

    /// Wherever the test runs (a clone or a copy, whichever its filesystem makes).
    #[test]
    fn a_stored_file_keeps_its_bytes_when_the_source_is_edited_in_place() {
        let dir = tempfile::tempdir().unwrap();
        store_then_edit_in_place(dir.path());
    }

    /// The clone itself: needs a filesystem with reflinks (btrfs, XFS, bcachefs), which the
    /// test machines' ext4 is not: `PIPE_TEST_REFLINK_DIR=/mnt/btrfs/tmp cargo test --release
    /// -- --ignored a_clone`.
    #[test]
    #[ignore = "needs PIPE_TEST_REFLINK_DIR on a filesystem with reflinks"]
    fn a_clone_is_made_where_the_filesystem_allows_and_keeps_its_bytes() {
        let base = std::env::var("PIPE_TEST_REFLINK_DIR").expect("PIPE_TEST_REFLINK_DIR");
        let dir = tempfile::tempdir_in(base).unwrap();
        assert_eq!(store_then_edit_in_place(dir.path()), Stored::Cloned);
    }

    /// The test-only read delay forces the copy, so a rewrite during the copy can be tested on
    /// any filesystem.
    #[test]
    fn the_test_read_delay_forces_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        std::fs::write(&src, b"abc").unwrap();
        let dst = dir.path().join("b");
        let (d, how) = store_hashed(&src, &dst, 3, Some(Duration::ZERO)).unwrap();
        assert_eq!((d, how), (digest(b"abc"), Stored::Copied));
    }

    /// A writer thread flips a byte of the source while it is copied (the copy pauses after
    /// each chunk): the digest of what was stored differs from the file's digest as keyed.
    #[test]
    fn a_byte_flipped_during_the_copy_changes_the_digest_of_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("db.raw");
        let bytes: Vec<u8> = (0..3 * CHUNK).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let keyed = digest(&bytes);

        // Undisturbed: the copy's digest is the key's and the copy holds the same bytes.
        let dst = dir.path().join("a.u8");
        let d = copy(&src, &dst, bytes.len() as u64, None).unwrap();
        assert_eq!(d, keyed);
        assert!(std::fs::read(&dst).unwrap() == bytes);

        let dst = dir.path().join("b.u8");
        let flipped = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                // Once the first chunk is out, flip a byte of the last one.
                while !std::fs::metadata(&dst).is_ok_and(|m| m.len() > 0) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
                let at = bytes.len() as u64 - 10;
                std::os::unix::fs::FileExt::write_all_at(&f, &[bytes[at as usize] ^ 1], at)
                    .unwrap();
            });
            let d = copy(
                &src,
                &dst,
                bytes.len() as u64,
                Some(Duration::from_millis(200)),
            );
            writer.join().unwrap();
            d
        })
        .unwrap();
        assert_ne!(flipped, keyed, "the flip is in what was stored");
        assert_eq!(flipped, digest(&std::fs::read(&dst).unwrap()));
    }

    #[test]
    fn a_file_that_grows_or_shrinks_while_copied_has_changed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("db.raw");
        std::fs::write(&src, b"abcdef").unwrap();
        for (i, len) in [5u64, 7].into_iter().enumerate() {
            let dst = dir.path().join(format!("{i}.u8"));
            let e = copy(&src, &dst, len, None).unwrap_err();
            assert!(matches!(e, StageError::Changed { .. }), "{e}");
            assert!(!e.is_user_error());
            assert!(e.to_string().contains("changed while it was read"), "{e}");
        }
    }
}
