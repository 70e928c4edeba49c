"""Peak memory of evaluating a feature preset on MSVD-sized val + test splits.

Writes `--clips` (default 770: MSVD's 100 val + 670 test) fake feature clips
of 80 x 49 x 1280 float16 (what `keras-pvc extract` writes for the `msvd`
preset; ~7.7 GB for 770) to a temporary folder, then does what `keras-pvc
train` does after training on them with a tiny `msvd`-shaped model (graph
and attention on, hidden 32): the validation loss over the val clips
(`features_dataset(in_memory=False)`) and greedy captions of the test clips
streamed batch by batch (`keras_pvc.training.runs.caption_split` on
`StreamedFeatures`), then scores them. Reports the process's peak resident
memory (`ru_maxrss`); the goal is under 4 GiB (loading the 770 clips as
float32, as `keras-pvc train` did before, takes ~15.5 GB for the arrays
alone). Prints a table and writes `benchmarks/results/eval_memory.json`.
Never asserts.

    python benchmarks/eval_memory.py [--clips 770] [--keep DIR]
"""

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# === Knobs ===
FRAMES, REGIONS, CHANNELS = 80, 49, 1280
VAL_SHARE = 100 / 770  # MSVD: 100 val, 670 test
BATCH_SIZE = 20  # the msvd preset's
GOAL_GIB = 4.0
TINY = {
    "hidden_dim": 32,
    "embedding_dim": 16,
    "graph": {"units": 32, "adjacency": "both", "pooling": "attention", "attention_dim": 16},
    "frame_cnn": None,
}
RESULTS = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "eval_memory.json"
)
SENTENCES = ["a man is slicing a tomato", "a dog runs on the grass", "a woman rides a horse"]


def peak_rss_gib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def current_rss_gib():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def write_clips(folder, num_clips):
    from keras_pvc.datasets.clip import Clip

    rng = np.random.default_rng(0)
    num_val = max(1, round(VAL_SHARE * num_clips))
    clips = []
    for index in range(num_clips):
        clip_id = f"clip{index:04d}"
        features = rng.standard_normal((FRAMES, REGIONS, CHANNELS), np.float32)
        np.save(os.path.join(folder, clip_id + ".npy"), features.astype(np.float16))
        split = "val" if index < num_val else "test"
        references = [SENTENCES[(index + k) % len(SENTENCES)] for k in range(2)]
        clips.append(Clip(clip_id, references, split))
    return clips


def evaluate(clips, folder):
    import keras_pvc
    from keras_pvc.datasets.features import StreamedFeatures
    from keras_pvc.datasets.features import features_dataset
    from keras_pvc.models import VideoCaptionerPreprocessor
    from keras_pvc.training.runs import caption_split
    from keras_pvc.training.runs import score_captions

    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(SENTENCES)
    model = keras_pvc.from_preset("msvd", vocabulary=vocabulary, **TINY)
    rows = {"after model build": (current_rss_gib(), peak_rss_gib(), 0.0)}
    streamed = StreamedFeatures.scan(clips, folder)
    val, test = streamed.subset("val"), streamed.subset("test")

    started = time.time()
    val_ds = features_dataset(
        val.clips, folder, model.preprocessor, BATCH_SIZE, shuffle=False,
        in_memory=False, parallel_reads=1,  # as keras_pvc.training.runs.train_run
    )
    val_loss = model.evaluate(val_ds, verbose=0, return_dict=True)["loss"]
    rows[f"validation loss, {len(val.clips)} val clips"] = (
        current_rss_gib(), peak_rss_gib(), time.time() - started
    )

    started = time.time()
    predictions = caption_split(model, test, batch_size=BATCH_SIZE)
    scores = score_captions(test.clips, predictions)["all"]
    rows[f"captions + scores, {len(test.clips)} test clips"] = (
        current_rss_gib(), peak_rss_gib(), time.time() - started
    )
    return rows, len(predictions), val_loss, scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=770)
    parser.add_argument("--keep", help="write the clips here and keep them (reused)")
    args = parser.parse_args()

    folder = args.keep or tempfile.mkdtemp(prefix="eval_memory_")
    os.makedirs(folder, exist_ok=True)
    gigabytes = args.clips * FRAMES * REGIONS * CHANNELS * 2 / 1e9
    print(f"Writing {args.clips} clips of {FRAMES}x{REGIONS}x{CHANNELS} float16 "
          f"({gigabytes:.1f} GB) to {folder}", flush=True)
    started = time.time()
    try:
        clips = write_clips(folder, args.clips)
        write_seconds = time.time() - started
        rows, num_captions, val_loss, scores = evaluate(clips, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{'stage':<40}{'RSS GiB':>10}{'peak GiB':>10}{'seconds':>10}")
    for name, (rss, peak, seconds) in rows.items():
        print(f"{name:<40}{rss:>10.2f}{peak:>10.2f}{seconds:>10.1f}")
    peak = peak_rss_gib()
    print(f"\npeak RSS {peak:.2f} GiB (goal < {GOAL_GIB} GiB): "
          f"{'met' if peak < GOAL_GIB else 'NOT met'}; float32 arrays of all "
          f"{args.clips} clips would take {gigabytes * 2 / 1.073741824:.1f} GiB")
    result = {
        "clips": args.clips,
        "feature_shape": [FRAMES, REGIONS, CHANNELS],
        "stored_gb": round(gigabytes, 2),
        "write_seconds": round(write_seconds, 1),
        "captions": num_captions,
        "val_loss": float(val_loss),
        "cider": scores.get("CIDEr"),
        "stages": {
            name: {"rss_gib": round(rss, 3), "peak_rss_gib": round(p, 3), "seconds": round(s, 1)}
            for name, (rss, p, s) in rows.items()
        },
        "peak_rss_gib": round(peak, 3),
        "goal_gib": GOAL_GIB,
        "met": peak < GOAL_GIB,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result, indent=1))
    print(f"Wrote {RESULTS}")


if __name__ == "__main__":
    main()
