//! pipe's patch (see PATCH.md): 2D convolutions (f32, f64, f16; bf16 through f32) as
//! per-image im2col + gemm on NCHW data, for the forward pass and all three backward passes.
//!
//! Why: upstream's forward converts every input to NHWC and its result back, and the backward
//! passes fall back to burn-backend's generic ones (a transposed convolution for the input
//! gradient; for the weight gradient a convolution of the batch-swapped input with the
//! batch-swapped output gradient as kernel), which copy whole tensors through transposes and
//! run badly shaped gemms. Here every pass works on one image at a time in NCHW:
//!
//! - `col[K, P]` (K = c_in·kh·kw, P = oh·ow) is built by row copies (stride 1) from the image;
//!   with groups, group `g`'s rows of `col`, of `W` and of the output are contiguous blocks;
//! - forward: `y[c_out, P] = W[c_out, K] · col + bias`, written in place in the NCHW output;
//! - input gradient: `dcol = Wᵀ · dy`, then scatter-added back into the image (col2im);
//! - weight gradient: `dW = Σ dy · colᵀ` over the batch, summed in a fixed partition of the
//!   batch (independent of thread count and scheduling), so results are reproducible bit for bit;
//! - bias gradient: per-channel sums in a fixed order.
//!
//! Images run in parallel on rayon; each gemm is single-threaded (one image is too small to
//! split), except when the batch is smaller than the thread pool.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::ConvOptions;
use burn_backend::{DType, Element};
use burn_std::{Bytes, Shape, bf16, f16};
use core::ops::Add;
use rayon::prelude::*;

use crate::{FlexTensor, Layout};

#[path = "conv_direct.rs"]
mod direct;

/// Number of batch slices whose weight-gradient partial sums are added in order.
const WGRAD_SLICES: usize = 16;

/// Element types gemm multiplies natively.
trait Scalar: Element + bytemuck::Pod + Add<Output = Self> + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
}

impl Scalar for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Scalar for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
}

impl Scalar for f16 {
    const ZERO: Self = f16::ZERO;
    const ONE: Self = f16::ONE;
}

/// Whether this module handles a convolution with these operands (4-D, float, same dtype).
pub(crate) fn applies(x: &FlexTensor, weight: &FlexTensor) -> bool {
    matches!(
        x.dtype(),
        DType::F32 | DType::F64 | DType::F16 | DType::BF16
    ) && x.dtype() == weight.dtype()
        && x.layout().shape().num_dims() == 4
        && weight.layout().shape().num_dims() == 4
}

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &Shape, w: &Shape, options: &ConvOptions<2>) -> Self {
        let out = |axis: usize, k: usize| {
            let (begin, end) = options.padding[axis];
            let span = options.dilation[axis] * (k - 1) + 1;
            (x[2 + axis] + begin + end).saturating_sub(span) / options.stride[axis] + 1
        };
        let (kh, kw) = (w[2], w[3]);
        Self {
            n: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: w[0],
            groups: options.groups,
            kh,
            kw,
            stride: options.stride,
            pad: options.padding_begin(),
            dil: options.dilation,
            oh: out(0, kh),
            ow: out(1, kw),
        }
    }

    /// Rows of `col` per group: (c_in / groups) · kh · kw.
    fn kg(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Output channels per group.
    fn cg(&self) -> usize {
        self.c_out / self.groups
    }

    /// Output positions per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    /// 1x1, stride 1, no padding: `col` is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && (self.oh, self.ow) == (self.h, self.w)
    }

    fn col_len(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.groups * self.kg() * self.p()
        }
    }

    /// The output positions `o` of one axis whose input index `o·s + k·d − pad` is inside
    /// `[0, len)`, as a half-open range, and that index at `o = 0` (possibly negative).
    fn valid(
        out: usize,
        len: usize,
        s: usize,
        k: usize,
        d: usize,
        pad: usize,
    ) -> (usize, usize, isize) {
        let off = (k * d) as isize - pad as isize;
        let s_i = s as isize;
        let lo = if off >= 0 {
            0
        } else {
            ((-off) + s_i - 1) / s_i
        } as usize;
        let hi = if (len as isize) <= off {
            0
        } else {
            (((len as isize - off) + s_i - 1) / s_i) as usize
        };
        let lo = lo.min(out);
        (lo, hi.min(out).max(lo), off)
    }
}

