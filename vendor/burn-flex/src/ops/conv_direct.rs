//! pipe's patch (see PATCH.md, change 9): the forward pass of a convolution with few input
//! values per output (`K = c_in·kh·kw ≤ 32`: a network's first layer on grey or RGB images),
//! stride 1, no padding, no dilation, one group, in f32 on a CPU with AVX2 and FMA, computed
//! directly instead of through im2col + gemm. With K that small the gemm loads and stores each
//! output tile for a few dozen multiply-adds and im2col writes K copies of the image first; here
//! each output row stays in registers while the K weighted input rows are added to it.
//!
//! Every output is the same sum, in the same order, as the gemm path computes it: the K
//! products fused-multiply-added in K order from zero (gemm's micro-kernel accumulates the
//! depth of one block in order, and K ≤ 32 is one block), then the bias added. So the bits do
//! not change (test `direct_matches_the_gemm_path_bit_for_bit`); only the time does.

use super::*;

/// Largest `c_in·kh·kw` the direct path takes.
const MAX_K: usize = 32;

/// Whether `g` takes the direct path on this CPU.
pub(super) fn applies(g: &Geom) -> bool {
    g.groups == 1
        && g.stride == [1, 1]
        && g.dil == [1, 1]
        && g.oh + g.kh == g.h + 1
        && g.ow + g.kw == g.w + 1
        && g.c_in * g.kh * g.kw <= MAX_K
        && cpu_has_fma()
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
pub(super) fn cpu_has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(not(all(target_arch = "x86_64", feature = "std")))]
pub(super) fn cpu_has_fma() -> bool {
    false
}

/// `out` (NCHW, `g.n` images) = conv(`x`, `w`) + `b`, images in parallel. Call only when
/// [`applies`].
pub(super) fn forward(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    let per_out = g.c_out * g.p();
    out.par_chunks_mut(per_out)
        .zip(x.par_chunks(g.image()))
        .for_each(|(y, xi)| image(g, xi, w, b, y));
}

fn image(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        assert!(cpu_has_fma(), "conv_direct: the caller checked `applies`");
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { image_fma(g, x, w, b, y) }
    }
    #[cfg(not(all(target_arch = "x86_64", feature = "std")))]
    {
        let _ = (g, x, w, b, y);
        unreachable!("conv_direct: `applies` is false off x86_64")
    }
}

/// One image. Each output row is computed in blocks of up to 8 vectors of 8 columns held in
/// registers while the K weighted input rows are fused-multiply-added to them; a row whose
/// width is not a multiple of 8 ends with a vector that overlaps the one before (its values are
/// computed again, identically).
#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn image_fma(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let k = g.c_in * g.kh * g.kw;
    let (oh, ow) = (g.oh, g.ow);
    assert!(x.len() >= g.image() && y.len() >= g.c_out * oh * ow && w.len() >= g.c_out * k);
    if ow < LANES {
        return image_scalar(g, x, w, b, y);
    }
    let starts: Vec<usize> = (0..ow.div_ceil(LANES))
        .map(|i| (i * LANES).min(ow - LANES))
        .collect();
    // Offsets in `x` of the K input rows' starts for output row 0, in K order.
    let taps: Vec<usize> = (0..g.c_in)
        .flat_map(|ci| (0..g.kh).flat_map(move |ky| (0..g.kw).map(move |kx| (ci, ky, kx))))
        .map(|(ci, ky, kx)| (ci * g.h + ky) * g.w + kx)
        .collect();
    for co in 0..g.c_out {
        let wc = &w[co * k..(co + 1) * k];
        let bias = b.map(|b| b[co]);
        for r in 0..oh {
            let out = y[(co * oh + r) * ow..].as_mut_ptr();
            let src = x[r * g.w..].as_ptr();
            for block in starts.chunks(8) {
                // SAFETY: every load reads `x[r·w + tap + c .. +8]` with `c + 8 ≤ ow` and
                // `tap` an input row start: inside the image (valid convolution); every store
                // writes `y[(co·oh + r)·ow + c .. +8]` inside the output row (asserted sizes).
                unsafe {
                    match block.len() {
                        1 => row_block::<1>(block, &taps, wc, bias, src, out),
                        2 => row_block::<2>(block, &taps, wc, bias, src, out),
                        3 => row_block::<3>(block, &taps, wc, bias, src, out),
                        4 => row_block::<4>(block, &taps, wc, bias, src, out),
                        5 => row_block::<5>(block, &taps, wc, bias, src, out),
                        6 => row_block::<6>(block, &taps, wc, bias, src, out),
                        7 => row_block::<7>(block, &taps, wc, bias, src, out),
                        _ => row_block::<8>(block, &taps, wc, bias, src, out),
                    }
                }
            }
        }
    }
}

/// f32 lanes of one AVX2 vector.
const LANES: usize = 8;

#[cfg(all(target_arch = "x86_64", feature = "std"))]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_block<const N: usize>(
    starts: &[usize],
    taps: &[usize],
    wc: &[f32],
    bias: Option<f32>,
    src: *const f32,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); N];
    for (&tap, &wv) in taps.iter().zip(wc) {
        let wv = _mm256_set1_ps(wv);
        for j in 0..N {
            // SAFETY: see the caller.
            let v = unsafe { _mm256_loadu_ps(src.add(tap + starts[j])) };
            acc[j] = _mm256_fmadd_ps(wv, v, acc[j]);
        }
    }
    if let Some(bias) = bias {
        let bv = _mm256_set1_ps(bias);
        for a in acc.iter_mut() {
            *a = _mm256_add_ps(*a, bv);
        }
    }
    for j in 0..N {
        // SAFETY: see the caller.
        unsafe { _mm256_storeu_ps(out.add(starts[j]), acc[j]) };
    }
}

/// Rows narrower than one vector: the same sums, one output at a time.
fn image_scalar(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let k = g.c_in * g.kh * g.kw;
    let (oh, ow) = (g.oh, g.ow);
    for co in 0..g.c_out {
        let wc = &w[co * k..(co + 1) * k];
        for r in 0..oh {
            for c in 0..ow {
                let mut acc = 0f32;
                let mut kk = 0;
                for ci in 0..g.c_in {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            acc = wc[kk].mul_add(x[(ci * g.h + r + ky) * g.w + c + kx], acc);
                            kk += 1;
                        }
                    }
                }
                if let Some(b) = b {
                    acc += b[co];
                }
                y[(co * oh + r) * ow + c] = acc;
            }
        }
    }
}
