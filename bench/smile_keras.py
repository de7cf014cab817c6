#!/usr/bin/env python3
"""Keras side of bench/smile_parity.sh: the B3 CNN trained on exactly pipe's train split.

    python3 bench/smile_keras.py SOURCE_OBJECT SPLIT_OBJECT --epochs 15 --lr 1e-4 --out res.json

SOURCE_OBJECT is the cache object of pipe's `source` stage (pixels.u8, labels.u8,
dataset.json); SPLIT_OBJECT the `split` stage's (split.json with train/val/test indices into
that dataset). Augmentation is Keras' ImageDataGenerator (rescale 1/255, zoom 0.1, rotation 10,
horizontal flip, fill nearest), the model is B3 (Conv 16/64/128 + max-pool, Dense 512/512,
dropout 0.3, sigmoid), Adam, binary cross-entropy, batch 124. Prints and writes the balanced
accuracy of the last epoch's weights on the test split at threshold 0.5. With --val, `fit`
also runs a validation pass over pipe's val split after every epoch, as pipe's train stage does
(bench/augmented_run.sh times that whole run).
"""

import argparse
import json
import os
import random
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: E402


def build(shape, lr, dropout):
    m = keras.Sequential([
        keras.Input(shape),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(512, activation="relu"), layers.Dropout(dropout),
        layers.Dense(512, activation="relu"), layers.Dropout(dropout),
        layers.Dense(1, activation="sigmoid"),
    ])
    m.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy")
    return m


def balanced_accuracy(y, p):
    pos, neg = y == 1, y == 0
    tpr = (p[pos] == 1).mean() if pos.any() else 0.0
    tnr = (p[neg] == 0).mean() if neg.any() else 0.0
    return float((tpr + tnr) / 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("split")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=124)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--val", action="store_true", help="validate on the val split every epoch")
    a = ap.parse_args()

    random.seed(a.seed)
    np.random.seed(a.seed)
    tf.random.set_seed(a.seed)

    meta = json.load(open(os.path.join(a.source, "dataset.json")))
    px = np.fromfile(os.path.join(a.source, "pixels.u8"), dtype=np.uint8)
    labels = np.fromfile(os.path.join(a.source, "labels.u8"), dtype=np.uint8)
    n = len(labels)
    h, w, c = (meta["shape"][k] for k in ("height", "width", "channels")) if isinstance(
        meta.get("shape"), dict) else (64, 64, 1)
    x = px.reshape(n, h, w, c)
    split = json.load(open(os.path.join(a.split, "split.json")))
    tr, va, te = (np.array(split[k], dtype=np.int64) for k in ("train", "val", "test"))
    print(f"keras {keras.__version__} (tf {tf.__version__}): {n} images {h}x{w}x{c}, "
          f"train {len(tr)}, test {len(te)}", flush=True)

    gen = ImageDataGenerator(rescale=1.0 / 255, zoom_range=0.1, rotation_range=10,
                             horizontal_flip=True, fill_mode="nearest")
    flow = gen.flow(x[tr].astype(np.float32), labels[tr].astype(np.float32),
                    batch_size=a.batch, shuffle=True, seed=a.seed)
    m = build((h, w, c), a.lr, a.dropout)
    t0 = time.perf_counter()
    val = (x[va].astype(np.float32) / 255.0, labels[va].astype(np.float32)) if a.val else None
    hist = m.fit(flow, epochs=a.epochs, verbose=2, validation_data=val)
    train_s = time.perf_counter() - t0

    xt = x[te].astype(np.float32) / 255.0
    prob = m.predict(xt, batch_size=1024, verbose=0).reshape(-1)
    pred = (prob >= 0.5).astype(np.uint8)
    bacc = balanced_accuracy(labels[te], pred)
    res = dict(balanced_accuracy=bacc, epochs=a.epochs, lr=a.lr, train_seconds=train_s,
               final_loss=float(hist.history["loss"][-1]), n_train=int(len(tr)), n_val=int(len(va)) if a.val else 0,
               n_test=int(len(te)), keras=keras.__version__, tf=tf.__version__)
    print("KERAS_RESULT " + json.dumps(res), flush=True)
    if a.out:
        json.dump(res, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
