//! Times 2D max pooling (2x2, stride 2) on B3's activation shapes, with and without indices:
//! `cargo run --release --example pool_speed` (pipe's patch, PATCH.md).
use burn_backend::ops::ModuleOps;
use burn_backend::{DType, IntDType};
use burn_flex::{Flex, FlexTensor, Layout};
use burn_std::{Bytes, Shape};
use std::time::Instant;

fn tensor(shape: [usize; 4]) -> FlexTensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 - 500.0).collect();
    FlexTensor::new(
        Bytes::from_elems(v),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

fn time(f: impl Fn()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..7)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[3]
}

fn main() {
    for (n, c, s) in [
        (32, 16, 54),
        (124, 16, 54),
        (124, 64, 25),
        (124, 128, 10),
        (256, 16, 54),
        (256, 64, 25),
    ] {
        let x = tensor([n, c, s, s]);
        let with = time(|| {
            let _ = Flex::max_pool2d_with_indices(
                x.clone(),
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
                IntDType::I64,
            );
        });
        let with32 = time(|| {
            let _ = Flex::max_pool2d_with_indices(
                x.clone(),
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
                IntDType::I32,
            );
        });
        let without = time(|| {
            let _ = Flex::max_pool2d(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false);
        });
        println!(
            "[{n}, {c}, {s}, {s}]: with i64 indices {with:.2} ms, i32 {with32:.2} ms, without {without:.2} ms"
        );
    }
}
