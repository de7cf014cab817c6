//! Moving one object (and one key record) between the local cache and the remote.
//!
//! Download: the manifest first (it must hash to the key record's digest), then every file
//! streamed to the local `tmp/` directory while its blake3 is computed; a file whose size or
//! digest differs from the manifest fails the pull before anything is committed, and the
//! temporary directory is removed (or, after a kill, by the next run). Only then is the output
//! committed like a local run's ([`Store::commit`]: rename, then key file).
//!
//! Upload: the files (multipart above [`MULTIPART_OVER`], so memory stays bounded), then the
//! manifest, then — by the caller, last — the key record with a conditional put.

use super::{Remote, RemoteError};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use pipe_cache::store::{KeyEntry, MANIFEST, Manifest, ManifestEntry, Store, declare_refs};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Files larger than this are uploaded in parts of [`PART_SIZE`].
const MULTIPART_OVER: u64 = 16 << 20;
const PART_SIZE: usize = 16 << 20;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Files of one object transferred at once.
const FILES_IN_FLIGHT: usize = 8;
/// Test-only: sleep this many milliseconds after each downloaded chunk, so tests can kill pipe
/// or the server mid-transfer. Not a user feature; documented here only.
pub const TEST_DELAY_ENV: &str = "PIPE_TEST_TRANSFER_DELAY_MS";

/// What a pull brought.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub digest: String,
    pub bytes: u64,
    pub seconds: f64,
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "  {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Local {
        path: path.to_path_buf(),
        source,
    }
}

impl Remote {
    fn damaged(&self, key: &str, message: String) -> RemoteError {
        RemoteError::Damaged {
            remote: self.target.shown.clone(),
            key: key.to_string(),
            message,
        }
    }

    /// Downloads the output `entry` names, verifies it and commits it into `store` under
    /// `entry`'s key. Nothing is committed unless every file matched.
    pub fn pull(&self, store: &Store, entry: &KeyEntry) -> Result<Pulled, RemoteError> {
        let t0 = Instant::now();
        let key = entry.key.digest();
        let out = store.begin(&entry.stage)?;
        // The same bytes are already here under another key: only the key is new.
        if store.check(&entry.digest).is_ok() {
            let local = store.object_dir(&entry.digest);
            let m = store.manifest(&entry.digest)?;
            for f in &m.files {
                let to = out.dir.join(&f.path);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(local_err(parent))?;
                }
                let from = local.join(&f.path);
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(local_err(&to))?;
                }
            }
            if !m.refs.is_empty() {
                declare_refs(&out.dir, &m.refs)?;
            }
            let digest = store.commit(out, &entry.stage, &entry.key)?;
            return Ok(Pulled {
                digest,
                bytes: 0,
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        let manifest = self.remote_manifest(&key, &entry.digest)?;
        let total: u64 = manifest.files.iter().map(|f| f.size).sum();
        let pb = bar(total, &format!("pulling {}", entry.stage));
        let res = self.rt.block_on(
            futures::stream::iter(
                manifest
                    .files
                    .iter()
                    .map(|f| self.download(&key, &entry.digest, f, out.dir.join(&f.path), &pb)),
            )
            .buffer_unordered(FILES_IN_FLIGHT)
            .try_collect::<Vec<u64>>(),
        );
        pb.finish_and_clear();
        let bytes: u64 = res?.iter().sum();
        if !manifest.refs.is_empty() {
            declare_refs(&out.dir, &manifest.refs)?;
        }
        let digest = store.commit(out, &entry.stage, &entry.key)?;
        if digest != entry.digest {
            // Every file matched its manifest entry, so this means a file list that differs
            // (an extra file): the commit stands for what was downloaded and verified.
            return Err(self.damaged(
                &key,
                format!("object {} came out as {digest}", entry.digest),
            ));
        }
        let seconds = t0.elapsed().as_secs_f64();
        if let Ok(mut s) = self.stats.lock() {
            s.pulled_objects += 1;
            s.pulled_bytes += bytes;
            s.pulled_seconds += seconds;
        }
        Ok(Pulled {
            digest,
            bytes,
            seconds,
        })
    }

    /// The remote manifest of `digest` (for key `key`, named in errors), checked: its paths
    /// stay inside the object and it hashes to `digest`.
    pub(super) fn remote_manifest(&self, key: &str, digest: &str) -> Result<Manifest, RemoteError> {
        let loc = self.object_path(digest, MANIFEST);
        let bytes = match self.rt.block_on(async {
            let r = self.target.store.get(&loc).await?;
            r.bytes().await
        }) {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(self.damaged(
                    key,
                    format!(
                        "its object {digest} is not on the remote (an upload that never \
                         finished, or a removed object)"
                    ),
                ));
            }
            Err(e) => return Err(self.classify(&format!("reading object {digest}"), e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            self.damaged(key, format!("object {digest}: unreadable manifest ({e})"))
        })?;
        for f in &m.files {
            let rel = Path::new(&f.path);
            let inside = !f.path.is_empty()
                && rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(self.damaged(
                    key,
                    format!("object {digest}: a file path leaves the object"),
                ));
            }
        }
        if m.digest() != digest {
            return Err(self.damaged(
                key,
                format!("object {digest}: its manifest does not match the digest"),
            ));
        }
        Ok(m)
    }

