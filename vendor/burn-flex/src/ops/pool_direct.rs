//! pipe's patch: direct 2D max pooling for windows that lie wholly inside the input (no padding,
//! no dilation, every window complete), the case of every CNN's `MaxPool2d(k)` with the default
//! stride. Upstream runs all 2D pooling through its 3D implementation, which recomputes each
//! window's valid range per output element and always allocates argmax indices; here each
//! output row reads `kernel_h` input rows directly, and indices are written only when asked for.
//!
//! Results are identical to upstream's: the first maximum of a window wins, a NaN always wins
//! (so the last NaN is reported, as in PyTorch), and indices are flat offsets within the
//! `H x W` plane.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::{DType, Element};
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
    if padding != [0, 0] || dilation != [1, 1] {
        return None;
    }
    let mut out = [0usize; 2];
    for d in 0..2 {
        if kernel[d] == 0 || stride[d] == 0 || in_hw[d] < kernel[d] {
            return None;
        }
        let span = in_hw[d] - kernel[d];
        // ceil mode adds a partial last window only when the stride does not divide the span
        out[d] = if ceil_mode && span % stride[d] != 0 {
            return None;
        } else {
            span / stride[d] + 1
        };
    }
    Some((out[0], out[1]))
}

/// Max pooling of a contiguous `[N, C, H, W]` tensor; `with_indices` also returns the i64 argmax
/// tensor. The caller has checked the geometry with [`direct_output`].
pub(crate) fn max_pool2d<T>(
    x: FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
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
    let mut indices: Vec<i64> = if with_indices {
        vec![0; planes * plane_out]
    } else {
        Vec::new()
    };

    let pool_plane = |p: usize, out: &mut [T], idx: Option<&mut [i64]>| {
        let src = &data[p * h * w..(p + 1) * h * w];
        pool_plane(src, w, kernel, stride, (oh, ow), out, idx);
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
            DType::I64,
        )
    });
    (out, idx)
}

/// Runs `f(plane, out, indices)` over every plane, in parallel with the `rayon` feature.
fn run_planes<T, F>(output: &mut [T], indices: &mut [i64], plane_out: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T], Option<&mut [i64]>) + Sync,
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
fn pool_plane<T>(
    src: &[T],
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    (oh, ow): (usize, usize),
    out: &mut [T],
    mut idx: Option<&mut [i64]>,
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
                idx[r * ow + col] = at as i64;
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
        let cases: &[([usize; 4], [usize; 2], [usize; 2], bool)] = &[
            ([3, 4, 9, 11], [2, 2], [2, 2], false),
            ([2, 3, 8, 8], [2, 2], [2, 2], true),
            ([1, 2, 7, 10], [3, 2], [1, 2], false),
            ([2, 1, 6, 5], [3, 3], [3, 1], false),
            ([64, 16, 27, 27], [2, 2], [2, 2], false),
        ];
        for (k, &(shape, kernel, stride, ceil)) in cases.iter().enumerate() {
            let len = shape.iter().product();
            let mut v = values(k as u32 + 1, len);
            v[len / 3] = f32::NAN;
            v[len / 3 + 1] = f32::NAN;
            let x = tensor(shape, v.clone());
            let (ho, wo) =
                direct_output([shape[2], shape[3]], kernel, stride, [0, 0], [1, 1], ceil)
                    .expect("direct geometry");
            let (out, idx) = max_pool2d::<f32>(x.clone(), kernel, stride, (ho, wo), DType::F32, true);
            let x3 = FlexTensor::new(
                Bytes::from_elems(v),
                Layout::contiguous(Shape::from(vec![shape[0], shape[1], 1, shape[2], shape[3]])),
                DType::F32,
            );
            let (r_out, r_idx) = pool::max_pool3d_with_indices_f32(
                x3,
                [1, kernel[0], kernel[1]],
                [1, stride[0], stride[1]],
                [0, 0, 0],
                [1, 1, 1],
                ceil,
            );
            let a: &[f32] = out.storage();
            let b: &[f32] = r_out.storage();
            assert_eq!(a.len(), b.len(), "case {k}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(x.to_bits() == y.to_bits(), "case {k} value {i}: {x} vs {y}");
            }
            let idx = idx.expect("indices were asked for");
            let ia: &[i64] = idx.storage();
            let ib: &[i64] = r_idx.storage();
            assert_eq!(ia, ib, "case {k} indices");
            let (plain, none) =
                max_pool2d::<f32>(x, kernel, stride, (ho, wo), DType::F32, false);
            assert!(none.is_none());
            let p: &[f32] = plain.storage();
            assert!(p.iter().zip(a).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn geometry_outside_the_direct_case_falls_back() {
        assert_eq!(direct_output([8, 8], [2, 2], [2, 2], [1, 1], [1, 1], false), None);
        assert_eq!(direct_output([8, 8], [2, 2], [2, 2], [0, 0], [2, 2], false), None);
        assert_eq!(direct_output([9, 9], [2, 2], [2, 2], [0, 0], [1, 1], true), None);
        assert_eq!(direct_output([1, 8], [2, 2], [2, 2], [0, 0], [1, 1], false), None);
        assert_eq!(direct_output([9, 9], [2, 2], [2, 2], [0, 0], [1, 1], false), Some((4, 4)));
    }
}
