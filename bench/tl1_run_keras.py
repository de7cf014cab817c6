#!/usr/bin/env python3
"""Keras reference for a whole TL1 training run (issue 24): the ResNet-50 base frozen
(bench/resnet_keras.py's model), `fit` over TRAIN random 56x56x3 images for EPOCHS epochs at
batch 32 with a validation pass over VAL images after each, as `pipe`'s train stage runs it
(benches/train_speed.rs `tl1run` runs both). Keras runs the frozen base again every epoch.

Prints `RESULT {"seconds": ..., "img_s": ...}` (img/s = TRAIN x EPOCHS / seconds of `fit`).
Usage: python3 bench/tl1_run_keras.py TRAIN VAL EPOCHS
"""
import json
import sys
import time

from resnet_keras import BATCH, build_model, keras, np, tf


def main():
    n_train, n_val, epochs = (int(a) for a in sys.argv[1:4])
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, size=(n_train + n_val, 56, 56, 3)) - 120.0).astype("float32")
    y = (np.arange(n_train + n_val) % 2).astype("float32").reshape(-1, 1)
    model = build_model("tl1")
    t = time.perf_counter()
    model.fit(x[:n_train], y[:n_train], batch_size=BATCH, epochs=epochs, verbose=0,
              validation_data=(x[n_train:], y[n_train:]))
    seconds = time.perf_counter() - t
    print(f"keras {keras.__version__} tf {tf.__version__} tl1: {epochs} epochs over {n_train} "
          f"images (validation over {n_val} each) in {seconds:.1f} s")
    print("RESULT " + json.dumps({"seconds": round(seconds, 2),
                                  "img_s": round(n_train * epochs / seconds, 2)}), flush=True)


if __name__ == "__main__":
    main()
