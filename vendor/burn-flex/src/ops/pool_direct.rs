//! pipe's patch: direct 2D max pooling without dilation and without a partial ceil-mode window:
//! every CNN's `MaxPool2d(k)` with the default stride, and padded poolings such as ResNet's
//! 3x3/2 with padding 1 (padding never wins, as upstream: each window's maximum is taken over
//! its positions inside the input, and padding smaller than the kernel leaves every window at
//! least one). Upstream runs all 2D pooling through its 3D implementation, which recomputes each
//! window's valid range per output element and always allocates argmax indices; here each
//! output row reads `kernel_h` input rows directly, and indices are written only when asked for.
//!
//! Results are identical to upstream's: the first maximum of a window wins, a NaN always wins
//! (so the last NaN is reported, as in PyTorch), and indices are flat offsets within the
//! `H x W` plane.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, Element, IntDType};
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// The pooling geometry when the direct path applies: `(out_h, out_w)`.
pub(crate) fn direct_output(
    in_hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Option<(usize, usize)> {
    if dilation != [1, 1] {
        return None;
    }
    let mut out = [0usize; 2];
    for d in 0..2 {
        let padded = in_hw[d] + 2 * padding[d];
        if kernel[d] == 0
            || stride[d] == 0
            || in_hw[d] == 0
            || padded < kernel[d]
            || padding[d] >= kernel[d]
        {
            return None;
        }
        let span = padded - kernel[d];
        // ceil mode adds a partial last window only when the stride does not divide the span
        out[d] = if ceil_mode && span % stride[d] != 0 {
            return None;
        } else {
            span / stride[d] + 1
        };
    }
    Some((out[0], out[1]))
}

/// An argmax index element: flex's default `i32` (what autodiff asks for) or `i64`.
pub(crate) trait PoolIndex: bytemuck::Pod + Send + Sync + Element {
    const DTYPE: DType;
    fn from_offset(offset: usize) -> Self;
}

impl PoolIndex for i64 {
    const DTYPE: DType = DType::I64;
    fn from_offset(offset: usize) -> Self {
        offset as i64
    }
}

impl PoolIndex for i32 {
    const DTYPE: DType = DType::I32;
    fn from_offset(offset: usize) -> Self {
        offset as i32
    }
}

/// Max pooling of a contiguous `[N, C, H, W]` tensor without indices. The caller has checked
/// the geometry with [`direct_output`].
pub(crate) fn max_pool2d<T>(
    x: FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    out_hw: (usize, usize),
    dtype: DType,
) -> FlexTensor
where
    T: bytemuck::Pod + Copy + PartialOrd + Send + Sync + Element + num_traits::Float,
{
    pool::<T, i64>(x, kernel, stride, padding, out_hw, dtype, false).0
}

/// Max pooling with argmax indices of element type `I` (offsets within each plane; an `i32`
/// index needs planes under 2^31 elements, which the caller checks).
pub(crate) fn max_pool2d_with_indices<T, I: PoolIndex>(
    x: FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    out_hw: (usize, usize),
    dtype: DType,
) -> (FlexTensor, FlexTensor)
where
    T: bytemuck::Pod + Copy + PartialOrd + Send + Sync + Element + num_traits::Float,
{
    let (out, idx) = pool::<T, I>(x, kernel, stride, padding, out_hw, dtype, true);
    (out, idx.expect("indices were asked for"))
}

fn pool<T, I: PoolIndex>(
    x: FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    out_hw: (usize, usize),
    dtype: DType,
    with_indices: bool,
) -> (FlexTensor, Option<FlexTensor>)
where
    T: bytemuck::Pod + Copy + PartialOrd + Send + Sync + Element + num_traits::Float,
{
    let x = x.to_contiguous();
    let shape = x.layout().shape();
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let (oh, ow) = out_hw;
    let planes = n * c;
    let plane_out = oh * ow;
    let data: &[T] = x.storage();
    let mut output: Vec<T> = vec![T::zero(); planes * plane_out];
    let mut indices: Vec<I> = if with_indices {
        vec![I::zeroed(); planes * plane_out]
    } else {
        Vec::new()
    };

    let pool_plane = |p: usize, out: &mut [T], idx: Option<&mut [I]>| {
        let src = &data[p * h * w..(p + 1) * h * w];
        if padding == [0, 0] {
            pool_plane(src, w, kernel, stride, (oh, ow), out, idx);
        } else {
            pool_plane_padded(src, (h, w), kernel, stride, padding, (oh, ow), out, idx);
        }
    };
    if plane_out > 0 {
        run_planes(&mut output, &mut indices, plane_out, pool_plane);
    }

    let out_shape = Shape::from(vec![n, c, oh, ow]);
    let out = FlexTensor::new(
        Bytes::from_elems(output),
        Layout::contiguous(out_shape.clone()),
        dtype,
    );
    let idx = with_indices.then(|| {
        FlexTensor::new(
            Bytes::from_elems(indices),
            Layout::contiguous(out_shape),
            I::DTYPE,
        )
    });
    (out, idx)
}

/// The direct path of `max_pool2d_with_indices` for f32/f64/f16 with i32 or i64 indices, or
/// `None` where upstream's path must run (other dtypes or geometries, i32 offsets that could
/// overflow).
pub(crate) fn try_with_indices(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
    indices_dtype: IntDType,
) -> Option<(FlexTensor, FlexTensor)> {
    let out_hw = super::pool::direct_geometry(x, kernel, stride, padding, dilation, ceil_mode)?;
    let shape = x.layout().shape();
    let plane = shape[2] * shape[3];
    let x = x.clone();
    let dtype = x.dtype();
    macro_rules! go {
        ($t:ty) => {
            match indices_dtype {
                IntDType::I64 => Some(max_pool2d_with_indices::<$t, i64>(
                    x, kernel, stride, padding, out_hw, dtype,
                )),
                IntDType::I32 if plane <= i32::MAX as usize => {
                    Some(max_pool2d_with_indices::<$t, i32>(
                        x, kernel, stride, padding, out_hw, dtype,
                    ))
                }
                _ => None,
            }
        };
    }
    match dtype {
        DType::F32 => go!(f32),
        DType::F64 => go!(f64),
        DType::F16 => go!(burn_std::f16),
        _ => None,
    }
}

/// Runs `f(plane, out, indices)` over every plane, in parallel with the `rayon` feature.
fn run_planes<T, I, F>(output: &mut [T], indices: &mut [I], plane_out: usize, f: F)
where
    T: Send,
    I: Send,
    F: Fn(usize, &mut [T], Option<&mut [I]>) + Sync,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        if output.len() >= 4096 {
            if indices.is_empty() {
                output
                    .par_chunks_mut(plane_out)
                    .enumerate()
                    .for_each(|(p, out)| f(p, out, None));
            } else {
                output
                    .par_chunks_mut(plane_out)
                    .zip(indices.par_chunks_mut(plane_out))
                    .enumerate()
                    .for_each(|(p, (out, idx))| f(p, out, Some(idx)));
            }
            return;
        }
    }
    if indices.is_empty() {
        for (p, out) in output.chunks_mut(plane_out).enumerate() {
            f(p, out, None);
        }
    } else {
        for (p, (out, idx)) in output
            .chunks_mut(plane_out)
            .zip(indices.chunks_mut(plane_out))
            .enumerate()
        {
            f(p, out, Some(idx));
        }
    }
}

