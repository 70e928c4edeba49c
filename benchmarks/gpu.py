"""GPU benchmark: s2vt and msvd train throughput, greedy/beam latency, float32
and mixed precision, beside the PyTorch S2VT (cuDNN) on the same device.

One command. Each (model, precision) runs in its own subprocess (its own
global dtype policy, its own peak memory). On a GPU the keras_pvc rows use
`lstm_implementation="auto"`, i.e. `keras.layers.LSTM` and cuDNN's fused
kernel on TensorFlow and torch; the torch row is `benchmarks/torch_s2vt.py`
(`torch.nn.LSTM`, cuDNN) with `torch.autocast` for the mixed rows. Where no
GPU is visible everything runs on the CPU and the JSON says
`"gpu_numbers": "still to be taken"`; `--quick` shrinks the shapes (batch 4,
8 frames, hidden 64, vocabulary 200) so that it finishes in a minute or two.

Precisions: float32, mixed_bfloat16 and, on a GPU, mixed_float16 (Keras
wraps the optimizer in a `LossScaleOptimizer`; torch uses a `GradScaler`).

Prints a table and writes `benchmarks/results/gpu.json` (device name,
backend, load, shapes, rows). Never asserts times.

    python benchmarks/gpu.py              # the seed's shapes
    python benchmarks/gpu.py --quick      # small shapes (CPU smoke run)
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# --- knobs ---
SEED_SHAPE = {"batch_size": 20, "num_frames": 80, "caption_length": 20,
              "hidden_dim": 1000, "vocabulary_size": 3000}
QUICK_SHAPE = {"batch_size": 4, "num_frames": 8, "caption_length": 8,
               "hidden_dim": 64, "vocabulary_size": 200}
WARMUP_STEPS = 2
TIMED_STEPS = 5
BEAMS = 5
SEED = 0
RESULTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu.json")


def device_name():
    """`(name, is_gpu)` of the device the Keras backend computes on."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", gpus[0].name), True
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), True
    elif backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return device.device_kind, True
    return platform.processor() or platform.machine(), False


def median_seconds(function, warmup, repeats):
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2]


def keras_child(preset, precision, shape):
    import keras
    import keras_hub
    import numpy as np

    if precision != "float32":
        keras.mixed_precision.set_global_policy(precision)
    import keras_pvc

    model = keras_pvc.from_preset(
        preset, vocabulary_size=shape["vocabulary_size"], hidden_dim=shape["hidden_dim"],
        caption_length=shape["caption_length"], num_frames=shape["num_frames"],
    )
    rng = np.random.default_rng(SEED)
    batch, frames, tokens = shape["batch_size"], shape["num_frames"], shape["caption_length"] + 1
    feature_shape = (4096,) if preset == "s2vt" else (49, 1280)
    inputs = {
        "features": rng.normal(size=(batch, frames) + feature_shape).astype("float32"),
        "frame_mask": np.ones((batch, frames), bool),
        "token_ids": rng.integers(4, shape["vocabulary_size"], (batch, tokens)).astype("int32"),
        "padding_mask": np.ones((batch, tokens), bool),
    }
    labels = rng.integers(4, shape["vocabulary_size"], (batch, tokens)).astype("int32")
    step = median_seconds(lambda: model.train_on_batch(inputs, labels), WARMUP_STEPS, TIMED_STEPS)
    one = {"features": inputs["features"][:1], "frame_mask": inputs["frame_mask"][:1]}
    latencies = {}
    for name, sampler in (("greedy", keras_hub.samplers.GreedySampler()),
                          (f"beam-{BEAMS}", keras_hub.samplers.BeamSampler(num_beams=BEAMS))):
        latencies[name] = median_seconds(
            lambda: np.asarray(model.generate_ids(one, sampler)), 1, TIMED_STEPS)
    return {
        "lstm": type(model.backbone.caption_decoder.lstm).__name__,
        "train_videos_per_second": batch / step,
        "greedy_ms_per_video": 1000 * latencies["greedy"],
        "beam_ms_per_video": 1000 * latencies[f"beam-{BEAMS}"],
    }