    /// Streams one file to `dest` (or nowhere, to verify), checking size and blake3.
    async fn download(
        &self,
        key: &str,
        digest: &str,
        f: &ManifestEntry,
        dest: PathBuf,
        pb: &ProgressBar,
    ) -> Result<u64, RemoteError> {
        self.fetch_checked(key, digest, f, Some(dest), pb).await
    }

    async fn fetch_checked(
        &self,
        key: &str,
        digest: &str,
        f: &ManifestEntry,
        dest: Option<PathBuf>,
        pb: &ProgressBar,
    ) -> Result<u64, RemoteError> {
        let loc = self.object_path(digest, &f.path);
        let what = || format!("object {digest}, file {}", f.path);
        let res = match self.target.store.get(&loc).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(
                    self.damaged(key, format!("object {digest}: file {} is missing", f.path))
                );
            }
            Err(e) => return Err(self.classify(&what(), e)),
        };
        let mut file = match &dest {
            Some(d) => {
                if let Some(parent) = d.parent() {
                    std::fs::create_dir_all(parent).map_err(local_err(parent))?;
                }
                let file = std::fs::File::create(d).map_err(local_err(d))?;
                Some(std::io::BufWriter::with_capacity(256 << 10, file))
            }
            None => None,
        };
        let delay = std::env::var(TEST_DELAY_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut stream = res.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(&what(), e))?;
            n += chunk.len() as u64;
            if n > f.size {
                break;
            }
            hasher.update(&chunk);
            if let (Some(w), Some(d)) = (file.as_mut(), &dest) {
                w.write_all(&chunk).map_err(local_err(d))?;
            }
            pb.inc(chunk.len() as u64);
            if let Some(ms) = delay {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
        }
        if let (Some(w), Some(d)) = (file.as_mut(), &dest) {
            w.flush().map_err(local_err(d))?;
        }
        if n != f.size {
            return Err(self.damaged(
                key,
                format!(
                    "object {digest}: file {} has {n} bytes, the manifest records {} (a \
                     truncated or damaged remote object)",
                    f.path, f.size
                ),
            ));
        }
        if hasher.finalize().to_hex().as_str() != f.blake3 {
            return Err(self.damaged(
                key,
                format!(
                    "object {digest}: file {} does not match the manifest's blake3 (a corrupted \
                     remote object)",
                    f.path
                ),
            ));
        }
        Ok(n)
    }

    /// The files of the remote copy of `digest` that are missing or do not match `m` (every
    /// byte is downloaded and hashed; nothing is written).
    pub(super) fn damaged_files(
        &self,
        digest: &str,
        m: &Manifest,
    ) -> Result<Vec<String>, RemoteError> {
        let pb = bar(m.files.iter().map(|f| f.size).sum(), "verifying");
        let results: Vec<(String, Result<u64, RemoteError>)> = self.rt.block_on(
            futures::stream::iter(m.files.iter().map(|f| {
                let pb = &pb;
                async move {
                    (
                        f.path.clone(),
                        self.fetch_checked(digest, digest, f, None, pb).await,
                    )
                }
            }))
            .buffer_unordered(FILES_IN_FLIGHT)
            .collect(),
        );
        pb.finish_and_clear();
        let mut bad = Vec::new();
        for (path, r) in results {
            match r {
                Ok(_) => {}
                Err(RemoteError::Damaged { .. }) => bad.push(path),
                Err(e) => return Err(e),
            }
        }
        bad.sort();
        Ok(bad)
    }

    /// Whether the remote holds the manifest of `digest` (a finished upload).
    pub(super) fn has_object(&self, digest: &str) -> Result<bool, RemoteError> {
        let loc = self.object_path(digest, MANIFEST);
        match self.rt.block_on(self.target.store.head(&loc)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.classify(&format!("checking object {digest}"), e)),
        }
    }

    /// Uploads the local object `digest` (the objects it refers to first) unless the remote has
    /// it; with `repair`, also when the remote copy is damaged. Returns the bytes uploaded.
    pub fn push_object(
        &self,
        store: &Store,
        digest: &str,
        repair: bool,
    ) -> Result<u64, RemoteError> {
        // Never upload a local object that no longer matches its manifest.
        store.check(digest)?;
        let m = store.manifest(digest)?;
        let mut bytes = 0;
        for r in &m.refs {
            bytes += self.push_object(store, r, repair)?;
        }
        if self.has_object(digest)? {
            if !repair {
                return Ok(bytes);
            }
            let bad = match self.remote_manifest(digest, digest) {
                Ok(rm) if rm.files == m.files => self.damaged_files(digest, &m)?,
                Ok(_) | Err(RemoteError::Damaged { .. }) => {
                    m.files.iter().map(|f| f.path.clone()).collect()
                }
                Err(e) => return Err(e),
            };
            if bad.is_empty() {
                return Ok(bytes);
            }
            self.notify(&super::Notice::Repaired {
                digest,
                files: bad.len(),
            });
        }
        let dir = store.object_dir(digest);
        let total: u64 = m.files.iter().map(|f| f.size).sum();
        let pb = bar(total, &format!("pushing {}", &digest[..12]));
        let res = self.rt.block_on(
            futures::stream::iter(
                m.files
                    .iter()
                    .map(|f| self.upload_file(digest, dir.join(&f.path), &f.path, f.size, &pb)),
            )
            .buffer_unordered(FILES_IN_FLIGHT)
            .try_collect::<Vec<u64>>(),
        );
        pb.finish_and_clear();
        bytes += res?.iter().sum::<u64>();
        let mpath = dir.join(MANIFEST);
        let text = std::fs::read(&mpath).map_err(local_err(&mpath))?;
        let loc = self.object_path(digest, MANIFEST);
        self.rt
            .block_on(self.target.store.put(&loc, PutPayload::from(text)))
            .map_err(|e| self.classify(&format!("writing object {digest}"), e))?;
        Ok(bytes)
    }

    async fn upload_file(
        &self,
        digest: &str,
        path: PathBuf,
        rel: &str,
        size: u64,
        pb: &ProgressBar,
    ) -> Result<u64, RemoteError> {
        let loc = self.object_path(digest, rel);
        let what = || format!("writing object {digest}, file {rel}");
        if size <= MULTIPART_OVER {
            let data = std::fs::read(&path).map_err(local_err(&path))?;
            self.target
                .store
                .put(&loc, PutPayload::from(data))
                .await
                .map_err(|e| self.classify(&what(), e))?;
            pb.inc(size);
            return Ok(size);
        }
        let upload = self
            .target
            .store
            .put_multipart(&loc)
            .await
            .map_err(|e| self.classify(&what(), e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut file = std::fs::File::open(&path).map_err(local_err(&path))?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = file.read(&mut buf).map_err(local_err(&path))?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|e| self.classify(&what(), e))?;
            w.write(&buf[..n]);
            pb.inc(n as u64);
        }
        w.finish().await.map_err(|e| self.classify(&what(), e))?;
        Ok(size)
    }

    /// Writes the key record, last: the first writer of a key wins where the store supports a
    /// conditional put; otherwise (same key, same content addressing) the last one does.
    pub fn push_key(&self, entry: &KeyEntry) -> Result<(), RemoteError> {
        let key = entry.key.digest();
        let loc = self.key_path(&key);
        let text = serde_json::to_vec_pretty(entry).expect("a key entry serialises");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let res = self.rt.block_on(self.target.store.put_opts(
            &loc,
            PutPayload::from(text.clone()),
            create,
        ));
        let what = format!("writing key {key}");
        match res {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => self
                .rt
                .block_on(self.target.store.put(&loc, PutPayload::from(text)))
                .map(|_| ())
                .map_err(|e| self.classify(&what, e)),
            Err(e) => Err(self.classify(&what, e)),
        }
    }
}
