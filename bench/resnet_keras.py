#!/usr/bin/env python3
"""Keras reference throughput for the TL models: ResNet50(weights=None, include_top=False,
input_shape=(56, 56, 3)) + GlobalAveragePooling2D + Dense(512, relu) x2 + Dense(1, sigmoid),
Adam(1e-4), binary cross-entropy, batch 32; TL3 (every layer trainable) and TL1 (the
ResNet-50 base frozen: `base.trainable = False`, only the head trains).

Prints human-readable lines and, per mode, a machine-readable line
`RESULT {"mode": "tl3", "train_img_s": ..., "infer_img_s": ..., ...}` that the Rust benchmark
(`cargo bench --bench train_speed -- resnet`, benches/train_speed.rs) parses.

Usage: python3 bench/resnet_keras.py [train_steps] [infer_batches]
Needs `pip install tensorflow-cpu` (Keras 3).
"""
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

BATCH = 32


def build_model(mode):
    base = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(56, 56, 3)
    )
    base.trainable = mode != "tl1"
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(base.input, out)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-4, epsilon=1e-7),
        loss="binary_crossentropy",
    )
    return model


def main():
    train_steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    infer_batches = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, size=(BATCH, 56, 56, 3)) - 120.0).astype("float32")
    y = (np.arange(BATCH) % 2).astype("float32").reshape(BATCH, 1)

    for mode in ("tl3", "tl1"):
        keras.backend.clear_session()
        model = build_model(mode)
        params = model.count_params()
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(f"keras {keras.__version__} tf {tf.__version__} {mode}: "
              f"{params:,} parameters, {trainable:,} trainable")

        model.train_on_batch(x, y)  # warm-up: graph tracing
        t = time.perf_counter()
        for _ in range(train_steps):
            model.train_on_batch(x, y)
        train_rate = train_steps * BATCH / (time.perf_counter() - t)

        model.predict_on_batch(x)  # warm-up
        t = time.perf_counter()
        for _ in range(infer_batches):
            model.predict_on_batch(x)
        infer_rate = infer_batches * BATCH / (time.perf_counter() - t)

        print(f"keras {mode} train {train_rate:.1f} img/s ({train_steps} steps of {BATCH}), "
              f"inference {infer_rate:.1f} img/s")
        result = {
            "mode": mode,
            "backend": f"tensorflow-cpu {tf.__version__} / keras {keras.__version__}",
            "batch": BATCH,
            "params": params,
            "trainable": trainable,
            "train_img_s": round(train_rate, 2),
            "infer_img_s": round(infer_rate, 2),
        }
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
