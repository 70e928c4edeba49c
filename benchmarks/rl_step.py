"""Benchmark: one self-critical (REINFORCE) step against one cross-entropy step.

The shape of the seed's MSVD setup: batch 20, captions of 20 words,
vocabulary 3000, K = 5 samples per video plus the greedy baseline, CIDEr-D
in the graph against 40 references per video; random features. The msvd
preset (80 frames of 7x7x1280 region grids through a spatial graph) is heavy
for a shared 2-core CPU, so by default it runs with fewer frames
(`MSVD_FRAMES`); `--full-msvd` runs all 80. The s2vt preset (80 pooled
4096-d frames, no graph, no attention) runs at full size.

Both steps are `fit` steps of the same compiled model (`jit_compile` off):
the XE step, then the same model after `enable_self_critical`. Prints a
table and writes `benchmarks/results/rl_step.json`. Never asserts times.

    python benchmarks/rl_step.py [--full-msvd] [--steps 3]
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it

import keras
import numpy as np
import tensorflow as tf

import keras_pvc

# --- knobs ---
BATCH_SIZE = 20
CAPTION_WORDS = 20
VOCABULARY_SIZE = 3000
NUM_SAMPLES = 5
REFERENCES_PER_VIDEO = 40
MSVD_FRAMES = 10
TIMED_STEPS = 3
SEED = 0
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "rl_step.json")


def vocabulary():
    return ["<pad>", "<unk>", "<bos>", "<eos>"] + [
        f"word{index}" for index in range(VOCABULARY_SIZE - 4)
    ]


def random_caption_ids(rng, shape):
    """Zipf-like word ids, then `<eos>` and padding: `shape + (words + 2,)`."""
    ids = np.zeros(shape + (CAPTION_WORDS + 2,), "int32")
    lengths = rng.integers(5, CAPTION_WORDS + 1, size=shape)
    words = np.minimum(rng.zipf(1.3, size=shape + (CAPTION_WORDS,)), VOCABULARY_SIZE - 5) + 3
    for index in np.ndindex(shape):
        length = lengths[index]
        ids[index][0] = 2
        ids[index][1 : length + 1] = words[index][:length]
        ids[index][length + 1] = 3
    return ids


def one_batch(model, num_frames, rng):
    kind = model.backbone.input_kind
    video_shape = (BATCH_SIZE, num_frames) + tuple(model.backbone.video_input_shape)
    references = random_caption_ids(rng, (BATCH_SIZE, REFERENCES_PER_VIDEO))
    return {
        kind: rng.normal(size=video_shape).astype("float32"),
        "frame_mask": np.ones((BATCH_SIZE, num_frames), bool),
        "caption_ids": references[:, 0],
        "reference_ids": references,
    }


class StepTimer(keras.callbacks.Callback):
    """Wall and process-CPU seconds of every `fit` batch.

    On a shared machine the wall time depends on the neighbours' load; the
    CPU time (all of this process's threads) is the work the step costs.
    """

    def __init__(self):
        super().__init__()
        self.seconds = []
        self.cpu_seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def time_fit_steps(model, dataset, steps):
    """Median wall and CPU seconds of `steps` fit steps, and the first step's.

    The first step traces the train function and is not in the medians.
    """
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[timer])
    return (
        float(np.median(timer.seconds[1:])),
        float(np.median(timer.cpu_seconds[1:])),
        timer.seconds[0],
    )


def measure(preset, num_frames, steps):
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    model = keras_pvc.from_preset(preset, vocabulary=vocabulary(), num_frames=num_frames)
    model.compile(learning_rate=1e-4, jit_compile=False)
    batch = one_batch(model, num_frames, rng)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    row = {"preset": preset, "num_frames": num_frames, "batch_size": BATCH_SIZE}
    row["xe_s"], row["xe_cpu_s"], row["xe_first_s"] = time_fit_steps(model, dataset, steps)
    train_references = random_caption_ids(rng, (200, REFERENCES_PER_VIDEO))
    for baseline in ("greedy", "mean"):
        model.enable_self_critical(
            train_references=train_references,
            num_samples=NUM_SAMPLES,
            baseline=baseline,
            seed=SEED,
        )
        seconds, cpu_seconds, first = time_fit_steps(model, dataset, steps)
        row[f"rl_{baseline}_s"], row[f"rl_{baseline}_first_s"] = seconds, first
        row[f"rl_{baseline}_cpu_s"] = cpu_seconds
        row[f"ratio_{baseline}"] = seconds / row["xe_s"]
        row[f"cpu_ratio_{baseline}"] = cpu_seconds / row["xe_cpu_s"]
    model.disable_self_critical()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-msvd", action="store_true", help="all 80 msvd frames")
    parser.add_argument("--steps", type=int, default=TIMED_STEPS, help="timed steps")
    parser.add_argument("--only", choices=("s2vt", "msvd"), default=None)
    args = parser.parse_args()

    runs = [("s2vt", 80), ("msvd", 80 if args.full_msvd else MSVD_FRAMES)]
    if args.only:
        runs = [run for run in runs if run[0] == args.only]
    rows = []
    for preset, frames in runs:
        rows.append(measure(preset, frames, args.steps))
        print(f"done {preset} ({frames} frames)", flush=True)

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    header = (
        f"{'preset':8} {'frames':>6} {'XE ms':>8} {'RL greedy ms':>13} {'ratio':>6} "
        f"{'RL mean ms':>11} {'ratio':>6} | {'CPU ratio greedy':>16} {'mean':>5}"
    )
    print(
        f"\nOne fit step, batch {BATCH_SIZE}, K={NUM_SAMPLES}, captions {CAPTION_WORDS}, "
        f"vocabulary {VOCABULARY_SIZE}; wall ms, median of {args.steps} (goal: ratio <= 3)"
    )
    print(header)
    for row in rows:
        print(
            f"{row['preset']:8} {row['num_frames']:>6} {1000 * row['xe_s']:>8.0f} "
            f"{1000 * row['rl_greedy_s']:>13.0f} {row['ratio_greedy']:>6.2f} "
            f"{1000 * row['rl_mean_s']:>11.0f} {row['ratio_mean']:>6.2f} | "
            f"{row['cpu_ratio_greedy']:>16.2f} {row['cpu_ratio_mean']:>5.2f}"
        )
    print(f"load average: {load}")
    result = {
        "benchmark": "rl_step",
        "batch_size": BATCH_SIZE,
        "num_samples": NUM_SAMPLES,
        "caption_words": CAPTION_WORDS,
        "vocabulary_size": VOCABULARY_SIZE,
        "references_per_video": REFERENCES_PER_VIDEO,
        "timed_steps": args.steps,
        "rows": rows,
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "w") as file:
        json.dump(result, file, indent=2)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