fn data<T: Scalar>(t: &FlexTensor) -> &[T] {
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("conv_gemm: tensor made contiguous");
    &t.storage::<T>()[start..end]
}

fn output<T: Scalar>(values: Vec<T>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        T::dtype(),
    )
}

/// Fills `col` (`[K, P]`) from one NCHW image.
fn im2col<T: Scalar>(img: &[T], col: &mut [T], g: &Geom) {
    im2col_strided(img, col, g.p(), g);
}

/// [`im2col`] into rows `ld` apart: row `r` of the image's `[K, P]` block is
/// `col[r·ld .. r·ld + P]` (`ld = P` for one image alone).
fn im2col_strided<T: Scalar>(img: &[T], col: &mut [T], ld: usize, g: &Geom) {
    let p = g.p();
    let mut row = 0;
    for c in 0..g.c_in {
        let plane = &img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (ylo, yhi, yoff) = Geom::valid(g.oh, g.h, g.stride[0], ky, g.dil[0], g.pad[0]);
            for kx in 0..g.kw {
                let (xlo, xhi, xoff) = Geom::valid(g.ow, g.w, g.stride[1], kx, g.dil[1], g.pad[1]);
                let dst = &mut col[row * ld..row * ld + p];
                row += 1;
                for oy in 0..g.oh {
                    let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    if oy < ylo || oy >= yhi || xlo >= xhi {
                        d.fill(T::ZERO);
                        continue;
                    }
                    let iy = ((oy * g.stride[0]) as isize + yoff) as usize;
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    d[..xlo].fill(T::ZERO);
                    d[xhi..].fill(T::ZERO);
                    if g.stride[1] == 1 {
                        let ix0 = (xlo as isize + xoff) as usize;
                        d[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                    } else {
                        for (ox, v) in d.iter_mut().enumerate().take(xhi).skip(xlo) {
                            *v = src[((ox * g.stride[1]) as isize + xoff) as usize];
                        }
                    }
                }
            }
        }
    }
}

/// Adds `col` (`[K, P]`) back into one NCHW image gradient (the adjoint of [`im2col`]).
fn col2im<T: Scalar>(col: &[T], img: &mut [T], g: &Geom) {
    let p = g.p();
    let mut row = 0;
    for c in 0..g.c_in {
        let plane = &mut img[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (ylo, yhi, yoff) = Geom::valid(g.oh, g.h, g.stride[0], ky, g.dil[0], g.pad[0]);
            for kx in 0..g.kw {
                let (xlo, xhi, xoff) = Geom::valid(g.ow, g.w, g.stride[1], kx, g.dil[1], g.pad[1]);
                let src = &col[row * p..(row + 1) * p];
                row += 1;
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let s = &src[oy * g.ow..(oy + 1) * g.ow];
                    let iy = ((oy * g.stride[0]) as isize + yoff) as usize;
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if g.stride[1] == 1 {
                        let ix0 = (xlo as isize + xoff) as usize;
                        let d = &mut dst[ix0..ix0 + (xhi - xlo)];
                        for (a, b) in d.iter_mut().zip(&s[xlo..xhi]) {
                            *a = *a + *b;
                        }
                    } else {
                        for ox in xlo..xhi {
                            let i = ((ox * g.stride[1]) as isize + xoff) as usize;
                            dst[i] = dst[i] + s[ox];
                        }
                    }
                }
            }
        }
    }
}

