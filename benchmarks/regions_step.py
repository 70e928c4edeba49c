"""One training step of the `regions` preset at its own shape, two ways.

The shape `keras-pvc train` gives `regions` on a user's folder: batch 32,
8 frames of 7x7 EfficientNet-Lite0 regions (1280 channels), hidden 256,
captions of 20 words, random data, all frames real. The spatial graph reads
each region's centred features beside the clip's static part (`2 x 1280`
channels, `layers.TemporalCentering`); configurations:

- `regions`: as the package runs it, the static part handed to
  `SpatialGraphConv(static=...)` and projected once per frame;
- `regions_concat_static`: the static part concatenated to every region
  first (the layer before 2026-12-03's change; same weights, same numbers),
  so the graph's first projection reads `2 x 1280` channels at every region.

Every configuration runs in its own subprocess, round-robin `--rounds` times
(a change of machine load hits both alike); the table gives the median step
and the median of the per-round ratios. Prints a table and writes
`benchmarks/results/regions_step.json`. Never asserts times.

    python benchmarks/regions_step.py
    python benchmarks/regions_step.py --rounds 5
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BATCH_SIZE = 32
NUM_FRAMES = 8
CAPTION_LENGTH = 20
VOCABULARY_SIZE = 200
WARMUP_STEPS = 2
TIMED_STEPS = 6
CONFIGS = ("regions", "regions_concat_static")
RESULTS_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "regions_step.json"
)


def run_config(config):
    """Median seconds of a training step of `config`, in this process."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
    import numpy as np

    import keras_pvc
    from keras_pvc.layers import SpatialGraphConv

    if config == "regions_concat_static":
        SpatialGraphConv.accepts_static = False  # TemporalCentering concatenates
    model = keras_pvc.from_preset(
        "regions", vocabulary_size=VOCABULARY_SIZE, caption_length=CAPTION_LENGTH,
        num_frames=NUM_FRAMES,
    )
    rng = np.random.default_rng(0)
    tokens = CAPTION_LENGTH + 1
    token_ids = rng.integers(4, VOCABULARY_SIZE, (BATCH_SIZE, tokens)).astype("int32")
    token_ids[:, 0] = 2  # <bos>
    labels = rng.integers(4, VOCABULARY_SIZE, (BATCH_SIZE, tokens)).astype("int32")
    padding_mask = np.ones((BATCH_SIZE, tokens), bool)
    inputs = {
        "features": rng.normal(size=(BATCH_SIZE, NUM_FRAMES, 49, 1280)).astype("float32"),
        "frame_mask": np.ones((BATCH_SIZE, NUM_FRAMES), bool),
        "token_ids": token_ids,
        "padding_mask": padding_mask,
    }
    seconds = []
    for index in range(WARMUP_STEPS + TIMED_STEPS):
        start = time.perf_counter()
        model.train_on_batch(inputs, labels)
        if index >= WARMUP_STEPS:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=RESULTS_PATH)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"seconds": run_config(args.child)}))
        return
    rounds = []
    for round_index in range(args.rounds):
        result = {}
        for config in args.configs:
            output = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", config],
                capture_output=True, text=True, check=True,
            ).stdout
            result[config] = json.loads(output.strip().splitlines()[-1])["seconds"]
            print(f"[round {round_index + 1}/{args.rounds}] {config}: {result[config]:.3f} s",
                  flush=True)
        rounds.append(result)
    base = args.configs[0]
    print(f"| config | step s (median of {args.rounds}) | videos/s | x {base} |")
    print("|---|---|---|---|")
    rows = []
    for config in args.configs:
        step = statistics.median(r[config] for r in rounds)
        ratio = statistics.median(r[config] / r[base] for r in rounds)
        rows.append({"config": config, "step_seconds": step,
                     "videos_per_second": BATCH_SIZE / step, "ratio_to_first": ratio})
        print(f"| {config} | {step:.3f} | {BATCH_SIZE / step:.1f} | {ratio:.2f} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({
            "benchmark": "regions_step",
            "command": " ".join(["python", "benchmarks/regions_step.py", *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"load {os.getloadavg()[0]:.1f} at the end",
            "shape": {"batch": BATCH_SIZE, "frames": NUM_FRAMES, "regions": 49,
                      "channels": 1280, "caption_length": CAPTION_LENGTH},
            "rows": rows, "rounds": rounds,
        }, handle, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
