//! GPU-path parity (issue 19): pipe's B1 and B3 networks and one ResNet-50 bottleneck block
//! compute the same forward outputs and parameter gradients on a GPU device as on the CPU
//! backend (burn-flex), on fixed inputs. Each model is built once on the CPU (seeded), forked to
//! the GPU with the same weights, run forward on the same input, and a loss is backpropagated on
//! both devices; every output and every parameter gradient is then compared.
//!
//! Error measure of a tensor: `max |gpu - cpu| / max |cpu|` (the largest difference relative to
//! the tensor's scale; element-wise ratios are meaningless near zero). A tensor passes when that
//! is at most the tolerance (default 1e-4). A gradient whose exact value is zero is measured
//! against the model's gradients instead: the bias of a convolution followed by a batch norm in
//! training mode (the norm subtracts each channel's batch mean, so the bias changes nothing)
//! comes out as rounding noise (~1e-10) on both devices, and noise over noise is no measure.
//! Such a gradient (its CPU scale below `ZERO_GRADIENT` times the largest gradient scale of its
//! model) is marked `zero` and its difference divided by that largest scale.
//!
//! Usage (`bench/gpu_check.sh` runs it):
//!   cargo run --release --features vulkan --example gpu_parity -- [--device vulkan|cuda] [--tol 1e-4]
//! Prints one line per tensor and a last line `RESULT {json}`; exits 1 when a tensor is off,
//! 2 on a usage error.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::BinaryCrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::Gradients;
use pipe::ml::backend::{self, DeviceChoice};
use pipe::ml::models::{Cnn, DropoutMasks, HIDDEN, ModelKind, ModelSpec};
use pipe::ml::resnet::Bottleneck;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Below this fraction of its model's largest gradient scale a gradient is zero in exact
/// arithmetic (see the module documentation).
const ZERO_GRADIENT: f64 = 1e-4;

/// Images per batch of the CNN checks (B1/B3 at their 56x56x3 input).
const BATCH: usize = 8;
/// The bottleneck check: pipe's `res2a` block shape (64 → 64/64/256, stride 1, projection
/// shortcut) on 4 feature maps of 14x14.
const BLOCK_INPUT: [usize; 4] = [4, 64, 14, 14];

/// One compared tensor.
struct Compared {
    name: String,
    elements: usize,
    max_abs_diff: f64,
    /// `max |cpu|`.
    scale: f64,
    /// Every GPU value is finite.
    finite: bool,
    rel: f64,
    /// A gradient that is zero in exact arithmetic, measured against its model's gradients.
    zero: bool,
}

fn compare(name: String, gpu: &[f32], cpu: &[f32]) -> Compared {
    assert_eq!(gpu.len(), cpu.len(), "{name}: element counts differ");
    let scale = cpu.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let diff = gpu
        .iter()
        .zip(cpu)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    let finite = gpu.iter().all(|v| v.is_finite());
    let rel = match (finite, scale > 0.0) {
        (false, _) => f64::INFINITY,
        (true, true) => diff / scale,
        (true, false) if diff == 0.0 => 0.0,
        (true, false) => f64::INFINITY,
    };
    Compared {
        name,
        elements: cpu.len(),
        max_abs_diff: diff,
        scale,
        finite,
        rel,
        zero: false,
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_to_vec_as::<f32>()
        .expect("float tensor data")
}

/// Every float parameter of a module (path, values), and its gradient when `grads` is given.
struct Collect<'a> {
    grads: Option<&'a Gradients>,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        match self.grads {
            None => self.out.push((name, values(param.val()))),
            Some(g) => {
                if let Some(grad) = param.val().grad(g) {
                    self.out.push((name, values(grad)));
                }
            }
        }
    }
}

fn collect<M: Module>(module: &M, grads: Option<&Gradients>) -> Vec<(String, Vec<f32>)> {
    let mut c = Collect {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut c);
    c.out
}

