"""Caption decoding speed: greedy and beam-5 latency per video, batch throughput.

For the `s2vt` and `msvd` presets at the seed shape (80 frames, hidden 1000,
vocabulary 3000, 21 words decoded; random weights and features, so no
caption stops early at `<eos>` and every sampler runs all 21 steps):
latency of `model.generate_ids` for one video (greedy, beam 5), and videos/s
for a batch of 20 (greedy), against the PyTorch S2VT greedy loop
(`benchmarks/torch_s2vt.py`, one Python iteration per word) in the same run.

`generate_ids` runs the keras_hub sampler inside a `tf.function`: the words
are a `tf.while_loop` in the graph. The script checks that no Python runs per
word: after the first (tracing) call, `CaptionDecoder.step` is never called
from Python again (`python_step_calls_after_trace` must be 0).

Prints a table and writes `benchmarks/results/decode_latency.json`. Never
asserts times.

    python benchmarks/decode_latency.py
    python benchmarks/decode_latency.py --presets s2vt --msvd-frames 20
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

# --- knobs ---
NUM_FRAMES = 80
HIDDEN_DIM = 1000
VOCABULARY_SIZE = 3000
CAPTION_LENGTH = 20  # generate_ids decodes caption_length + 1 words
BATCH_SIZE = 20
REPEATS = 5
SEED = 0
RESULTS_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "decode_latency.json"
)


def median_seconds(function, repeats=REPEATS):
    function()  # trace / warm up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def keras_rows(preset, num_frames):
    import keras_hub

    import keras_pvc

    model = keras_pvc.from_preset(
        preset,
        vocabulary_size=VOCABULARY_SIZE,
        hidden_dim=HIDDEN_DIM,
        caption_length=CAPTION_LENGTH,
        num_frames=num_frames,
    )
    feature_shape = (4096,) if preset == "s2vt" else (49, 1280)
    rng = np.random.default_rng(SEED)
    features = rng.normal(size=(BATCH_SIZE, num_frames) + feature_shape).astype("float32")
    frame_mask = np.ones((BATCH_SIZE, num_frames), bool)

    # Count Python calls of the decoder's step: only tracing may call it.
    decoder = model.backbone.caption_decoder
    calls = {"n": 0}
    step = decoder.step

    def counting_step(*args, **kwargs):
        calls["n"] += 1
        return step(*args, **kwargs)

    decoder.step = counting_step

    greedy = keras_hub.samplers.GreedySampler()
    beam = keras_hub.samplers.BeamSampler(num_beams=5)
    one = {"features": features[:1], "frame_mask": frame_mask[:1]}
    batch = {"features": features, "frame_mask": frame_mask}

    def run(inputs, sampler):
        return lambda: np.asarray(model.generate_ids(inputs, sampler))

    rows = []
    for name, sampler, inputs in [
        ("greedy", greedy, one),
        ("beam-5", beam, one),
        ("greedy", greedy, batch),
    ]:
        run(inputs, sampler)()  # trace
        traced_calls = calls["n"]
        seconds = median_seconds(run(inputs, sampler))
        size = len(inputs["features"])
        rows.append(
            {
                "model": f"keras_pvc {preset}",
                "sampler": name,
                "batch_size": size,
                "num_frames": num_frames,
                "median_seconds": seconds,
                "ms_per_video": 1000 * seconds / size,
                "videos_per_second": size / seconds,
                "words": CAPTION_LENGTH + 1,
                "python_step_calls_after_trace": calls["n"] - traced_calls,
            }
        )
    return rows


def torch_rows(threads=None):
    import torch

    from torch_s2vt import TorchS2VT

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model = TorchS2VT(hidden_dim=HIDDEN_DIM, vocabulary_size=VOCABULARY_SIZE).eval()
    rng = np.random.default_rng(SEED)
    features = torch.from_numpy(
        rng.normal(size=(BATCH_SIZE, NUM_FRAMES, 4096)).astype("float32")
    )
    rows = []
    for size in (1, BATCH_SIZE):
        seconds = median_seconds(lambda: model.greedy(features[:size], CAPTION_LENGTH + 1))
        rows.append(
            {
                "model": "torch S2VT",
                "torch_threads": torch.get_num_threads(),
                "sampler": "greedy",
                "batch_size": size,
                "num_frames": NUM_FRAMES,
                "median_seconds": seconds,
                "ms_per_video": 1000 * seconds / size,
                "videos_per_second": size / seconds,
                "words": CAPTION_LENGTH + 1,
                "python_step_calls_after_trace": None,
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["s2vt", "msvd"], choices=["s2vt", "msvd"])
    parser.add_argument("--msvd-frames", type=int, default=NUM_FRAMES)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--torch-threads", type=int, default=None,
        help="torch.set_num_threads for the torch rows (default: torch's own)",
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for preset in args.presets:
        print(f"running {preset} ...", flush=True)
        rows += keras_rows(preset, args.msvd_frames if preset == "msvd" else NUM_FRAMES)
    if not args.no_torch:
        try:
            rows += torch_rows(args.torch_threads)
        except ImportError:
            print("skipping torch: not installed (pip install torch)")
    load_after = os.getloadavg()

    print(
        f"\ndecoding {CAPTION_LENGTH + 1} words, hidden {HIDDEN_DIM}, vocab {VOCABULARY_SIZE}; "
        f"median of {REPEATS}; {os.cpu_count()} CPUs, load {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after"
    )
    print(f"{'model':<20}{'sampler':<9}{'batch':>6}{'frames':>7}{'ms/video':>10}"
          f"{'videos/s':>10}{'py steps':>9}")
    for row in rows:
        python_steps = row["python_step_calls_after_trace"]
        print(
            f"{row['model']:<20}{row['sampler']:<9}{row['batch_size']:>6}{row['num_frames']:>7}"
            f"{row['ms_per_video']:>10.1f}{row['videos_per_second']:>10.2f}"
            f"{'-' if python_steps is None else python_steps:>9}"
        )
    ratios = {}
    lookup = {(r["model"], r["sampler"], r["batch_size"]): r for r in rows}
    for size in (1, BATCH_SIZE):
        ours = lookup.get(("keras_pvc s2vt", "greedy", size))
        theirs = lookup.get(("torch S2VT", "greedy", size))
        if ours and theirs:
            ratios[f"s2vt greedy batch {size}: torch seconds / keras_pvc seconds"] = (
                theirs["median_seconds"] / ours["median_seconds"]
            )
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")

    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump(
            {
                "benchmark": "decode_latency",
                "machine": {
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "repeats": REPEATS,
                "rows": rows,
                "ratios": ratios,
            },
            file,
            indent=2,
        )
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
