"""B3 Keras baseline for bench/b3_keras.sh: steady-state training and inference throughput on CPU.

Adapted from shared/reference/keras/bench_keras.py. Training: `model.fit` for one epoch over
N_BATCHES batches of 124 (after a compile step), median of REPEATS. Inference: `model.predict`
at batch 256 over PREDICT_N images (pipe's `predict` shape: 1488 images, batch 256) and
`predict_on_batch` at batch 1024, medians of REPEATS. Prints `RESULT {json}`.
"""
import os, sys, time, json, statistics
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
import keras
from keras import layers
if os.environ.get("INTER"):
    tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["INTER"]))
if os.environ.get("INTRA"):
    tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["INTRA"]))
MODE = os.environ.get("MODE", "fit")  # fit | tob (train_on_batch loop)

BATCH = 124
N_BATCHES = int(os.environ.get("N_BATCHES", "60"))
REPEATS = int(os.environ.get("REPEATS", "3"))
INFER_BATCH = 1024
INFER_N = int(os.environ.get("INFER_N", "8"))   # batches per inference timing
PREDICT_N = int(os.environ.get("PREDICT_N", str(124 * 12)))  # images per model.predict timing
PREDICT_BATCH = int(os.environ.get("PREDICT_BATCH", "256"))

def build():
    m = keras.Sequential([
        keras.Input((56, 56, 3)),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(128, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(512, activation="relu"), layers.Dropout(0.3),
        layers.Dense(512, activation="relu"), layers.Dropout(0.3),
        layers.Dense(1, activation="sigmoid"),
    ])
    m.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    return m

rng = np.random.default_rng(0)
x = (rng.integers(0, 256, size=(BATCH * N_BATCHES, 56, 56, 3), dtype=np.uint8).astype(np.float32) / 255.0)
y = rng.integers(0, 2, size=(BATCH * N_BATCHES, 1)).astype(np.float32)
m = build()
print("params", m.count_params(), flush=True)

# 1) warm-up / compile: one train_on_batch
t = time.perf_counter(); m.train_on_batch(x[:BATCH], y[:BATCH]); print(f"first train step (compile) {time.perf_counter()-t:.2f}s", flush=True)

# steady-state: model.fit for 1 epoch over N_BATCHES batches (already compiled train function)
train_rates = []
for r in range(REPEATS):
    t = time.perf_counter()
    if MODE == "fit":
        m.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    else:
        for b in range(N_BATCHES):
            m.train_on_batch(x[b*BATCH:(b+1)*BATCH], y[b*BATCH:(b+1)*BATCH])
    dt = time.perf_counter() - t
    train_rates.append(len(x) / dt)
    print(f"train repeat {r}: {len(x)/dt:.1f} img/s ({dt:.2f}s for {len(x)} imgs)", flush=True)

xi = x[:INFER_BATCH]
t = time.perf_counter(); m.predict_on_batch(xi); print(f"first predict (compile) {time.perf_counter()-t:.2f}s", flush=True)
inf_rates = []
for r in range(REPEATS):
    t = time.perf_counter()
    for _ in range(INFER_N):
        m.predict_on_batch(xi)
    dt = time.perf_counter() - t
    inf_rates.append(INFER_N * INFER_BATCH / dt)
    print(f"infer repeat {r}: {INFER_N*INFER_BATCH/dt:.1f} img/s", flush=True)

xp = x[:PREDICT_N]
m.predict(xp, batch_size=PREDICT_BATCH, verbose=0)
pred_rates = []
for r in range(REPEATS):
    t = time.perf_counter()
    m.predict(xp, batch_size=PREDICT_BATCH, verbose=0)
    dt = time.perf_counter() - t
    pred_rates.append(len(xp) / dt)
    print(f"predict repeat {r}: {len(xp)/dt:.1f} img/s ({len(xp)} imgs, batch {PREDICT_BATCH})", flush=True)

res = dict(mode=MODE, inter=os.environ.get('INTER'), intra=os.environ.get('INTRA'), tf=tf.__version__, keras=keras.__version__, backend=keras.backend.backend(),
           threads=(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()),
           train_median=statistics.median(train_rates), train_all=train_rates,
           infer_median=statistics.median(inf_rates), infer_all=inf_rates,
           predict_median=statistics.median(pred_rates), predict_all=pred_rates)
print("RESULT", json.dumps(res), flush=True)
