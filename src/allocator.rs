//! The process's allocator, chosen by each binary (`main.rs`, and the benches that time what it
//! runs include this file), never by the library: a library that installs a global allocator
//! imposes it on every program linking it (ripgrep and uv keep theirs in the binary too).
//!
//! mimalloc makes flex training about 25% faster than the system allocator (many short-lived
//! tensor buffers).

#[cfg(feature = "cpu")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (index 15 in both v2 and v3; libmimalloc-sys does not
/// export it as a constant).
#[cfg(feature = "cpu")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of returning it to the OS: training frees and reallocates
/// the same large tensor buffers every step, and re-faulting fresh zeroed pages cost ~7% of a
/// B3 step here (measured: 300 → 320 img/s). Call once at start-up.
pub fn tune() {
    #[cfg(feature = "cpu")]
    // SAFETY: sets a plain integer option; called once from `main` before any thread starts.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}