def torch_child(precision, shape):
    import numpy as np
    import torch

    from torch_s2vt import TorchS2VT

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(SEED)
    model = TorchS2VT(hidden_dim=shape["hidden_dim"], vocabulary_size=shape["vocabulary_size"])
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device, enabled=precision == "mixed_float16")
    rng = np.random.default_rng(SEED)
    batch, frames, tokens = shape["batch_size"], shape["num_frames"], shape["caption_length"] + 1
    features = torch.from_numpy(rng.normal(size=(batch, frames, 4096)).astype("float32")).to(device)
    token_ids = torch.from_numpy(rng.integers(4, shape["vocabulary_size"], (batch, tokens))).to(device)
    labels = torch.from_numpy(rng.integers(4, shape["vocabulary_size"], (batch, tokens))).to(device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(features, token_ids)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sync()

    step = median_seconds(train_step, WARMUP_STEPS, TIMED_STEPS)
    model.eval()

    def greedy():
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            model.greedy(features[:1], tokens)
        sync()

    return {
        "lstm": "torch.nn.LSTM" + (" (cuDNN)" if device == "cuda" else ""),
        "train_videos_per_second": batch / step,
        "greedy_ms_per_video": 1000 * median_seconds(greedy, 1, TIMED_STEPS),
        "beam_ms_per_video": None,  # the reference has no beam search
    }


def child(model, precision, quick):
    import resource

    shape = QUICK_SHAPE if quick else SEED_SHAPE
    if model == "torch_s2vt":
        row = torch_child(precision, shape)
    else:
        row = keras_child(model, precision, shape)
    row.update({"model": model, "precision": precision,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    try:
        import torch

        if torch.cuda.is_available():
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    print("RESULT " + json.dumps(row), flush=True)


def run_child(model, precision, quick):
    command = [sys.executable, os.path.abspath(__file__), "--child", model, precision]
    process = subprocess.run(
        command + (["--quick"] if quick else []), capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        print(process.stderr[-3000:])
        return {"model": model, "precision": precision, "error": process.stderr[-1000:]}
    return json.loads(lines[-1][len("RESULT "):])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (CPU smoke run)")
    parser.add_argument("--models", nargs="+", default=["s2vt", "msvd", "torch_s2vt"],
                        choices=["s2vt", "msvd", "torch_s2vt"])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
    if args.child:
        return child(*args.child, args.quick)
    import keras

    name, is_gpu = device_name()
    precisions = ["float32", "mixed_bfloat16"] + (["mixed_float16"] if is_gpu else [])
    load_before = os.getloadavg()
    rows = []
    for model in args.models:
        for precision in precisions:
            print(f"running {model} {precision} ...", flush=True)
            rows.append(run_child(model, precision, args.quick))
    load_after = os.getloadavg()
    shape = QUICK_SHAPE if args.quick else SEED_SHAPE
    print(f"\n{name} ({'GPU' if is_gpu else 'no GPU: CPU numbers'}), backend "
          f"{keras.backend.backend()}, shape {shape}; load {load_before[0]:.2f} before / "
          f"{load_after[0]:.2f} after")
    print(f"{'model':<12}{'precision':<16}{'lstm':<22}{'train videos/s':>15}"
          f"{'greedy ms':>11}{'beam ms':>9}{'peak RSS MiB':>14}")
    for row in rows:
        if "error" in row:
            print(f"{row['model']:<12}{row['precision']:<16}failed")
            continue
        beam = row["beam_ms_per_video"]
        print(f"{row['model']:<12}{row['precision']:<16}{row['lstm']:<22}"
              f"{row['train_videos_per_second']:>15.2f}{row['greedy_ms_per_video']:>11.1f}"
              f"{'-' if beam is None else f'{beam:.1f}':>9}{row['peak_rss_mib']:>14.0f}")
    if not is_gpu:
        print("No GPU visible: the GPU numbers are still to be taken (run this on one).")
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump({
            "benchmark": "gpu", "device": name, "gpu": is_gpu,
            "gpu_numbers": "taken" if is_gpu else "still to be taken",
            "backend": keras.backend.backend(), "keras_version": keras.__version__,
            "quick": args.quick, "shape": shape,
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "load_average_before": load_before, "load_average_after": load_after},
            "rows": rows,
        }, file, indent=2)
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
