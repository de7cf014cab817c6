//! Each pass against a direct (loop) definition of the convolution, on shapes with
//! padding, stride, dilation, 1x1 kernels and a batch smaller than the thread pool.
use super::*;

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    output(values, &shape)
}

fn values(t: &FlexTensor) -> &[f32] {
    data::<f32>(t)
}

fn seq(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
            (v % 1000) as f32 / 500.0 - 1.0
        })
        .collect()
}

/// y[b, co, oy, ox] = bias[co] + Σ x[b, ci, oy·s + ky·d − p, ox·s + kx·d − p] · w[co, ci, ky, kx]
fn reference(x: &[f32], w: &[f32], bias: &[f32], g: &Geom) -> Vec<f32> {
    let mut y = vec![0.0f32; g.n * g.c_out * g.p()];
    for b in 0..g.n {
        for co in 0..g.c_out {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = bias[co] as f64;
                    let cin_g = g.c_in / g.groups;
                    for ci in 0..cin_g {
                        let xc = co / g.cg() * cin_g + ci;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy =
                                    (oy * g.stride[0] + ky * g.dil[0]) as isize - g.pad[0] as isize;
                                let ix =
                                    (ox * g.stride[1] + kx * g.dil[1]) as isize - g.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                acc += (x
                                    [((b * g.c_in + xc) * g.h + iy as usize) * g.w + ix as usize]
                                    * w[((co * cin_g + ci) * g.kh + ky) * g.kw + kx])
                                    as f64;
                            }
                        }
                    }
                    y[((b * g.c_out + co) * g.oh + oy) * g.ow + ox] = acc as f32;
                }
            }
        }
    }
    y
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-3 * (1.0 + y.abs()),
            "index {i}: {x} vs {y}"
        );
    }
}

fn cases() -> Vec<([usize; 4], [usize; 4], ConvOptions<2>)> {
    vec![
        (
            [3, 3, 9, 8],
            [5, 3, 3, 3],
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            [2, 4, 8, 7],
            [6, 4, 3, 3],
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ),
        (
            [5, 3, 11, 10],
            [4, 3, 7, 7],
            ConvOptions::new([2, 2], [3, 3], [1, 1], 1),
        ),
        (
            [1, 6, 6, 6],
            [3, 6, 1, 1],
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            [2, 6, 7, 7],
            [3, 6, 1, 1],
            ConvOptions::new([2, 2], [0, 0], [1, 1], 1),
        ),
        (
            [20, 2, 7, 9],
            [3, 2, 3, 2],
            ConvOptions::new([1, 2], [2, 1], [2, 1], 1),
        ),
        (
            [3, 4, 6, 5],
            [6, 2, 3, 3],
            ConvOptions::new([1, 1], [1, 1], [1, 1], 2),
        ),
        (
            [2, 3, 8, 8],
            [4, 3, 3, 3],
            ConvOptions::new_with_padding([2, 1], [(0, 1), (2, 1)], [1, 1], 1),
        ),
    ]
}

#[test]
fn forward_matches_direct_definition() {
    for (xs, ws, opt) in cases() {
        let g = Geom::new(&Shape::from(xs.to_vec()), &Shape::from(ws.to_vec()), &opt);
        let (x, w, b) = (
            seq(xs.iter().product(), 1),
            seq(ws.iter().product(), 2),
            seq(ws[0], 3),
        );
        let got = conv2d(
            tensor(x.clone(), xs),
            tensor(w.clone(), ws),
            Some(output(b.clone(), &[ws[0]])),
            &opt,
        );
        assert_eq!(
            got.layout().shape().to_vec(),
            vec![g.n, g.c_out, g.oh, g.ow]
        );
        close(values(&got), &reference(&x, &w, &b, &g));
    }
}

/// Small output maps (several images per gemm, [`conv2d_small_maps`]): against the
/// definition, with batches that leave a partial last chunk, and the same bits on 1 and 3
/// threads.
#[test]
fn small_maps_match_definition_on_any_thread_count() {
    let cases = [
        (
            [37, 16, 4, 4],
            [24, 16, 3, 3],
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        ),
        (
            [9, 8, 2, 2],
            [12, 8, 1, 1],
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            [5, 8, 4, 4],
            [12, 8, 1, 1],
            ConvOptions::new([2, 2], [0, 0], [1, 1], 1),
        ),
    ];
    for (xs, ws, opt) in cases {
        let g = Geom::new(&Shape::from(xs.to_vec()), &Shape::from(ws.to_vec()), &opt);
        assert!(g.p() <= SMALL_MAP);
        let (x, w, b) = (
            seq(xs.iter().product(), 4),
            seq(ws.iter().product(), 5),
            seq(ws[0], 6),
        );
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                conv2d(
                    tensor(x.clone(), xs),
                    tensor(w.clone(), ws),
                    Some(output(b.clone(), &[ws[0]])),
                    &opt,
                )
            })
        };
        let (one, three) = (on(1), on(3));
        close(values(&one), &reference(&x, &w, &b, &g));
        let bits = |t: &FlexTensor| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one), bits(&three));
    }
}