/// One `H x W` plane (`src`, row length `w`) into one `oh x ow` plane.
fn pool_plane<T, I: PoolIndex>(
    src: &[T],
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    out_hw: (usize, usize),
    out: &mut [T],
    idx: Option<&mut [I]>,
) where
    T: Copy + PartialOrd + num_traits::Float,
{
    if kernel == [2, 2] && stride == [2, 2] {
        pool_plane_2x2(src, w, out_hw, out, idx);
    } else {
        pool_plane_any(src, w, kernel, stride, out_hw, out, idx);
    }
}

/// The common 2x2 window with stride 2: two input rows per output row, read as pairs.
fn pool_plane_2x2<T, I: PoolIndex>(
    src: &[T],
    w: usize,
    (oh, ow): (usize, usize),
    out: &mut [T],
    idx: Option<&mut [I]>,
) where
    T: Copy + PartialOrd + num_traits::Float,
{
    // the window's values in upstream's scan order; the first maximum wins, a NaN always wins
    #[inline(always)]
    fn pick<T: Copy + PartialOrd + num_traits::Float>(v: [T; 4]) -> (T, usize) {
        let (mut best, mut at) = (v[0], 0);
        for (k, &x) in v.iter().enumerate().skip(1) {
            if x > best || x.is_nan() {
                best = x;
                at = k;
            }
        }
        (best, at)
    }
    let rows = |r: usize| {
        let top = 2 * r * w;
        (&src[top..top + 2 * ow], &src[top + w..top + w + 2 * ow])
    };
    match idx {
        None => {
            for (r, o) in out.chunks_exact_mut(ow).take(oh).enumerate() {
                let (a, b) = rows(r);
                for ((o, a), b) in o.iter_mut().zip(a.chunks_exact(2)).zip(b.chunks_exact(2)) {
                    *o = pick([a[0], a[1], b[0], b[1]]).0;
                }
            }
        }
        Some(idx) => {
            for (r, (o, ix)) in out
                .chunks_exact_mut(ow)
                .zip(idx.chunks_exact_mut(ow))
                .take(oh)
                .enumerate()
            {
                let (a, b) = rows(r);
                let top = 2 * r * w;
                for (col, ((o, ix), (a, b))) in o
                    .iter_mut()
                    .zip(ix.iter_mut())
                    .zip(a.chunks_exact(2).zip(b.chunks_exact(2)))
                    .enumerate()
                {
                    let (best, k) = pick([a[0], a[1], b[0], b[1]]);
                    *o = best;
                    // k = 0, 1 on the top row, 2, 3 on the bottom row
                    *ix = I::from_offset(top + (k >> 1) * w + 2 * col + (k & 1));
                }
            }
        }
    }
}

