//! A source stores exactly the bytes its key digested. The key's file digests are computed
//! before the stage runs (through the stat cache); a file rewritten between then and the copy,
//! or during it, would otherwise put other bytes under the key. So a source digests every byte
//! as it reads it (one pass: the copy or decode reads each file once) and compares the result
//! with the key's digest of the same role ([`check`]); on a mismatch the stage fails with
//! [`StageError::Changed`] and nothing is committed.

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

/// Copies `src` to the new file `dst` in one pass, hashing every byte written, and returns the
/// digest (hex). A file that does not hold exactly `len` bytes when read has changed since it
/// was inspected. `pause` (tests only) sleeps after each chunk.
pub(super) fn copy_hashed(
    src: &Path,
    dst: &Path,
    len: u64,
    pause: Option<Duration>,
) -> Result<String, StageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError::Io { path, source }
    };
    let mut input = std::fs::File::open(src).map_err(|e| StageError::Input {
        path: src.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let mut output = std::fs::File::create_new(dst).map_err(io(dst))?;
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
        let d = copy_hashed(&src, &dst, bytes.len() as u64, None).unwrap();
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
            let d = copy_hashed(
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
            let e = copy_hashed(&src, &dst, len, None).unwrap_err();
            assert!(matches!(e, StageError::Changed { .. }), "{e}");
            assert!(!e.is_user_error());
            assert!(e.to_string().contains("changed while it was read"), "{e}");
        }
    }
}