/// The direct path of the first layers (`conv_direct.rs`) computes the gemm path's bits:
/// RGB and grey inputs, with and without bias, on this CPU (where it has AVX2 and FMA; the
/// test says which path it compared).
#[test]
fn direct_matches_the_gemm_path_bit_for_bit() {
    let opt = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
    // rows of 54 (7 vectors, the last overlapping), 73 (two blocks), 5 (narrower than a
    // vector), 8 (exactly one)
    let cases: [([usize; 4], [usize; 4]); 5] = [
        ([5, 3, 56, 56], [16, 3, 3, 3]),
        ([2, 1, 80, 75], [4, 1, 3, 3]),
        ([2, 1, 10, 9], [4, 1, 5, 5]),
        ([3, 2, 7, 8], [6, 2, 4, 4]),
        ([2, 3, 10, 10], [5, 3, 3, 3]),
    ];
    for (xs, ws) in cases {
        let g = Geom::new(&Shape::from(xs.to_vec()), &Shape::from(ws.to_vec()), &opt);
        assert_eq!(direct::applies(&g), direct::cpu_has_fma(), "{xs:?} {ws:?}");
        eprintln!(
            "{xs:?} * {ws:?}: direct path taken: {}",
            direct::applies(&g)
        );
        let (x, w, b) = (
            seq(xs.iter().product(), 4),
            seq(ws.iter().product(), 5),
            seq(ws[0], 6),
        );
        for bias in [true, false] {
            let bt = bias.then(|| output(b.clone(), &[ws[0]]));
            let got = conv2d(
                tensor(x.clone(), xs),
                tensor(w.clone(), ws),
                bt.clone(),
                &opt,
            );
            let gemm = conv2d_typed::<f32>(
                &tensor(x.clone(), xs),
                &tensor(w.clone(), ws),
                bt.as_ref(),
                &opt,
            );
            let bits = |t: &FlexTensor| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&gemm), "{xs:?} * {ws:?}, bias {bias}");
            let zero = vec![0.0f32; ws[0]];
            close(
                values(&got),
                &reference(&x, &w, if bias { &b } else { &zero }, &g),
            );
        }
    }
}

/// An image's output of the small-map path is the same bits alone, first or last in a
/// batch, in a full chunk or a padded one.
#[test]
fn small_maps_do_not_depend_on_the_batch() {
    let ws = [24, 16, 3, 3];
    let opt = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let (n, image) = (11, 16 * 4 * 4);
    let x = seq(n * image, 4);
    let (w, b) = (seq(ws.iter().product(), 5), seq(ws[0], 6));
    let run = |images: std::ops::Range<usize>| {
        let xs = [images.len(), 16, 4, 4];
        let y = conv2d(
            tensor(x[images.start * image..images.end * image].to_vec(), xs),
            tensor(w.clone(), ws),
            Some(output(b.clone(), &[ws[0]])),
            &opt,
        );
        values(&y).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let all = run(0..n);
    let per = all.len() / n;
    for (start, len) in [(0, 1), (10, 1), (3, 5), (2, 9), (1, 8)] {
        let part = run(start..start + len);
        assert_eq!(
            part,
            all[start * per..(start + len) * per],
            "images {start}..+{len}"
        );
    }
}

/// The gradients are the adjoints of the forward map: ⟨conv(x, W), dy⟩ differentiated by
/// finite structure — checked as ⟨dx, e⟩ = ⟨conv(e, W), dy⟩ and ⟨dW, e⟩ = ⟨conv(x, e), dy⟩
/// for random directions `e` (exact for a linear map, up to rounding).
#[test]
fn backward_passes_are_adjoint_to_forward() {
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum::<f64>()
    };
    for (xs, ws, opt) in cases() {
        let g = Geom::new(&Shape::from(xs.to_vec()), &Shape::from(ws.to_vec()), &opt);
        let (x, w) = (seq(xs.iter().product(), 4), seq(ws.iter().product(), 5));
        let dy = seq(g.n * g.c_out * g.p(), 6);
        let zero = vec![0.0f32; g.c_out];
        let ex = seq(x.len(), 7);
        let ew = seq(w.len(), 8);
        let os = [g.n, g.c_out, g.oh, g.ow];
        let dx = conv2d_x_backward(
            tensor(x.clone(), xs),
            tensor(w.clone(), ws),
            tensor(dy.clone(), os),
            &opt,
        );
        let dw = conv2d_weight_backward(
            tensor(x.clone(), xs),
            tensor(w.clone(), ws),
            tensor(dy.clone(), os),
            &opt,
        );
        let lhs_x = dot(values(&dx), &ex);
        let rhs_x = dot(&reference(&ex, &w, &zero, &g), &dy);
        assert!(
            (lhs_x - rhs_x).abs() < 1e-3 * (1.0 + rhs_x.abs()),
            "dx {xs:?}: {lhs_x} vs {rhs_x}"
        );
        let lhs_w = dot(values(&dw), &ew);
        let rhs_w = dot(&reference(&x, &ew, &zero, &g), &dy);
        assert!(
            (lhs_w - rhs_w).abs() < 1e-3 * (1.0 + rhs_w.abs()),
            "dW {xs:?}: {lhs_w} vs {rhs_w}"
        );
        let db = conv2d_bias_backward(tensor(dy.clone(), os));
        for co in 0..g.c_out {
            let want: f64 = (0..g.n)
                .flat_map(|b| dy[(b * g.c_out + co) * g.p()..(b * g.c_out + co + 1) * g.p()].iter())
                .map(|v| *v as f64)
                .sum();
            assert!((values(&db)[co] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()));
        }
    }
}

#[test]
fn weight_gradient_is_reproducible() {
    let (xs, ws, opt) = cases().remove(5);
    let g = Geom::new(&Shape::from(xs.to_vec()), &Shape::from(ws.to_vec()), &opt);
    let os = [g.n, g.c_out, g.oh, g.ow];
    let run = || {
        let dw = conv2d_weight_backward(
            tensor(seq(xs.iter().product(), 1), xs),
            tensor(seq(ws.iter().product(), 2), ws),
            tensor(seq(g.n * g.c_out * g.p(), 3), os),
            &opt,
        );
        values(&dw).to_vec()
    };
    let first = run();
    for _ in 0..5 {
        assert_eq!(run(), first);
    }
}
