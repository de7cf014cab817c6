//! The content-addressed cache: stage keys, the object store, the lock and the stat cache.
//!
//! Layout under the cache root:
//! - `objects/ab/<digest>/`: one committed artifact (files + `.manifest.json`)
//! - `keys/ab/<key>.json`: stage key → output digest (+ the key's components, for `pipe why`)
//! - `runs/<time>-<pipeline>.json`: one record per `pipe run`
//! - `work/<key>/`: scratch that survives an interrupted stage (training resume)
//! - `tmp/`: stage outputs being written; renamed into `objects/` only on success
//! - `stat-cache.json`, `lock`

pub mod gc;
pub mod key;
pub mod lock;
pub mod statcache;
pub mod store;

pub use key::StageKey;
pub use store::{Store, StoreError};
