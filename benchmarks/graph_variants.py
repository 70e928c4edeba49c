"""Benchmark: the `msvd` preset's spatial graph, forward + backward, per variant.

The graph alone (`SpatialGraphConv(512, adjacency="both",
pooling="attention")` on `(B, T, 49, 1280)` region grids, the seed's shape
by default: batch 20, 80 frames) in one process, every variant holding the
same weights, timed in interleaved rounds (variant A, B, C, then again), so
that a change of machine load hits each alike; each ratio is the median of
the per-round ratios. Gradients are taken for the graph's weights only (the
input features are data, as in training). Variants:

- `plain`: per-sublayer projections (`fused_projection=False`, the graph
  before issue 19).
- `fused`: one matmul per round, the residual projected at every node
  (`pooled_residual=False`).
- `pooled_residual`: the default, the residual projected after the pooling.
- `pooled_residual_bf16` (`--bf16`): the default under a `mixed_bfloat16`
  dtype policy for the graph alone (float32 weights, bfloat16 matmuls):
  fast where the CPU has AVX512-BF16/AMX or on a GPU, slow elsewhere.

Before timing, checks that every float32 variant gives the default's outputs
(to 1e-4 relative). Prints a table and writes
`benchmarks/results/graph_variants.json` (machine, load, date). Never asserts
times.

    python benchmarks/graph_variants.py
    python benchmarks/graph_variants.py --frames 20 --rounds 5 --bf16
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from keras_pvc.layers import SpatialGraphConv
from keras_pvc.presets import preset_config

# --- knobs ---
BATCH_SIZE = 20
NUM_FRAMES = 80
REGIONS, CHANNELS = 49, 1280
ROUNDS = 3
SEED = 0
OUTPUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "graph_variants.json"
)
VARIANTS = {
    "plain": {"fused_projection": False},
    "fused": {"pooled_residual": False},
    "pooled_residual": {},
}


def build_variants(frames, bf16):
    graph_config = dict(preset_config("msvd")["graph"])
    variants = dict(VARIANTS)
    if bf16:
        variants["pooled_residual_bf16"] = {"dtype": "mixed_bfloat16"}
    shape = (BATCH_SIZE, frames, REGIONS, CHANNELS)
    layers = {}
    for name, options in variants.items():
        layer = SpatialGraphConv(**{**graph_config, **options})
        layer.build(shape)
        layers[name] = layer
    weights = layers["pooled_residual"].get_weights()
    for layer in layers.values():
        layer.set_weights(weights)
    return layers


def step_function(layer, nodes):
    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(layer(nodes, training=True), "float32") ** 2)
        grads = tape.gradient(loss, layer.trainable_weights)
        return tf.add_n([tf.reduce_sum(g) for g in grads if g is not None])

    return step


def seconds(function):
    start = time.perf_counter()
    float(function())
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=NUM_FRAMES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--bf16", action="store_true", help="add the mixed_bfloat16 variant")
    parser.add_argument("--json", default=OUTPUT)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    nodes = tf.constant(
        np.random.default_rng(SEED)
        .normal(size=(BATCH_SIZE, args.frames, REGIONS, CHANNELS))
        .astype("float32")
    )
    layers = build_variants(args.frames, args.bf16)
    reference = keras.ops.convert_to_numpy(layers["pooled_residual"](nodes))
    for name, layer in layers.items():
        if name.endswith("bf16"):
            continue
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(nodes)), reference, rtol=1e-4, atol=1e-4,
            err_msg=name,
        )
    steps = {name: step_function(layer, nodes) for name, layer in layers.items()}
    for step in steps.values():
        step()  # trace and warm up
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(seconds(step))
    load_after = os.getloadavg()[0]
    rows = []
    print(
        f"msvd spatial graph, forward + backward: batch {BATCH_SIZE}, {args.frames} "
        f"frames, {REGIONS} regions x {CHANNELS}; {args.rounds} interleaved rounds; "
        f"{os.cpu_count()} CPUs, load {load_before:.2f} -> {load_after:.2f}"
    )
    print(f"{'variant':24s} {'median s':>9s} {'vs plain':>9s} {'vs fused':>9s}")
    for name, values in times.items():
        ratios = {
            other: statistics.median(
                o / v for o, v in zip(times[other], values)
            )
            for other in ("plain", "fused")
        }
        rows.append({"variant": name, "seconds": values, "median_seconds":
                     statistics.median(values), "speedup_vs": ratios})
        print(
            f"{name:24s} {statistics.median(values):9.3f} "
            f"{ratios['plain']:8.2f}x {ratios['fused']:8.2f}x"
        )
    result = {
        "benchmark": "graph_variants",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "load": [load_before, load_after]},
        "shape": [BATCH_SIZE, args.frames, REGIONS, CHANNELS],
        "graph": preset_config("msvd")["graph"],
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