/// What one device computed: the forward output, the loss and every parameter gradient.
struct Run {
    output: Vec<f32>,
    loss: f32,
    grads: Vec<(String, Vec<f32>)>,
    seconds: f64,
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Fixed inputs of a CNN check: images in [0, 1), labels, B3's dropout masks (rate 0.3).
struct CnnInputs {
    x: Vec<f32>,
    y: Vec<i64>,
    masks: Option<(Vec<f32>, Vec<f32>)>,
}

fn cnn_inputs(spec: &ModelSpec, seed: u64) -> CnnInputs {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = spec.input;
    let n = BATCH * (s.channels * s.height * s.width) as usize;
    let x = uniform(&mut rng, n, 0.0, 1.0);
    let y = (0..BATCH).map(|i| (i % 2) as i64).collect();
    let masks = spec.kind.regularised().then(|| {
        let mut draw = || -> Vec<f32> {
            (0..BATCH * HIDDEN)
                .map(|_| {
                    if rng.random::<f32>() < 0.3 {
                        0.0
                    } else {
                        1.0 / 0.7
                    }
                })
                .collect()
        };
        let m1 = draw();
        (m1, draw())
    });
    CnnInputs { x, y, masks }
}

fn run_cnn(model: &Cnn, spec: &ModelSpec, inp: &CnnInputs, device: &Device) -> Run {
    let s = spec.input;
    let t0 = Instant::now();
    let shape = [
        BATCH,
        s.channels as usize,
        s.height as usize,
        s.width as usize,
    ];
    let x = Tensor::<4>::from_data(TensorData::new(inp.x.clone(), shape), device);
    let y = Tensor::<2, Int>::from_data(TensorData::new(inp.y.clone(), [BATCH, 1]), device);
    let masks = inp.masks.as_ref().map(|(m1, m2)| DropoutMasks {
        after_fc1: Tensor::from_data(TensorData::new(m1.clone(), [BATCH, HIDDEN]), device),
        after_fc2: Tensor::from_data(TensorData::new(m2.clone(), [BATCH, HIDDEN]), device),
    });
    let logits = model.forward(x, masks);
    let loss = BinaryCrossEntropyLossConfig::new()
        .with_logits(true)
        .init(device)
        .forward(logits.clone(), y);
    let grads = loss.backward();
    let out = Run {
        output: values(logits),
        loss: values(loss)[0],
        grads: collect(model, Some(&grads)),
        seconds: 0.0,
    };
    Run {
        seconds: t0.elapsed().as_secs_f64(),
        ..out
    }
}

fn run_block(block: &Bottleneck, x: &[f32], device: &Device) -> Run {
    let t0 = Instant::now();
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), BLOCK_INPUT), device);
    let y = block.forward(x);
    // A loss that weighs every output differently, so no gradient is a plain sum.
    let n = y.shape().num_elements();
    let w = Tensor::<1>::from_data(
        TensorData::new((0..n).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect(), [n]),
        device,
    )
    .reshape(y.shape());
    let loss = (y.clone() * w).mean();
    let grads = loss.backward();
    let out = Run {
        output: values(y),
        loss: values(loss)[0],
        grads: collect(block, Some(&grads)),
        seconds: 0.0,
    };
    Run {
        seconds: t0.elapsed().as_secs_f64(),
        ..out
    }
}

/// Compares what the two devices computed; prints a line per tensor.
fn report(model: &str, gpu: &Run, cpu: &Run, tol: f64) -> Vec<Compared> {
    let mut rows = vec![
        compare(format!("{model} output"), &gpu.output, &cpu.output),
        compare(format!("{model} loss"), &[gpu.loss], &[cpu.loss]),
    ];
    assert_eq!(
        gpu.grads.len(),
        cpu.grads.len(),
        "{model}: the devices returned different numbers of gradients"
    );
    let mut grads = Vec::new();
    for ((gn, g), (cn, c)) in gpu.grads.iter().zip(&cpu.grads) {
        assert_eq!(gn, cn, "{model}: gradient order differs");
        grads.push(compare(format!("{model} grad {gn}"), g, c));
    }
    let grad_scale = grads.iter().fold(0f64, |m, r| m.max(r.scale));
    for r in &mut grads {
        if r.finite && r.scale < ZERO_GRADIENT * grad_scale {
            r.zero = true;
            r.rel = r.max_abs_diff / grad_scale;
        }
    }
    rows.extend(grads);
    for r in &rows {
        println!(
            "{:<40} {:>8} elements  max|diff| {:.3e}  rel {:.3e}  {}{}",
            r.name,
            r.elements,
            r.max_abs_diff,
            r.rel,
            if r.rel <= tol { "ok" } else { "OFF" },
            if r.zero {
                format!(
                    " (zero: |cpu| ≤ {:.1e}, rel to the model's gradients)",
                    r.scale
                )
            } else {
                String::new()
            }
        );
    }
    println!(
        "{model}: forward+backward {:.3} s on the GPU device, {:.3} s on the CPU (first call \
         on the GPU includes kernel compilation and autotuning)",
        gpu.seconds, cpu.seconds
    );
    rows
}

