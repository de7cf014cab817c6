//! Where the GPU runtime (cubecl, under burn's wgpu and CUDA backends) keeps what it learns
//! between runs. cubecl autotunes kernels (matmul, convolution, reduction) on first use and
//! persists the winners in an "environment" store. By default that store goes to
//! `target/environment` of the outermost `Cargo.toml` above the working directory, or to the
//! user cache (`~/.cache/cubecl`) when there is none: a pipeline run inside a Rust checkout would
//! write into its `target/`. pipe points it at `<cache>/cubecl/` instead, beside the objects it
//! speeds up, so `rm -rf cache` forgets it too. It never enters a key or a digest: autotuning
//! picks among kernels that compute the same function. A `cubecl.toml` that sets
//! `[environment] path` and the `CUBECL_*` variables (`CUBECL_AUTOTUNE_LEVEL`,
//! `CUBECL_AUTOTUNE_CACHE=0`, ...) still win.

use std::path::Path;

/// Directory under the pipe cache root that holds cubecl's environment store.
pub const CUBECL_DIR: &str = "cubecl";

/// Installs cubecl's configuration with its store under `cache_root` (see the module comment).
/// Call before the first GPU device is created; later calls (and calls after cubecl has read
/// its configuration) change nothing. Without a GPU backend compiled in, does nothing.
pub fn use_cache_dir(cache_root: &Path) {
    #[cfg(any(feature = "vulkan", feature = "cuda"))]
    {
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        if CubeClRuntimeConfig::try_set(runtime_config(cache_root)) {
            tracing::debug!(dir = %cache_root.join(CUBECL_DIR).display(), "cubecl environment store");
        }
    }
    #[cfg(not(any(feature = "vulkan", feature = "cuda")))]
    let _ = cache_root;
}

/// cubecl's configuration as it would load it itself (`cubecl.toml` / `burn.toml` found from
/// the working directory, then `CUBECL_*` variables), with the store moved under `cache_root`
/// unless the configuration chose a place.
#[cfg(any(feature = "vulkan", feature = "cuda"))]
fn runtime_config(cache_root: &Path) -> burn::cubecl::config::CubeClRuntimeConfig {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if matches!(config.environment.path, CacheConfig::Target) {
        config.environment.path = CacheConfig::Directory(cache_root.join(CUBECL_DIR));
    }
    config
}

#[cfg(all(test, any(feature = "vulkan", feature = "cuda")))]
mod tests {
    use super::*;
    use burn::cubecl::config::cache::CacheConfig;

    #[test]
    fn the_store_goes_under_the_cache_root() {
        let c = runtime_config(Path::new("/tmp/somewhere/cache"));
        match c.environment.path {
            CacheConfig::Directory(d) => assert_eq!(d, Path::new("/tmp/somewhere/cache/cubecl")),
            other => panic!("{other:?}"),
        }
    }
}
