//! Throughput of the data stages' kernels: dHash (single thread and `dhash_all`) and the
//! Hamming-radius grouping of `dedup`. Figures in BENCHMARKS.md:
//!
//! `cargo bench --bench data_speed -- dhash` (or `index`; none = both).
//! `BENCH_N` = images / hashes (defaults 100,000 / 116,000).

// The binary's allocator, as in `pipe` itself (src/allocator.rs).
#[path = "../src/allocator.rs"]
mod allocator;

use pipe::data::dhash::{dhash, dhash_all};
use pipe::data::index::group_by_radius;
use pipe::data::{Dataset, Shape};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn bench_n(default: usize) -> usize {
    std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// dHash of random 56x56x3 images: one thread (`dhash` per image, its plan built per call)
/// and all cores (`dhash_all`).
fn bench_dhash() {
    let shape = Shape::new(56, 56, 3);
    let n = bench_n(100_000);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let pixels: Vec<u8> = (0..n * shape.image_len()).map(|_| rng.random()).collect();
    let names = (0..n).map(|i| format!("#{i}")).collect();
    let ds = Dataset::new(shape, pixels, None, names);
    let t = Instant::now();
    let mut x = 0u8;
    for i in 0..n {
        x ^= dhash(ds.image(i), shape, 8)[0];
    }
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let all = dhash_all(&ds, 8);
    let par = t.elapsed().as_secs_f64();
    println!(
        "dhash 56x56x3: single thread {:.0} images/s, dhash_all {:.0} images/s ({x:x} {})",
        n as f64 / one,
        n as f64 / par,
        all.len()
    );
}

/// Grouping random 64-bit hashes by Hamming radius.
fn bench_index() {
    let n = bench_n(116_000);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let hashes: Vec<u8> = (0..n * 8).map(|_| rng.random::<u8>()).collect();
    for radius in [0, 1, 4, 8] {
        let t = Instant::now();
        let g =
            group_by_radius(&hashes, 8, radius).unwrap_or_else(|e| panic!("grouping failed: {e}"));
        println!(
            "radius {radius} over {n} random 64-bit hashes: {:.3} s, {} groups",
            t.elapsed().as_secs_f64(),
            g.groups.len()
        );
    }
}

fn main() {
    allocator::tune();
    // `cargo bench` passes `--bench`; the other arguments select benchmarks.
    let picked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let benches: [(&str, fn()); 2] = [("dhash", bench_dhash), ("index", bench_index)];
    if let Some(bad) = picked.iter().find(|p| !benches.iter().any(|(n, _)| n == p)) {
        eprintln!("unknown benchmark {bad}: choose from dhash, index");
        std::process::exit(2);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, run) in benches {
        if picked.is_empty() || picked.iter().any(|p| p == name) {
            run();
        }
    }
}
