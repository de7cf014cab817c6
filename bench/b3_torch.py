"""B3 in PyTorch, layer for layer as pipe's (crates/pipe-ml/src/models.rs), for a same-GPU ratio in
bench/gpu_h200.sh.

Model: Conv2d(C,16,3) → ReLU → MaxPool(2) → Conv2d(16,64,3) → ReLU → MaxPool(2) →
Conv2d(64,128,3) → ReLU → MaxPool(2) → Flatten → Linear(·,512) → ReLU → Dropout(0.3) →
Linear(512,512) → ReLU → Dropout(0.3) → Linear(512,1) (a logit), valid padding, biases,
Glorot-uniform kernels and zero biases (Keras' defaults, as pipe draws them). Loss:
BCE-with-logits. Adam(lr 1e-4, betas 0.9/0.999, eps 1e-7) as pipe's defaults. Batch 124.

Work per epoch as pipe does it: the images live on the host as u8 HWC; each batch of a
shuffled order is gathered, converted to f32 / 255 CHW and copied to the GPU, then forward,
backward and the Adam step, and the batch's logits are read back to the host (pipe scores the
training pass from them; READBACK=0 skips it); after the training pass a validation pass (no
grad) at batch 256. PyTorch's own defaults otherwise (TF32 convolutions where cuDNN allows them:
printed).
Images/s counts the training pass only (pipe's `train_img_per_s`); seconds per epoch include
the validation pass (pipe's `train_seconds` / epochs).

Usage: python3 bench/b3_torch.py [N_IMAGES] [EPOCHS]   (defaults 116000 2; VAL_FRACTION=0.1;
DEVICE=cpu for a smoke run without a GPU)
Prints human-readable lines and `RESULT {json}`.
"""
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

N = int(sys.argv[1]) if len(sys.argv) > 1 else 116_000
EPOCHS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
VAL_FRACTION = float(os.environ.get("VAL_FRACTION", "0.1"))
READBACK = os.environ.get("READBACK", "1") != "0"
BATCH, INFER_BATCH, SIDE, CH = 124, 256, 56, 3


def b3(side: int, ch: int) -> nn.Sequential:
    s = side
    for _ in range(3):
        s = (s - 2) // 2
    m = nn.Sequential(
        nn.Conv2d(ch, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * s * s, 512), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(512, 1),
    )
    for layer in m:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return m


def batch_to_device(images: torch.Tensor, idx: torch.Tensor, dev: torch.device) -> torch.Tensor:
    x = images[idx]
    if dev.type == "cuda":
        x = x.pin_memory()
    x = x.to(dev, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def main() -> None:
    dev = torch.device(os.environ.get("DEVICE", "cuda"))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(N, SIDE, SIDE, CH), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 2, size=(N, 1)).astype(np.float32))
    n_val = int(N * VAL_FRACTION)
    train_idx = torch.arange(n_val, N)
    val_idx = torch.arange(0, n_val)

    model = b3(SIDE, CH).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()
    print(f"torch {torch.__version__}, {name}, "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}", flush=True)
    print(f"params {sum(p.numel() for p in model.parameters())}, {N - n_val} train / {n_val} val",
          flush=True)

    train_rates, epoch_seconds = [], []
    for epoch in range(EPOCHS):
        t_epoch = time.perf_counter()
        model.train()
        order = train_idx[torch.randperm(len(train_idx))]
        sync()
        t_train = time.perf_counter()
        for b in range(0, len(order), BATCH):
            idx = order[b:b + BATCH]
            x = batch_to_device(images, idx, dev)
            y = labels[idx].to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
            if READBACK:
                logits.detach().cpu()
        sync()
        train_s = time.perf_counter() - t_train
        model.eval()
        with torch.no_grad():
            for b in range(0, len(val_idx), INFER_BATCH):
                idx = val_idx[b:b + INFER_BATCH]
                model(batch_to_device(images, idx, dev)).cpu()
        sync()
        epoch_s = time.perf_counter() - t_epoch
        train_rates.append(len(order) / train_s)
        epoch_seconds.append(epoch_s)
        print(f"epoch {epoch + 1}: train {len(order) / train_s:.0f} img/s ({train_s:.2f} s), "
              f"epoch with validation {epoch_s:.2f} s, last loss {loss.item():.4f}", flush=True)

    result = {
        "framework": "pytorch",
        "torch": torch.__version__,
        "images": N,
        "epochs": EPOCHS,
        "readback": READBACK,
        "train_img_s_per_epoch": train_rates,
        # The whole training (first epoch included, as pipe's figure).
        "train_img_s": (len(train_idx) * EPOCHS) / sum(len(train_idx) / r for r in train_rates),
        "epoch_s": epoch_seconds,
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