/// The weights must have crossed devices unchanged, or the comparison means nothing.
fn same_weights<M: Module>(model: &str, gpu: &M, cpu: &M) {
    let (g, c) = (collect(gpu, None), collect(cpu, None));
    assert_eq!(g.len(), c.len(), "{model}: parameter counts differ");
    for ((gn, gv), (_, cv)) in g.iter().zip(&c) {
        assert!(gv == cv, "{model}: parameter {gn} differs after the copy");
    }
}

fn parse_args() -> Result<(DeviceChoice, f64), String> {
    let mut device = DeviceChoice::Vulkan;
    let mut tol = 1e-4;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--device" => device = value()?.parse()?,
            "--tol" => {
                tol = value()?
                    .parse()
                    .map_err(|e| format!("--tol: {e}"))
                    .and_then(|t: f64| {
                        (t > 0.0)
                            .then_some(t)
                            .ok_or("--tol must be positive".to_string())
                    })?
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if device == DeviceChoice::Cpu {
        return Err("--device must name a GPU device (vulkan or cuda)".into());
    }
    Ok((device, tol))
}

fn main() {
    let (choice, tol) = match parse_args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("gpu_parity: {e}\nusage: gpu_parity [--device vulkan|cuda] [--tol 1e-4]");
            std::process::exit(2);
        }
    };
    let cpu = match backend::device(DeviceChoice::Cpu) {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("gpu_parity: {e}");
            std::process::exit(2);
        }
    };
    let gpu = match backend::device(choice) {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("gpu_parity: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "comparing device {choice} with the CPU backend; tolerance {tol:e} (max |diff| / max |cpu|)"
    );

    let mut rows = Vec::new();
    let mut seconds = Vec::new();
    for (kind, seed) in [(ModelKind::B1, 11), (ModelKind::B3, 13)] {
        let spec = ModelSpec::new(kind);
        let on_cpu = Cnn::new(&spec, Some(seed), &cpu);
        let on_gpu = on_cpu.clone().fork(&gpu);
        same_weights(kind.as_str(), &on_gpu, &on_cpu);
        let inputs = cnn_inputs(&spec, seed + 1);
        let c = run_cnn(&on_cpu, &spec, &inputs, &cpu);
        let g = run_cnn(&on_gpu, &spec, &inputs, &gpu);
        seconds.push((kind.as_str().to_string(), g.seconds, c.seconds));
        rows.extend(report(kind.as_str(), &g, &c, tol));
    }
    {
        let on_cpu = Bottleneck::new(BLOCK_INPUT[1], [64, 64, 256], 1, &cpu);
        // Materialise the (lazily initialised) weights on the CPU before copying them.
        let _ = collect(&on_cpu, None);
        let on_gpu = on_cpu.clone().fork(&gpu);
        same_weights("bottleneck", &on_gpu, &on_cpu);
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let x = uniform(&mut rng, BLOCK_INPUT.iter().product(), -1.0, 1.0);
        let c = run_block(&on_cpu, &x, &cpu);
        let g = run_block(&on_gpu, &x, &gpu);
        seconds.push(("bottleneck".to_string(), g.seconds, c.seconds));
        rows.extend(report("bottleneck", &g, &c, tol));
    }

    let off: Vec<&Compared> = rows.iter().filter(|r| r.rel > tol).collect();
    let worst = rows
        .iter()
        .max_by(|a, b| a.rel.total_cmp(&b.rel))
        .expect("compared tensors");
    let identical = rows.iter().filter(|r| r.max_abs_diff == 0.0).count();
    let result = serde_json::json!({
        "device": choice.as_str(),
        "tolerance": tol,
        "tensors": rows.len(),
        "off": off.iter().map(|r| &r.name).collect::<Vec<_>>(),
        "bit_identical": identical,
        "zero_gradients": rows.iter().filter(|r| r.zero).map(|r| &r.name).collect::<Vec<_>>(),
        "worst": {"name": worst.name, "rel": worst.rel, "max_abs_diff": worst.max_abs_diff},
        "seconds": seconds.iter().map(|(m, g, c)| serde_json::json!({"model": m, "gpu": g, "cpu": c})).collect::<Vec<_>>(),
    });
    println!(
        "{} tensors compared, {} within {tol:e}, {identical} bit-identical; worst {} at {:.3e}",
        rows.len(),
        rows.len() - off.len(),
        worst.name,
        worst.rel
    );
    println!("RESULT {result}");
    if !off.is_empty() {
        std::process::exit(1);
    }
}
