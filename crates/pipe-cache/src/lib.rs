//! The content-addressed cache: stage keys, the object store, the lock and the stat cache.
//!
//! Layout under the cache root:
//! - `pipe-cache.json`: the marker that makes a directory a cache (layout version)
//! - `objects/ab/<digest>/`: one committed artifact (files + `.manifest.json`, whose `refs`
//!   name the objects it refers to; `.verified` remembers the files' stats at the last check)
//! - `keys/ab/<key>.json`: stage key → output digest (+ the key's components, for `pipe why`)
//! - `runs/<time>-<pipeline>.json`: one record per `pipe run`
//! - `work/<key>/`: scratch that survives an interrupted stage (training resume)
//! - `tmp/`: stage outputs being written; renamed into `objects/` only on success
//! - `stat-cache.txt`, `stat-lists.txt`, `lock`

pub mod digest;
pub mod error;
pub mod gc;
pub mod key;
pub mod lock;
pub mod marker;
pub mod object;
pub mod statcache;
pub mod store;

pub use error::StoreError;
pub use key::StageKey;
pub use store::{Lookup, Store};
