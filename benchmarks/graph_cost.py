"""Benchmark: what the spatial graph costs the `procedural` preset.

Two tables:

1. One `train_on_batch` step of the `procedural` preset (batch 32, the
   preset's 4 frames of 64x64, captions of 12, random data) with the
   preset's keypoint readout, without a graph, and with a round of message
   passing (the grid adjacency, the learned one, or both, then mean
   pooling: the previous preset's graph). This is the step `keras-pvc
   demo` repeats 1,500 times.
2. The fixed-grid message `D^-1/2 (A+I) D^-1/2 X` for every frame of such a
   batch (`(32, 4, 64, 64)`), forward and backward, three ways: the `(N, N)`
   matmul broadcast over frames (what `SpatialGraphConv` does), one 2-D
   matmul after a transpose, and a 3x3 depthwise convolution between two
   `D^-1/2` scalings (equal to the first to 1e-5, checked here).

Prints the tables and writes `benchmarks/results/graph_cost.json`. Never
asserts times.

    python benchmarks/graph_cost.py [--steps 6]
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it

import numpy as np
import tensorflow as tf

import keras_pvc
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import grid_adjacency
from keras_pvc.presets import preset_config

# --- knobs ---
BATCH_SIZE = 32
NUM_FRAMES = preset_config("procedural")["num_frames"]
CAPTION_WORDS = 12
GRID = 8  # the preset's 8x8 region grid (64x64 frames, CNN stride 8)
CHANNELS = 64
VOCABULARY = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(39)]
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "graph_cost.json")

# One round of message passing + mean pooling: the previous preset's graph.
MESSAGES = {"units": 64, "coordinates": True, "node_update": "sage", "pooling": "mean"}
VARIANTS = {
    "preset (max + 16 keypoints, no messages)": {},
    "no graph": {"graph": None},
    "messages (grid + learned) + mean": {"graph": {**MESSAGES, "adjacency": "both"}},
    "messages (grid only) + mean": {"graph": {**MESSAGES, "adjacency": "grid"}},
    "messages (learned only) + mean": {"graph": {**MESSAGES, "adjacency": "learned"}},
}


def median_seconds(function, steps):
    function()  # trace / warm up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def train_steps(steps):
    rng = np.random.default_rng(0)
    inputs = {
        "frames": rng.random((BATCH_SIZE, NUM_FRAMES, 64, 64, 3), dtype=np.float32),
        "frame_mask": np.ones((BATCH_SIZE, NUM_FRAMES), bool),
        "token_ids": rng.integers(4, len(VOCABULARY), (BATCH_SIZE, CAPTION_WORDS)).astype("int32"),
        "padding_mask": np.ones((BATCH_SIZE, CAPTION_WORDS), bool),
    }
    targets = rng.integers(4, len(VOCABULARY), (BATCH_SIZE, CAPTION_WORDS)).astype("int32")
    rows = []
    for name, overrides in VARIANTS.items():
        model = keras_pvc.from_preset("procedural", vocabulary=VOCABULARY, **overrides)
        seconds = median_seconds(lambda: model.train_on_batch(inputs, targets), steps)
        rows.append({"variant": name, "step_seconds": seconds, "parameters": model.count_params()})
    return rows


def grid_messages(steps):
    adjacency = grid_adjacency(GRID, GRID, 8)
    normalised = tf.constant(np.asarray(SpatialGraphConv.preprocess(adjacency)), tf.float32)
    degree = (np.asarray(adjacency) > 0).sum(-1) + 1.0
    scale = tf.constant((degree**-0.5).reshape(1, GRID, GRID, 1), tf.float32)
    box = tf.ones((3, 3, CHANNELS, 1))
    nodes = tf.Variable(
        np.random.default_rng(0)
        .random((BATCH_SIZE, NUM_FRAMES, GRID * GRID, CHANNELS))
        .astype("float32")
    )

    def broadcast(x):
        return tf.matmul(normalised, x)

    def two_d(x):
        n = GRID * GRID
        frames_first = tf.transpose(tf.reshape(x, (-1, n, CHANNELS)), (1, 0, 2))
        out = tf.matmul(normalised, tf.reshape(frames_first, (n, -1)))
        out = tf.transpose(tf.reshape(out, (n, -1, CHANNELS)), (1, 0, 2))
        return tf.reshape(out, tf.shape(x))

    def convolution(x):
        image = tf.reshape(x, (-1, GRID, GRID, CHANNELS)) * scale
        out = tf.nn.depthwise_conv2d(image, box, [1, 1, 1, 1], "SAME") * scale
        return tf.reshape(out, tf.shape(x))

    reference = broadcast(nodes).numpy()
    rows = []
    for name, function in (
        ("broadcast (N, N) matmul", broadcast),
        ("one 2-D matmul", two_d),
        ("3x3 depthwise conv", convolution),
    ):
        error = float(np.abs(function(nodes).numpy() - reference).max())

        @tf.function
        def step(function=function):
            with tf.GradientTape() as tape:
                out = function(nodes)
                loss = tf.reduce_sum(out * out)
            return tape.gradient(loss, nodes)

        seconds = median_seconds(lambda: step().numpy(), max(steps, 20))
        rows.append({"method": name, "ms": 1000 * seconds, "max_abs_error": error})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps (median)")
    args = parser.parse_args()
    steps = train_steps(args.steps)
    messages = grid_messages(args.steps)
    baseline = next(r for r in steps if r["variant"] == "no graph")["step_seconds"]
    print(f"\nprocedural preset, one training step (batch {BATCH_SIZE}), median of {args.steps}")
    print(f"| {'variant':42s} | step (s) | vs no graph | params |")
    print("|---|---|---|---|")
    for row in steps:
        print(
            f"| {row['variant']:42s} | {row['step_seconds']:.3f} | "
            f"{row['step_seconds'] / baseline:.2f}x | {row['parameters']:,} |"
        )
    print(f"\ngrid message of ({BATCH_SIZE}, {NUM_FRAMES}, {GRID * GRID}, {CHANNELS}), forward + backward")
    print(f"| {'method':26s} | ms | max |diff| vs broadcast |")
    print("|---|---|---|")
    for row in messages:
        print(f"| {row['method']:26s} | {row['ms']:.2f} | {row['max_abs_error']:.1e} |")
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "w") as file:
        json.dump(
            {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
             "train_step": steps, "grid_message": messages},
            file,
            indent=2,
        )
    print(f"\nWrote {OUTPUT}")


if __name__ == "__main__":
    main()
