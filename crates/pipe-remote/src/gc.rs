//! What `pipe gc --remote` deletes: the remote objects no remote key record reaches (directly or
//! through manifest refs) and that are older than a grace period.
//!
//! Why it is safe with runs in progress elsewhere: a run uploads an object's files, then its
//! manifest, then the key record; between the first and the last its object is reached by no
//! key, so only its age protects it. Every file of such an object is younger than the grace
//! period as long as the upload takes less than that period. Key records are never deleted (a
//! key whose object is missing is a miss for readers, and the next run that computes it
//! uploads the object again). A key record that cannot be read stops gc: what it reaches is
//! unknown.

use super::{Remote, RemoteError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as RemotePath;
use pipe_cache::digest::is_digest;
use pipe_cache::store::KeyEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Default of `--grace`: far longer than any upload.
pub const DEFAULT_GRACE: &str = "6h";

/// One remote object as listed: its files and the time of the newest.
#[derive(Debug, Default)]
pub struct Listed {
    pub files: Vec<RemotePath>,
    pub bytes: u64,
    newest: i64,
}

/// What gc would delete and why the rest stays.
#[derive(Debug, Default)]
pub struct Plan {
    /// Digest and files of each object to delete.
    pub doomed: Vec<(String, Listed)>,
    /// Objects kept because a key record reaches them.
    pub reached: usize,
    /// Objects kept because they are younger than the grace period.
    pub young: usize,
    /// Key records naming an object the remote lacks.
    pub keys_without_object: usize,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Remote {
    fn list_all(&self, rel: &str) -> Result<Vec<object_store::ObjectMeta>, RemoteError> {
        let prefix = self.path(rel);
        self.rt
            .block_on(self.target.store.list(Some(&prefix)).try_collect())
            .map_err(|e| self.classify(&format!("listing {rel}/"), e))
    }

    /// What `gc --remote` deletes: the objects no key record reaches and older than `grace`.
    pub fn gc_plan(&self, grace: Duration) -> Result<Plan, RemoteError> {
        // Keys first: an object whose key record is written after this listing is younger
        // than the grace period when the objects are listed.
        let mut roots = BTreeSet::new();
        for meta in self.list_all("keys")? {
            let name = meta.location.filename().unwrap_or_default();
            let Some(key) = name.strip_suffix(".json").filter(|k| is_digest(k)) else {
                continue;
            };
            let bytes = self
                .rt
                .block_on(async {
                    let r = self.target.store.get(&meta.location).await?;
                    r.bytes().await
                })
                .map_err(|e| self.classify(&format!("reading key {key}"), e))?;
            let entry: KeyEntry =
                serde_json::from_slice(&bytes).map_err(|e| RemoteError::Damaged {
                    remote: self.shown().to_string(),
                    key: key.to_string(),
                    message: format!(
                        "unreadable key record ({e}): gc stops, since what it reaches is unknown; \
                     delete it or push the stage again"
                    ),
                })?;
            roots.insert(entry.digest);
        }
        let mut objects: BTreeMap<String, Listed> = BTreeMap::new();
        let base = self.path("objects");
        for meta in self.list_all("objects")? {
            let parts: Vec<String> = match meta.location.prefix_match(&base) {
                Some(p) => p.map(|x| x.as_ref().to_string()).collect(),
                None => continue,
            };
            let Some(digest) = parts.get(1).filter(|d| is_digest(d)) else {
                continue;
            };
            let l = objects.entry(digest.clone()).or_default();
            l.files.push(meta.location.clone());
            l.bytes += meta.size;
            l.newest = l.newest.max(meta.last_modified.timestamp());
        }
        let live = self.reachable(&roots, &objects)?;
        let mut plan = Plan {
            keys_without_object: roots.iter().filter(|d| !objects.contains_key(*d)).count(),
            ..Plan::default()
        };
        let cutoff = now_secs() - grace.as_secs() as i64;
        for (digest, l) in objects {
            if live.contains(&digest) {
                plan.reached += 1;
            } else if l.newest > cutoff {
                plan.young += 1;
            } else {
                plan.doomed.push((digest, l));
            }
        }
        Ok(plan)
    }

    /// The roots and every object their remote manifests refer to.
    fn reachable(
        &self,
        roots: &BTreeSet<String>,
        objects: &BTreeMap<String, Listed>,
    ) -> Result<BTreeSet<String>, RemoteError> {
        let mut live = BTreeSet::new();
        let mut todo: Vec<String> = roots.iter().cloned().collect();
        while let Some(d) = todo.pop() {
            if !live.insert(d.clone()) || !objects.contains_key(&d) {
                continue;
            }
            match self.remote_manifest(&d, &d) {
                Ok(m) => todo.extend(m.refs),
                // An object without its manifest refers to nothing anyone can resolve.
                Err(RemoteError::Damaged { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(live)
    }

    /// Deletes one object: its manifest first, so a reader never takes what remains for whole.
    pub fn delete_object(&self, digest: &str, l: &Listed) -> Result<(), RemoteError> {
        let manifest = self.object_path(digest, pipe_cache::store::MANIFEST);
        let mut order: Vec<&RemotePath> = l.files.iter().filter(|p| **p == manifest).collect();
        order.extend(l.files.iter().filter(|p| **p != manifest));
        for p in order {
            match self.rt.block_on(self.target.store.delete(p)) {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.classify(&format!("deleting object {digest}"), e)),
            }
        }
        Ok(())
    }
}
