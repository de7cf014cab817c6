//! Shared experiments: run records on the remote under `runs/<name>.json`, so a colleague sees
//! which runs exist. The command layer decides what a record may hold (it strips what only the
//! pusher's machine knows) and reads them back; this module only moves bytes.

use crate::{Remote, RemoteError};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// Whether a record file name is one pipe writes (`<stamp>-<pipeline>.json`, no path).
pub fn is_run_name(name: &str) -> bool {
    name.ends_with(".json")
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Remote {
    fn run_path(&self, name: &str) -> object_store::path::Path {
        self.path(&format!("runs/{name}"))
    }

    /// Uploads one run record as `runs/<name>`; `Ok(false)` when the remote already holds one
    /// of that name (records never change once written, so the first upload wins).
    pub fn push_run(&self, name: &str, bytes: Vec<u8>) -> Result<bool, RemoteError> {
        assert!(is_run_name(name), "not a run record name: {name}");
        let loc = self.run_path(name);
        let what = format!("writing run record {name}");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let res = self.rt.block_on(self.target.store.put_opts(
            &loc,
            PutPayload::from(bytes.clone()),
            create,
        ));
        match res {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                let head = self.rt.block_on(self.target.store.head(&loc));
                match head {
                    Ok(_) => Ok(false),
                    Err(object_store::Error::NotFound { .. }) => self
                        .rt
                        .block_on(self.target.store.put(&loc, PutPayload::from(bytes)))
                        .map(|_| true)
                        .map_err(|e| self.classify(&what, e)),
                    Err(e) => Err(self.classify(&what, e)),
                }
            }
            Err(e) => Err(self.classify(&what, e)),
        }
    }

    /// Every run record on the remote: (file name, bytes), in name order (oldest first).
    pub fn runs(&self) -> Result<Vec<(String, Vec<u8>)>, RemoteError> {
        let prefix = self.path("runs");
        let mut metas: Vec<object_store::ObjectMeta> = self
            .rt
            .block_on(self.target.store.list(Some(&prefix)).try_collect())
            .map_err(|e| self.classify("listing runs/", e))?;
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        let mut out = Vec::new();
        for meta in metas {
            let name = meta.location.filename().unwrap_or_default().to_string();
            if !is_run_name(&name) {
                continue;
            }
            let bytes = self
                .rt
                .block_on(async {
                    let r = self.target.store.get(&meta.location).await?;
                    r.bytes().await
                })
                .map_err(|e| self.classify(&format!("reading run record {name}"), e))?;
            out.push((name, bytes.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_names_are_plain_file_names() {
        assert!(super::is_run_name("20261201T080000_000Z-data.json"));
        assert!(!super::is_run_name("../x.json"));
        assert!(!super::is_run_name("a/b.json"));
        assert!(!super::is_run_name(".tmp.json"));
        assert!(!super::is_run_name("x.txt"));
    }
}
