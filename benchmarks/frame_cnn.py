"""Frames per second of the frame CNN (EfficientNet-Lite0, no top) on this machine.

Run: python benchmarks/frame_cnn.py
Prints a table and writes benchmarks/results/frame_cnn.json. Never asserts.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import platform
import time

import keras
import numpy as np

from keras_pvc.backbones import efficientnet_lite0

# --- knobs ---------------------------------------------------------------------
IMAGE_SIZES = (224, 112)
BATCH_SIZE = 32
WARMUP_BATCHES = 2
TIMED_BATCHES = 5
WEIGHTS = None  # the weights do not change the speed; "imagenet" needs the package
RESULTS_PATH = os.path.join(os.path.dirname(__file__), "results", "frame_cnn.json")


def time_model(image_size):
    model = efficientnet_lite0(
        weights=WEIGHTS, include_top=False, input_shape=(image_size, image_size, 3)
    )
    pixels = np.random.default_rng(0).uniform(
        0, 255, (BATCH_SIZE, image_size, image_size, 3)
    ).astype("float32")
    for _ in range(WARMUP_BATCHES):
        model.predict_on_batch(pixels)
    seconds = []
    for _ in range(TIMED_BATCHES):
        start = time.perf_counter()
        grid = model.predict_on_batch(pixels)
        seconds.append(time.perf_counter() - start)
    median = float(np.median(seconds))
    return {
        "model": "efficientnet_lite0",
        "include_top": False,
        "image_size": image_size,
        "batch_size": BATCH_SIZE,
        "output_shape": list(grid.shape[1:]),
        "median_batch_seconds": median,
        "frames_per_second": BATCH_SIZE / median,
        "timed_batches": TIMED_BATCHES,
    }


def main():
    rows = [time_model(size) for size in IMAGE_SIZES]
    print(f"\nefficientnet_lite0 (include_top=False), backend {keras.backend.backend()}, "
          f"batch {BATCH_SIZE}, {os.cpu_count()} CPUs")
    print(f"{'input':>9} | {'grid':>12} | {'s/batch':>8} | {'frames/s':>9}")
    print("-" * 47)
    for row in rows:
        size = row["image_size"]
        grid = "x".join(str(d) for d in row["output_shape"])
        print(f"{size:>4}x{size:<4} | {grid:>12} | {row['median_batch_seconds']:8.3f} | "
              f"{row['frames_per_second']:9.1f}")
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump(
            {
                "benchmark": "frame_cnn",
                "backend": keras.backend.backend(),
                "keras": keras.__version__,
                "machine": platform.machine(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "results": rows,
            },
            file,
            indent=2,
        )
    print(f"\nwrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
