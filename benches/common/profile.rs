//! What the per-operation profiles (`b3_profile`, `resnet_profile`) share: deterministic input
//! tensors, the median of timed calls, and the machine's FMA peak.

use burn_backend::TensorData;
use burn_flex::FlexTensor;
use std::hint::black_box;
use std::time::Instant;

/// A `shape` tensor of values in [-1, 1] from a hash of each index and `seed`.
pub fn tensor(shape: &[usize], seed: u32) -> FlexTensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 9;
            (v % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// Median seconds of `reps` calls of `f` (after one warm-up call).
pub fn time<R>(reps: usize, mut f: impl FnMut() -> R) -> f64 {
    black_box(f());
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            black_box(f());
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// FLOP/s of independent 8-wide FMA chains on every core (the instruction peak): 12 AVX2
/// `vfmadd` accumulators per thread, enough to cover the FMA latency on both FMA pipes.
pub fn fma_peak() -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let iters = 50_000_000u64;
        let s = Instant::now();
        std::thread::scope(|sc| {
            for _ in 0..threads {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                sc.spawn(|| unsafe { fma_chains(iters) });
            }
        });
        return (threads as u64 * iters * 12 * 8 * 2) as f64 / s.elapsed().as_secs_f64();
    }
    f64::NAN
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iters: u64) {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(black_box(0.999_999_9));
    let a = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    black_box(acc);
}

/// Prints a per-operation table (one row per name, seconds and FLOPs, with its share of the
/// time and of `peak`), the sum of its rows, and the images/s of that sum for a batch of
/// `images` (with `decimals` places); returns the summed seconds.
pub fn print_table(
    title: &str,
    rows: &[(&str, f64, f64)],
    peak: f64,
    images: usize,
    decimals: usize,
) -> f64 {
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let flops: f64 = rows.iter().map(|r| r.2).sum();
    println!("\n{title}");
    println!("| operation | ms | share | GFLOP | GFLOP/s | % of peak |");
    println!("|---|---:|---:|---:|---:|---:|");
    for &(name, secs, fl) in rows {
        println!(
            "| {name} | {:.2} | {:.1}% | {:.3} | {:.1} | {:.1}% |",
            secs * 1e3,
            100.0 * secs / total,
            fl / 1e9,
            fl / secs / 1e9,
            100.0 * fl / secs / peak
        );
    }
    println!(
        "| **sum of operations** | **{:.2}** | 100% | {:.3} | {:.1} | {:.1}% |",
        total * 1e3,
        flops / 1e9,
        flops / total / 1e9,
        100.0 * flops / total / peak
    );
    println!(
        "(sum of operations alone: {:.*} img/s)",
        decimals,
        images as f64 / total
    );
    total
}
