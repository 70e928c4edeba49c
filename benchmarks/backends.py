"""`s2vt` on each Keras backend side by side: train step and greedy decoding.

At the seed's shape (batch 20, 80 frames of 4096-d features, captions of 20,
hidden 1000, vocabulary 3000; random weights and inputs), each backend in
its own subprocess (`KERAS_BACKEND=tensorflow|jax|torch`), beside the
PyTorch S2VT reference (`benchmarks/torch_s2vt.py`) in the same run:

- train: `model.train_on_batch`, median of the timed steps after warm-up
  (`train_throughput.run_keras`, the same code as `train_throughput.py`);
- greedy: `model.generate_ids` latency for one video and per video in a
  batch of 20 (`decode_latency.keras_rows`), 21 words.

Prints a table and writes `benchmarks/results/backends.json` (machine,
load, versions). Never asserts times.

    python benchmarks/backends.py
    python benchmarks/backends.py --backends tensorflow jax
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "jax", "torch")
RESULTS_PATH = os.path.join(HERE, "results", "backends.json")


def child(backend):
    """Measures one backend (`reference` = the PyTorch S2VT); prints RESULT json."""
    import numpy as np

    import decode_latency
    import train_throughput

    if backend == "reference":
        details, seconds = train_throughput.run_torch("torch_s2vt")
        decode = decode_latency.torch_rows()
        versions = {"torch": details["torch_version"]}
    else:
        import keras

        details, seconds = train_throughput.run_keras("s2vt", train_throughput.NUM_FRAMES)
        decode = decode_latency.keras_rows("s2vt", decode_latency.NUM_FRAMES)
        versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    greedy = {row["batch_size"]: row for row in decode if row["sampler"] == "greedy"}
    result = {
        "backend": backend,
        "versions": versions,
        "train_step_seconds": float(np.median(seconds)),
        "train_videos_per_second": train_throughput.BATCH_SIZE / float(np.median(seconds)),
        "greedy_ms_batch_1": greedy[1]["ms_per_video"],
        "greedy_ms_per_video_batch_20": greedy[decode_latency.BATCH_SIZE]["ms_per_video"],
        "python_step_calls_after_trace": greedy[1]["python_step_calls_after_trace"],
        "decode_rows": decode,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(backend):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
    environment["KERAS_BACKEND"] = "tensorflow" if backend == "reference" else backend
    started = time.time()
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", backend],
        capture_output=True, text=True, env=environment, cwd=HERE,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        print(process.stdout[-2000:], process.stderr[-4000:])
        return {"backend": backend, "error": process.stderr[-1000:]}
    row = json.loads(lines[-1][len("RESULT "):])
    row["wall_seconds"] = round(time.time() - started, 1)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch S2VT")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    load_before = os.getloadavg()
    names = list(args.backends) + ([] if args.no_reference else ["reference"])
    rows = []
    for name in names:
        print(f"running {name} ...", flush=True)
        rows.append(run_child(name))
    load_after = os.getloadavg()

    print(f"\ns2vt at the seed's shape; {os.cpu_count()} CPUs, load "
          f"{load_before[0]:.2f} before / {load_after[0]:.2f} after")
    print(f"{'backend':<22}{'train s/step':>13}{'videos/s':>10}"
          f"{'greedy ms (b=1)':>17}{'greedy ms/video (b=20)':>24}")
    for row in rows:
        label = "PyTorch S2VT (torch)" if row["backend"] == "reference" else row["backend"]
        if "error" in row:
            print(f"{label:<22}  failed: {row['error'][-200:]}")
            continue
        print(
            f"{label:<22}{row['train_step_seconds']:>13.2f}{row['train_videos_per_second']:>10.2f}"
            f"{row['greedy_ms_batch_1']:>17.1f}{row['greedy_ms_per_video_batch_20']:>24.1f}"
        )
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as handle:
        json.dump(
            {
                "benchmark": "backends",
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": {
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "rows": rows,
            },
            handle,
            indent=2,
        )
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
