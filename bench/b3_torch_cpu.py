"""B3 in PyTorch on the CPU, for bench/b3_anchors.sh: training and inference images/s of the
model pipe trains as B3 (crates/pipe-ml/src/models.rs), beside pipe's own figure
(`cargo bench --bench train_speed -- b3`) and Keras' (bench/b3_keras.py).

Model, initialisation, loss and optimiser: `b3()` of bench/b3_torch.py (layer for layer as
pipe's; Glorot-uniform kernels, zero biases, BCE with logits, Adam lr 1e-4, eps 1e-7).
The work is that of the other two: batch 124, no augmentation (neither pipe's nor Keras'
benchmark augments), N_BATCHES batches of random 56x56x3 images held as u8 HWC (as pipe holds
them), each batch converted to f32 / 255 NCHW when it is used. Training: one step first (as
Keras' compile step), then REPEATS epochs over the N_BATCHES batches in a fixed order (Keras'
`fit(shuffle=False)`); images/s of each epoch, median. Inference (`eval()`, `no_grad`): PREDICT_N
images at batch 256 (pipe's `predict` and Keras' `model.predict`) and INFER_N batches of 1024
(Keras' `predict_on_batch`), medians of REPEATS. torch's default threads (printed).

Usage: python3 bench/b3_torch_cpu.py   (env: N_BATCHES=10 REPEATS=3 PREDICT_N=1488 INFER_N=4)
Prints human-readable lines and `RESULT {json}`.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from b3_torch import b3  # noqa: E402  (the same model as the GPU benchmark)

BATCH, SIDE, CH = 124, 56, 3
N_BATCHES = int(os.environ.get("N_BATCHES", "10"))
REPEATS = int(os.environ.get("REPEATS", "3"))
PREDICT_N = int(os.environ.get("PREDICT_N", str(124 * 12)))
PREDICT_BATCH = 256
INFER_N = int(os.environ.get("INFER_N", "4"))
INFER_BATCH = 1024


def as_input(images: torch.Tensor) -> torch.Tensor:
    """u8 NHWC → f32 / 255 NCHW (contiguous, as a convolution wants it)."""
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = max(BATCH * N_BATCHES, PREDICT_N, INFER_BATCH)
    images = torch.from_numpy(rng.integers(0, 256, size=(n, SIDE, SIDE, CH), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 2, size=(n, 1)).astype(np.float32))
    model = b3(SIDE, CH)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()} intra / "
          f"{torch.get_num_interop_threads()} inter, "
          f"params {sum(p.numel() for p in model.parameters())}", flush=True)

    def step(b: int) -> None:
        lo, hi = b * BATCH, (b + 1) * BATCH
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(as_input(images[lo:hi])), labels[lo:hi])
        loss.backward()
        opt.step()

    model.train()
    t = time.perf_counter()
    step(0)
    print(f"first train step {time.perf_counter() - t:.2f}s", flush=True)
    train_rates = []
    for r in range(REPEATS):
        t = time.perf_counter()
        for b in range(N_BATCHES):
            step(b)
        dt = time.perf_counter() - t
        train_rates.append(BATCH * N_BATCHES / dt)
        print(f"train repeat {r}: {train_rates[-1]:.1f} img/s ({dt:.2f}s for "
              f"{BATCH * N_BATCHES} imgs)", flush=True)

    model.eval()

    def predict(count: int, batch: int) -> None:
        with torch.no_grad():
            for lo in range(0, count, batch):
                model(as_input(images[lo:min(lo + batch, count)])).sigmoid()

    predict(PREDICT_N, PREDICT_BATCH)  # warm-up
    pred_rates, infer_rates = [], []
    for r in range(REPEATS):
        t = time.perf_counter()
        predict(PREDICT_N, PREDICT_BATCH)
        pred_rates.append(PREDICT_N / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(INFER_N):
            predict(INFER_BATCH, INFER_BATCH)
        infer_rates.append(INFER_N * INFER_BATCH / (time.perf_counter() - t))
        print(f"predict repeat {r}: {pred_rates[-1]:.1f} img/s ({PREDICT_N} imgs, batch "
              f"{PREDICT_BATCH}); batch {INFER_BATCH}: {infer_rates[-1]:.1f} img/s", flush=True)

    result = dict(
        framework="pytorch", torch=torch.__version__,
        threads=[torch.get_num_threads(), torch.get_num_interop_threads()],
        n_batches=N_BATCHES,
        train_median=statistics.median(train_rates), train_all=train_rates,
        predict_median=statistics.median(pred_rates), predict_all=pred_rates,
        infer_median=statistics.median(infer_rates), infer_all=infer_rates,
    )
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