/// A row-major-or-transposed matrix operand: its data and (row stride, column stride).
struct Mat<'a, T> {
    data: &'a [T],
    rs: usize,
    cs: usize,
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst` row-major.
fn gemm<T: Scalar>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<'_, T>,
    rhs: Mat<'_, T>,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    assert!(dst.len() >= m * n);
    assert!(lhs.data.len() > (m - 1) * lhs.rs + (k - 1) * lhs.cs);
    assert!(rhs.data.len() > (k - 1) * rhs.rs + (n - 1) * rhs.cs);
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertions above keep every index the strides reach inside the slices, and
    // `dst` (a unique borrow) cannot alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// Whether a batch this small should parallelise inside gemm rather than across images.
fn gemm_parallel(n: usize) -> bool {
    n < rayon::current_num_threads()
}

/// Runs `f` on f32 copies of bf16 operands (gemm has no bf16 kernel) and casts the result
/// back; calls `f` directly for the other types.
fn via_f32_for_bf16(
    tensors: Vec<FlexTensor>,
    f: impl FnOnce(Vec<FlexTensor>) -> FlexTensor,
) -> FlexTensor {
    if tensors.first().is_some_and(|t| t.dtype() == DType::BF16) {
        let up = tensors
            .into_iter()
            .map(|t| super::module::cast_to_f32(t, bf16::to_f32))
            .collect();
        super::module::cast_from_f32(f(up), bf16::from_f32)
    } else {
        f(tensors
            .into_iter()
            .map(FlexTensor::into_contiguous)
            .collect())
    }
}

macro_rules! by_dtype {
    ($f:ident, $dtype:expr, $($arg:expr),*) => {
        match $dtype {
            DType::F64 => $f::<f64>($($arg),*),
            DType::F16 => $f::<f16>($($arg),*),
            _ => $f::<f32>($($arg),*),
        }
    };
}

/// Forward: `y = conv(x, W) + b`, NCHW.
pub(crate) fn conv2d(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let has_bias = bias.is_some();
    let tensors = [Some(x), Some(weight), bias]
        .into_iter()
        .flatten()
        .collect();
    via_f32_for_bf16(tensors, |t| {
        let b = has_bias.then(|| &t[2]);
        if t[0].dtype() == DType::F32 {
            let g = Geom::new(t[0].layout().shape(), t[1].layout().shape(), options);
            if direct::applies(&g) {
                let mut out = vec![0f32; g.n * g.c_out * g.p()];
                direct::forward(&g, data(&t[0]), data(&t[1]), b.map(data), &mut out);
                return output(out, &[g.n, g.c_out, g.oh, g.ow]);
            }
        }
        by_dtype!(conv2d_typed, t[0].dtype(), &t[0], &t[1], b, options)
    })
}

fn conv2d_typed<T: Scalar>(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geom::new(x.layout().shape(), weight.layout().shape(), options);
    let (xd, wd) = (data::<T>(x), data::<T>(weight));
    let bd = bias.map(data::<T>);
    let (kg, cg, p) = (g.kg(), g.cg(), g.p());
    let shape = [g.n, g.c_out, g.oh, g.ow];
    let mut out = vec![T::ZERO; g.n * g.c_out * p];
    if out.is_empty() {
        return output(out, &shape);
    }
    if g.groups == 1 && p <= SMALL_MAP {
        conv2d_small_maps(&g, xd, wd, bd, &mut out);
        return output(out, &shape);
    }
    let par = gemm_parallel(g.n);
    let run = |col: &mut Vec<T>, (img, y): (usize, &mut [T])| {
        if let Some(b) = bd {
            for (row, &v) in y.chunks_exact_mut(p).zip(b) {
                row.fill(v);
            }
        }
        let xi = &xd[img * g.image()..(img + 1) * g.image()];
        let src: &[T] = if g.is_pointwise() {
            xi
        } else {
            im2col(xi, col, &g);
            col
        };
        for gi in 0..g.groups {
            gemm(
                (cg, p, kg),
                &mut y[gi * cg * p..(gi + 1) * cg * p],
                bd.is_some(),
                Mat {
                    data: &wd[gi * cg * kg..],
                    rs: kg,
                    cs: 1,
                },
                Mat {
                    data: &src[gi * kg * p..],
                    rs: p,
                    cs: 1,
                },
                par,
            );
        }
    };
    out.par_chunks_mut(g.c_out * p)
        .enumerate()
        .for_each_init(|| vec![T::ZERO; g.col_len()], run);
    output(out, &shape)
}

/// Output maps of at most this many pixels run several images per gemm (see
/// [`conv2d_small_maps`]).
const SMALL_MAP: usize = 64;
/// Gemm columns (images x pixels) a small-map chunk aims for.
const SMALL_MAP_COLUMNS: usize = 128;

/// Forward pass for small output maps (ResNet's 7x7, 4x4 and 2x2 stages at 56x56 input): one
/// gemm per image would pack the whole weight matrix to multiply it by a handful of columns,
/// so chunks of images share one `col[K, images x P]` and one gemm `W · col`, whose
/// `[c_out, images x P]` result is then copied into the NCHW output. The chunk size depends on
/// the map size only, and a last chunk with fewer images (or a batch smaller than a chunk) is
/// padded with zero columns, so every gemm of a layer has the same shape: an image's output is
/// the same bits whatever batch it runs in and wherever it sits there (a gemm's sum for one
/// column does not depend on the other columns, but its blocking depends on their number).
/// It never depends on the thread count either (chunks run in parallel; a gemm splits over
/// threads only by output tiles, which leaves every sum's order unchanged).
fn conv2d_small_maps<T: Scalar>(g: &Geom, xd: &[T], wd: &[T], bd: Option<&[T]>, out: &mut [T]) {
    let (k, p) = (g.kg(), g.p());
    let per_chunk = SMALL_MAP_COLUMNS.div_ceil(p);
    let cols = per_chunk * p;
    let par = g.n.div_ceil(per_chunk) < rayon::current_num_threads();
    let run = |(col, y): &mut (Vec<T>, Vec<T>), (chunk, o): (usize, &mut [T])| {
        let images = o.len() / (g.c_out * p);
        col.resize(k * cols, T::ZERO);
        y.resize(g.c_out * cols, T::ZERO);
        if images < per_chunk {
            for row in col.chunks_exact_mut(cols) {
                row[images * p..].fill(T::ZERO);
            }
        }
        for i in 0..images {
            let img = chunk * per_chunk + i;
            let xi = &xd[img * g.image()..(img + 1) * g.image()];
            if g.is_pointwise() {
                for (r, src) in xi.chunks_exact(p).enumerate() {
                    col[r * cols + i * p..r * cols + (i + 1) * p].copy_from_slice(src);
                }
            } else {
                im2col_strided(xi, &mut col[i * p..], cols, g);
            }
        }
        if let Some(b) = bd {
            for (row, &v) in y.chunks_exact_mut(cols).zip(b) {
                row.fill(v);
            }
        }
        gemm(
            (g.c_out, cols, k),
            y,
            bd.is_some(),
            Mat {
                data: wd,
                rs: k,
                cs: 1,
            },
            Mat {
                data: col,
                rs: cols,
                cs: 1,
            },
            par,
        );
        for (i, oi) in o.chunks_exact_mut(g.c_out * p).enumerate() {
            for (co, dst) in oi.chunks_exact_mut(p).enumerate() {
                dst.copy_from_slice(&y[co * cols + i * p..co * cols + (i + 1) * p]);
            }
        }
    };
    out.par_chunks_mut(per_chunk * g.c_out * p)
        .enumerate()
        .for_each_init(|| (Vec::new(), Vec::new()), run);
}

/// Input gradient: `dx = col2im(Wᵀ · dy)` per image.
pub(crate) fn conv2d_x_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let x_shape = x.layout().shape().clone();
    drop(x);
    via_f32_for_bf16(vec![weight, output_grad], |t| {
        by_dtype!(
            x_backward_typed,
            t[0].dtype(),
            &x_shape,
            &t[0],
            &t[1],
            options
        )
    })
}

fn x_backward_typed<T: Scalar>(
    x_shape: &Shape,
    weight: &FlexTensor,
    dy: &FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geom::new(x_shape, weight.layout().shape(), options);
    let (wd, dyd) = (data::<T>(weight), data::<T>(dy));
    let (kg, cg, p) = (g.kg(), g.cg(), g.p());
    let shape = [g.n, g.c_in, g.h, g.w];
    let mut dx = vec![T::ZERO; g.n * g.image()];
    if dx.is_empty() || p == 0 {
        return output(dx, &shape);
    }
    let par = gemm_parallel(g.n);
    let run = |col: &mut Vec<T>, (img, dxi): (usize, &mut [T])| {
        let dyi = &dyd[img * g.c_out * p..(img + 1) * g.c_out * p];
        let target: &mut [T] = if g.is_pointwise() { dxi } else { col };
        for gi in 0..g.groups {
            // W_gᵀ: element (kk, co) of the [Kg, cg] matrix is W[gi·cg + co, kk].
            gemm(
                (kg, p, cg),
                &mut target[gi * kg * p..(gi + 1) * kg * p],
                false,
                Mat {
                    data: &wd[gi * cg * kg..],
                    rs: 1,
                    cs: kg,
                },
                Mat {
                    data: &dyi[gi * cg * p..],
                    rs: p,
                    cs: 1,
                },
                par,
            );
        }
        if !g.is_pointwise() {
            col2im(col, dxi, &g);
        }
    };
    dx.par_chunks_mut(g.image())
        .enumerate()
        .for_each_init(|| vec![T::ZERO; g.col_len()], run);
    output(dx, &shape)
}

/// Weight gradient: `dW = Σ_images dy · colᵀ`, summed per fixed batch slice, then the slices'
/// partial sums in slice order.
pub(crate) fn conv2d_weight_backward(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let w_shape = weight.layout().shape().clone();
    drop(weight);
    via_f32_for_bf16(vec![x, output_grad], |t| {
        by_dtype!(
            weight_backward_typed,
            t[0].dtype(),
            &t[0],
            &w_shape,
            &t[1],
            options
        )
    })
}

fn weight_backward_typed<T: Scalar>(
    x: &FlexTensor,
    w_shape: &Shape,
    dy: &FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geom::new(x.layout().shape(), w_shape, options);
    let (xd, dyd) = (data::<T>(x), data::<T>(dy));
    let (kg, cg, p) = (g.kg(), g.cg(), g.p());
    let shape = [w_shape[0], w_shape[1], w_shape[2], w_shape[3]];
    if g.n == 0 || p == 0 || kg == 0 || g.c_out == 0 {
        return output(vec![T::ZERO; g.c_out * kg], &shape);
    }
    let slices = g.n.min(WGRAD_SLICES);
    let partials: Vec<Vec<T>> = (0..slices)
        .into_par_iter()
        .map(|s| {
            let (from, to) = (s * g.n / slices, (s + 1) * g.n / slices);
            let mut acc = vec![T::ZERO; g.c_out * kg];
            let mut col = vec![T::ZERO; g.col_len()];
            for img in from..to {
                let xi = &xd[img * g.image()..(img + 1) * g.image()];
                let dyi = &dyd[img * g.c_out * p..(img + 1) * g.c_out * p];
                let src: &[T] = if g.is_pointwise() {
                    xi
                } else {
                    im2col(xi, &mut col, &g);
                    &col
                };
                for gi in 0..g.groups {
                    // col_gᵀ: element (pp, kk) of the [P, Kg] matrix is col[gi·Kg + kk, pp].
                    gemm(
                        (cg, kg, p),
                        &mut acc[gi * cg * kg..(gi + 1) * cg * kg],
                        img > from,
                        Mat {
                            data: &dyi[gi * cg * p..],
                            rs: p,
                            cs: 1,
                        },
                        Mat {
                            data: &src[gi * kg * p..],
                            rs: 1,
                            cs: p,
                        },
                        false,
                    );
                }
            }
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (a, b) in total.iter_mut().zip(&part) {
            *a = *a + *b;
        }
    }
    output(total, &shape)
}

/// Bias gradient: per output channel, the sum of `dy` over images and positions, in a fixed
/// order (eight running lanes per row, rows in image order).
pub(crate) fn conv2d_bias_backward(output_grad: FlexTensor) -> FlexTensor {
    via_f32_for_bf16(vec![output_grad], |t| {
        by_dtype!(bias_backward_typed, t[0].dtype(), &t[0])
    })
}

fn bias_backward_typed<T: Scalar>(dy: &FlexTensor) -> FlexTensor {
    let dims = dy.layout().shape().clone();
    let (n, c) = (dims[0], dims[1]);
    let p: usize = (2..dims.num_dims()).map(|d| dims[d]).product();
    let dyd = data::<T>(dy);
    let sums: Vec<T> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut lanes = [T::ZERO; 8];
            let mut tail = T::ZERO;
            for img in 0..n {
                let row = &dyd[(img * c + ch) * p..(img * c + ch + 1) * p];
                let chunks = row.chunks_exact(8);
                for &v in chunks.remainder() {
                    tail = tail + v;
                }
                for chunk in chunks {
                    for (l, v) in lanes.iter_mut().zip(chunk) {
                        *l = *l + *v;
                    }
                }
            }
            lanes.iter().fold(tail, |a, &b| a + b)
        })
        .collect();
    output(sums, &[c])
}

#[cfg(test)]
#[path = "conv_gemm_tests.rs"]
mod tests;