/// Any kernel and stride (windows wholly inside the input).
fn pool_plane_any<T, I: PoolIndex>(
    src: &[T],
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    (oh, ow): (usize, usize),
    out: &mut [T],
    mut idx: Option<&mut [I]>,
) where
    T: Copy + PartialOrd + num_traits::Float,
{
    let [kh, kw] = kernel;
    let [sh, sw] = stride;
    for r in 0..oh {
        let top = r * sh;
        for col in 0..ow {
            let left = col * sw;
            let mut best = src[top * w + left];
            let mut at = top * w + left;
            for i in 0..kh {
                let row = (top + i) * w;
                for j in 0..kw {
                    let v = src[row + left + j];
                    if v > best || v.is_nan() {
                        best = v;
                        at = row + left + j;
                    }
                }
            }
            out[r * ow + col] = best;
            if let Some(idx) = idx.as_deref_mut() {
                idx[r * ow + col] = I::from_offset(at);
            }
        }
    }
}

/// Any kernel and stride with padding: each window's maximum over its positions inside the
/// input, scanned in upstream's order (the caller guarantees padding < kernel, so each window
/// has at least one).
#[allow(clippy::too_many_arguments)]
fn pool_plane_padded<T, I: PoolIndex>(
    src: &[T],
    (h, w): (usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    (oh, ow): (usize, usize),
    out: &mut [T],
    mut idx: Option<&mut [I]>,
) where
    T: Copy + PartialOrd + num_traits::Float,
{
    // the window's input positions along one axis, clipped to [0, len)
    let inside = |o: usize, axis: usize, len: usize| {
        let start = o * stride[axis];
        let lo = start.saturating_sub(padding[axis]);
        let hi = (start + kernel[axis] - padding[axis]).min(len);
        lo..hi
    };
    for r in 0..oh {
        let rows = inside(r, 0, h);
        for col in 0..ow {
            let cols = inside(col, 1, w);
            let mut at = rows.start * w + cols.start;
            let mut best = src[at];
            for y in rows.clone() {
                for x in cols.clone() {
                    let v = src[y * w + x];
                    if v > best || v.is_nan() {
                        best = v;
                        at = y * w + x;
                    }
                }
            }
            out[r * ow + col] = best;
            if let Some(idx) = idx.as_deref_mut() {
                idx[r * ow + col] = I::from_offset(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pool;

    fn tensor(shape: [usize; 4], values: Vec<f32>) -> FlexTensor {
        FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }

    fn values(seed: u32, len: usize) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                // a coarse grid of values, so windows hold ties
                ((s >> 24) % 7) as f32 - 3.0
            })
            .collect()
    }

    /// Upstream's 3D path (the reference) against the direct path, values and indices, on
    /// odd sizes, ties, NaNs, non-square kernels and strides, ceil mode that adds nothing.
    #[test]
    fn direct_matches_upstream() {
        let cases: &[([usize; 4], [usize; 2], [usize; 2], [usize; 2], bool)] = &[
            ([3, 4, 9, 11], [2, 2], [2, 2], [0, 0], false),
            ([2, 3, 8, 8], [2, 2], [2, 2], [0, 0], true),
            ([1, 2, 7, 10], [3, 2], [1, 2], [0, 0], false),
            ([2, 1, 6, 5], [3, 3], [3, 1], [0, 0], false),
            ([64, 16, 27, 27], [2, 2], [2, 2], [0, 0], false),
            ([3, 2, 5, 4], [2, 3], [2, 2], [0, 0], false),
            ([3, 2, 6, 6], [2, 2], [1, 1], [0, 0], false),
            // ResNet's stem pooling (3x3/2, padding 1) on even and odd sizes
            ([4, 8, 28, 28], [3, 3], [2, 2], [1, 1], false),
            ([2, 3, 9, 7], [3, 3], [2, 2], [1, 1], false),
            ([2, 3, 6, 9], [3, 2], [1, 2], [1, 0], false),
            ([1, 2, 5, 5], [3, 3], [2, 2], [1, 1], true),
        ];
        for (k, &(shape, kernel, stride, padding, ceil)) in cases.iter().enumerate() {
            let len = shape.iter().product();
            let mut v = values(k as u32 + 1, len);
            v[len / 3] = f32::NAN;
            v[len / 3 + 1] = f32::NAN;
            let x = tensor(shape, v.clone());
            let (ho, wo) =
                direct_output([shape[2], shape[3]], kernel, stride, padding, [1, 1], ceil)
                    .expect("direct geometry");
            let (out, idx) = max_pool2d_with_indices::<f32, i64>(
                x.clone(),
                kernel,
                stride,
                padding,
                (ho, wo),
                DType::F32,
            );
            let (_, idx32) = max_pool2d_with_indices::<f32, i32>(
                x.clone(),
                kernel,
                stride,
                padding,
                (ho, wo),
                DType::F32,
            );
            let x3 = FlexTensor::new(
                Bytes::from_elems(v),
                Layout::contiguous(Shape::from(vec![shape[0], shape[1], 1, shape[2], shape[3]])),
                DType::F32,
            );
            let (r_out, r_idx) = pool::max_pool3d_with_indices_f32(
                x3,
                [1, kernel[0], kernel[1]],
                [1, stride[0], stride[1]],
                [0, padding[0], padding[1]],
                [1, 1, 1],
                ceil,
            );
            let a: &[f32] = out.storage();
            let b: &[f32] = r_out.storage();
            assert_eq!(a.len(), b.len(), "case {k}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(x.to_bits() == y.to_bits(), "case {k} value {i}: {x} vs {y}");
            }
            let ia: &[i64] = idx.storage();
            let ib: &[i64] = r_idx.storage();
            assert_eq!(ia, ib, "case {k} indices");
            let i32s: &[i32] = idx32.storage();
            assert!(
                i32s.iter().zip(ia).all(|(&a, &b)| a as i64 == b),
                "case {k} i32 indices"
            );
            let plain = max_pool2d::<f32>(x, kernel, stride, padding, (ho, wo), DType::F32);
            let p: &[f32] = plain.storage();
            assert!(p.iter().zip(a).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn geometry_outside_the_direct_case_falls_back() {
        assert_eq!(
            direct_output([8, 8], [2, 2], [2, 2], [2, 0], [1, 1], false),
            None
        );
        assert_eq!(
            direct_output([8, 8], [2, 2], [2, 2], [1, 1], [1, 1], false),
            Some((5, 5))
        );
        assert_eq!(
            direct_output([8, 8], [2, 2], [2, 2], [0, 0], [2, 2], false),
            None
        );
        assert_eq!(
            direct_output([9, 9], [2, 2], [2, 2], [0, 0], [1, 1], true),
            None
        );
        assert_eq!(
            direct_output([1, 8], [2, 2], [2, 2], [0, 0], [1, 1], false),
            None
        );
        assert_eq!(
            direct_output([9, 9], [2, 2], [2, 2], [0, 0], [1, 1], false),
            Some((4, 4))
        );
    }
}
