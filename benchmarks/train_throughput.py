"""Training throughput (videos/s) and peak memory: keras_pvc vs PyTorch S2VT.

The seed shape: batch 20, 80 frames, captions of 20 (21 input tokens),
hidden 1000, vocabulary 3000, random data, all frames real. Every
configuration runs in its own subprocess, so its peak RSS
(`resource.getrusage(...).ru_maxrss`) is its own: warm-up steps first (the
first traces the graph), then timed steps; the median step gives videos/s.

Configurations (`--configs`, default all):
- `s2vt`, `msvd`: the presets as they are (FastLSTM encoder and decoder).
- `s2vt_keras_lstm`, `msvd_keras_lstm`: the same with `keras.layers.LSTM`
  put back (this script swaps the class in before building; same weights
  layout, same numbers, only the loop differs).
- `msvd_plain_graph`: `msvd` with the spatial graph's plain per-sublayer
  projections (`fused_projection=False`, the graph before issue 19): the
  ratio `msvd / msvd_plain_graph` is what the fused graph buys.
- `msvd_node_residual`: `msvd` with the fused projections but the residual
  projected at every node (`pooled_residual=False`, the graph of the first
  half of issue 19): `msvd / msvd_node_residual` is what projecting the
  residual after the pooling buys.
- `msvd_graph_bfloat16`: `msvd` with the spatial graph alone under the
  `mixed_bfloat16` dtype policy (`graph={..., "dtype": "mixed_bfloat16"}`:
  bfloat16 matmuls, float32 weights; the recurrences stay float32).
- `msvd_mixed_bfloat16`: `msvd` under `keras.mixed_precision` policy
  `mixed_bfloat16` (bfloat16 compute, float32 weights).
- `torch_s2vt`: `benchmarks/torch_s2vt.TorchS2VT`, the same network as `s2vt`.
- `torch_s2vt_original`: Venugopalan et al.'s stacked 80+21-step layout,
  which also runs both LSTMs over inputs known to be zero (the frame LSTM
  over the word steps, the word LSTM's word half over the frame steps). The
  encoder-decoder layout (ours, `torch_s2vt`) never computes that work.

`--rounds R` runs the configurations round-robin R times (each run a fresh
subprocess) so that a change of machine load hits every configuration alike;
the table gives the median over rounds, and each ratio is the median of the
per-round ratios (paired within a round). On a shared machine use R >= 3.

`gemm_floor` (on by default with `s2vt` or `torch_s2vt`; `--no-gemm-floor`
to skip) times, in TensorFlow, every matrix multiply one `s2vt` training step
must do (forward and backward, at their own shapes; `s2vt_gemms`) and adds
them up: a floor no framework's step can go under on this CPU with these
kernels, so `step / floor` says how much of a step is anything but matmuls.

Prints a table and writes `benchmarks/results/train_throughput.json`. Never
asserts times. Needs `torch` for the torch rows (`pip install torch`, the
`bench` extra); they are skipped without it.

    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --configs s2vt torch_s2vt --msvd-frames 20
    python benchmarks/train_throughput.py --configs s2vt torch_s2vt --rounds 3
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# --- knobs ---
BATCH_SIZE = 20
NUM_FRAMES = 80
CAPTION_LENGTH = 20  # + <bos>/<eos>: 21 input tokens and 21 labels
HIDDEN_DIM = 1000
VOCABULARY_SIZE = 3000
WARMUP_STEPS = 2
TIMED_STEPS = 5
SEED = 0
CONFIGS = (
    "s2vt",
    "s2vt_keras_lstm",
    "torch_s2vt",
    "torch_s2vt_original",
    "msvd",
    "msvd_keras_lstm",
    "msvd_plain_graph",
    "msvd_node_residual",
    "msvd_graph_bfloat16",
    "msvd_mixed_bfloat16",
)
# Config suffix -> the graph knobs it changes in the preset's graph.
GRAPH_VARIANTS = {
    "_plain_graph": {"fused_projection": False},
    "_node_residual": {"pooled_residual": False},
    "_graph_bfloat16": {"dtype": "mixed_bfloat16"},
}
RESULTS_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "train_throughput.json"
)


def random_batch(rng, feature_shape, num_frames):
    tokens = CAPTION_LENGTH + 1
    features = rng.normal(size=(BATCH_SIZE, num_frames) + feature_shape).astype("float32")
    token_ids = rng.integers(4, VOCABULARY_SIZE, (BATCH_SIZE, tokens)).astype("int32")
    token_ids[:, 0] = 2  # <bos>
    labels = rng.integers(4, VOCABULARY_SIZE, (BATCH_SIZE, tokens)).astype("int32")
    padding_mask = rng.random((BATCH_SIZE, tokens)) < 0.8
    padding_mask[:, 0] = True
    return features, token_ids, labels, padding_mask


FEATURE_DIM = 4096  # the seed's VGG16 fc7 features


def s2vt_gemms():
    """`(what, M, K, N, count)` for every matmul of one `s2vt` training step.

    Forward `(M, K) x (K, N)`; the backward of `y = x @ w` is `dw = x^T @ dy`
    `(K, M) x (M, N)` and, where `x` needs a gradient, `dx = dy @ w^T`
    `(M, N) x (N, K)`. The recurrent kernels' gradients are one matmul over
    all timesteps (as FastLSTM and PyTorch take them); the per-step matmuls
    of the recurrence run once per step forward and once backward.
    """
    from keras_pvc.presets import preset_config

    embedding_dim = preset_config("s2vt")["embedding_dim"]
    frames = BATCH_SIZE * NUM_FRAMES
    words = BATCH_SIZE * (CAPTION_LENGTH + 1)
    hidden, gates = HIDDEN_DIM, 4 * HIDDEN_DIM
    rows = []

    def dense(what, m, k, n, input_gradient=True):
        rows.append((f"{what} forward", m, k, n, 1))
        rows.append((f"{what} kernel gradient", k, m, n, 1))
        if input_gradient:
            rows.append((f"{what} input gradient", m, n, k, 1))

    dense(f"frame projection {FEATURE_DIM}->{hidden}", frames, FEATURE_DIM, hidden,
          input_gradient=False)
    dense("encoder LSTM input projection", frames, hidden, gates)
    dense("decoder LSTM input projection", words, embedding_dim, gates)
    for what, steps, rows_total in (
        ("encoder", NUM_FRAMES, frames),
        ("decoder", CAPTION_LENGTH + 1, words),
    ):
        rows.append((f"{what} recurrence h @ U (per step)", BATCH_SIZE, hidden, gates, steps))
        rows.append((f"{what} recurrence dz @ U^T (per step)", BATCH_SIZE, gates, hidden, steps))
        rows.append((f"{what} recurrent kernel gradient", hidden, rows_total, gates, 1))
    dense(f"output layer {hidden}->{VOCABULARY_SIZE}", words, hidden, VOCABULARY_SIZE)
    return rows


def run_gemm_floor():
    """Times each matmul of `s2vt_gemms` in TensorFlow; returns the sum."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    total, parts, flops = 0.0, [], 0
    for what, m, k, n, count in s2vt_gemms():
        a = tf.constant(rng.normal(size=(m, k)).astype("float32"))
        b = tf.constant(rng.normal(size=(k, n)).astype("float32"))

        @tf.function
        def repeated(a=a, b=b, count=count):
            # `count` dependent-free matmuls in one graph call (the
            # recurrence's per-step products), summed so none is pruned.
            out = tf.zeros((a.shape[0], b.shape[1]))
            for _ in tf.range(count):
                out += tf.matmul(a, b)
            return out

        repeated().numpy()
        seconds = []
        for _ in range(7):
            start = time.perf_counter()
            repeated().numpy()
            seconds.append(time.perf_counter() - start)
        median = float(np.median(seconds))
        total += median
        flops += 2 * m * k * n * count
        parts.append({"what": what, "shape": [m, k, n], "count": count, "seconds": median})
    details = {
        "lstm": "(matmuls only)",
        "num_frames": NUM_FRAMES,
        "parameters": 0,
        "gemms": parts,
        "gflop_per_step": flops / 1e9,
    }
    return details, [total]


def use_keras_lstm():
    """Puts `keras.layers.LSTM` back where the layers now build `FastLSTM`."""
    import keras

    from keras_pvc.layers import caption_decoder
    from keras_pvc.layers import temporal_lstm_encoder

    def keras_lstm(units, implementation=None, **kwargs):
        return keras.layers.LSTM(units, **kwargs)

    caption_decoder.lstm_layer = keras_lstm
    temporal_lstm_encoder.lstm_layer = keras_lstm


def time_steps(step):
    for _ in range(WARMUP_STEPS):
        step()
    seconds = []
    for _ in range(TIMED_STEPS):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def run_keras(config, msvd_frames):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
    import numpy as np

    import keras_pvc

    preset = config.split("_")[0]
    if config.endswith("_keras_lstm"):
        use_keras_lstm()
    overrides = {}
    for suffix, knobs in GRAPH_VARIANTS.items():
        if config.endswith(suffix):
            from keras_pvc.presets import preset_config

            overrides["graph"] = {**preset_config(preset)["graph"], **knobs}
    if config.endswith("_mixed_bfloat16"):
        import keras

        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    num_frames = msvd_frames if preset == "msvd" else NUM_FRAMES
    feature_shape = (FEATURE_DIM,) if preset == "s2vt" else (49, 1280)
    model = keras_pvc.from_preset(
        preset,
        vocabulary_size=VOCABULARY_SIZE,
        hidden_dim=HIDDEN_DIM,
        caption_length=CAPTION_LENGTH,
        num_frames=num_frames,
        **overrides,
    )
    lstm_class = type(model.backbone.caption_decoder.lstm).__name__
    rng = np.random.default_rng(SEED)
    features, token_ids, labels, padding_mask = random_batch(rng, feature_shape, num_frames)
    inputs = {
        "features": features,
        "frame_mask": np.ones((BATCH_SIZE, num_frames), bool),
        "token_ids": token_ids,
        "padding_mask": padding_mask,
    }

    def step():
        model.train_on_batch(inputs, labels, sample_weight=padding_mask.astype("float32"))

    seconds = time_steps(step)
    return {"lstm": lstm_class, "num_frames": num_frames, "parameters": model.count_params()}, seconds


def run_torch(config, threads=None):
    import numpy as np
    import torch

    from torch_s2vt import TorchS2VT
    from torch_s2vt import TorchS2VTOriginal
    from torch_s2vt import train_step_function

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(SEED)
    model_class = TorchS2VTOriginal if config.endswith("original") else TorchS2VT
    model = model_class(hidden_dim=HIDDEN_DIM, vocabulary_size=VOCABULARY_SIZE)
    model.train()
    train_step = train_step_function(model)
    rng = np.random.default_rng(SEED)
    features, token_ids, labels, padding_mask = (
        torch.from_numpy(x) for x in random_batch(rng, (FEATURE_DIM,), NUM_FRAMES)
    )
    token_ids, labels = token_ids.long(), labels.long()

    def step():
        train_step(features, token_ids, labels, padding_mask)

    seconds = time_steps(step)
    details = {
        "lstm": "torch.nn.LSTM",
        "num_frames": NUM_FRAMES,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    return details, seconds


def child(config, msvd_frames, torch_threads=None):
    import resource

    import numpy as np

    if config == "gemm_floor":
        details, seconds = run_gemm_floor()
    elif config.startswith("torch"):
        details, seconds = run_torch(config, torch_threads)
    else:
        details, seconds = run_keras(config, msvd_frames)
    median = float(np.median(seconds))
    result = {
        "config": config,
        **details,
        "batch_size": BATCH_SIZE,
        "step_seconds": seconds,
        "median_step_seconds": median,
        "videos_per_second": BATCH_SIZE / median,
        # Linux reports kilobytes.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(config, args):
    """Runs one configuration in a fresh subprocess; returns its row."""
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", config,
         "--msvd-frames", str(args.msvd_frames),
         "--torch-threads", str(args.torch_threads),
         "--timed-steps", str(args.timed_steps)],
        capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        cwd=os.path.dirname(os.path.abspath(__file__)),
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        print(process.stdout[-2000:], process.stderr[-4000:])
        return {"config": config, "error": process.stderr[-1000:]}
    return json.loads(lines[-1][len("RESULT "):])


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument(
        "--msvd-frames", type=int, default=NUM_FRAMES,
        help="frames for the msvd rows (smaller runs faster; 80 is the seed)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=0,
        help="torch.set_num_threads for the torch rows (default 0: torch's own)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="run the configurations round-robin this many times (paired ratios)",
    )
    parser.add_argument(
        "--no-gemm-floor", action="store_true",
        help="skip timing the s2vt step's matmuls alone (the gemm_floor row)",
    )
    parser.add_argument(
        "--timed-steps", type=int, default=TIMED_STEPS,
        help=f"timed steps per configuration, after {WARMUP_STEPS} warm-up (median)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    globals()["TIMED_STEPS"] = args.timed_steps  # read by time_steps in the child
    if args.child:
        return child(args.child, args.msvd_frames, args.torch_threads)

    has_torch = torch_available()
    configs = []
    for config in args.configs:
        if config.startswith("torch") and not has_torch:
            print(f"skipping {config}: torch is not installed (pip install torch)")
            continue
        configs.append(config)
    if not args.no_gemm_floor and {"s2vt", "torch_s2vt"} & set(configs):
        configs.append("gemm_floor")
    rounds = []  # one {config: row} per round
    load_before = os.getloadavg()
    for round_index in range(args.rounds):
        results = {}
        for config in configs:
            print(f"round {round_index + 1}/{args.rounds}: running {config} ...", flush=True)
            results[config] = run_child(config, args)
        rounds.append(results)
    load_after = os.getloadavg()

    rows = []
    for config in configs:
        runs = [results[config] for results in rounds]
        good = [run for run in runs if "error" not in run]
        if not good:
            rows.append(runs[-1])
            continue
        medians = [run["median_step_seconds"] for run in good]
        row = dict(good[0])
        row.update(
            {
                "rounds": len(good),
                "round_median_step_seconds": medians,
                "median_step_seconds": float(statistics.median(medians)),
                "videos_per_second": BATCH_SIZE / float(statistics.median(medians)),
                "peak_rss_mib": max(run["peak_rss_mib"] for run in good),
            }
        )
        rows.append(row)

    ratios, round_ratios = {}, {}
    for ours, theirs in [
        ("s2vt", "torch_s2vt"), ("s2vt_keras_lstm", "torch_s2vt"),
        ("s2vt", "torch_s2vt_original"), ("s2vt", "s2vt_keras_lstm"),
        ("msvd", "msvd_keras_lstm"), ("msvd", "msvd_plain_graph"),
        ("msvd", "msvd_node_residual"), ("msvd_node_residual", "msvd_plain_graph"),
        ("msvd_graph_bfloat16", "msvd"), ("msvd_graph_bfloat16", "msvd_plain_graph"),
        ("msvd_mixed_bfloat16", "msvd"), ("msvd_mixed_bfloat16", "msvd_plain_graph"),
        ("gemm_floor", "s2vt"), ("gemm_floor", "torch_s2vt"),
    ]:
        paired = [
            results[ours]["videos_per_second"] / results[theirs]["videos_per_second"]
            for results in rounds
            if ours in results and theirs in results
            and "error" not in results[ours] and "error" not in results[theirs]
        ]
        if paired:
            round_ratios[f"{ours} / {theirs}"] = paired
            ratios[f"{ours} / {theirs}"] = float(statistics.median(paired))

    print(
        f"\ntrain throughput: batch {BATCH_SIZE}, {NUM_FRAMES} frames (msvd: "
        f"{args.msvd_frames}), captions {CAPTION_LENGTH}+1, hidden {HIDDEN_DIM}, vocab "
        f"{VOCABULARY_SIZE}; {WARMUP_STEPS} warm-up + {TIMED_STEPS} timed steps, {args.rounds} "
        f"round(s); {os.cpu_count()} CPUs, load {load_before[0]:.2f} before / {load_after[0]:.2f} after"
    )
    print(f"{'config':<22}{'lstm':<22}{'frames':>7}{'step s':>9}{'videos/s':>10}{'peak RSS MiB':>14}")
    for row in rows:
        if "error" in row:
            print(f"{row['config']:<22}failed")
            continue
        print(
            f"{row['config']:<22}{row['lstm']:<22}{row['num_frames']:>7}"
            f"{row['median_step_seconds']:>9.2f}{row['videos_per_second']:>10.2f}"
            f"{row['peak_rss_mib']:>14.0f}"
        )
    for name, ratio in ratios.items():
        per_round = ", ".join(f"{value:.2f}" for value in round_ratios[name])
        if name.startswith("gemm_floor / "):
            # videos/s ratio floor/step = step seconds / floor seconds.
            name = f"{name.split(' / ')[1]} step / its matmuls alone"
        print(f"ratio {name}: {ratio:.2f}x (per round: {per_round})")
    floor = next((row for row in rows if row["config"] == "gemm_floor" and "error" not in row), None)
    if floor:
        print(
            f"gemm_floor: the s2vt step's {floor['gflop_per_step']:.0f} GFLOP of matmuls take "
            f"{floor['median_step_seconds']:.2f} s on their own "
            f"({floor['gflop_per_step'] / floor['median_step_seconds']:.0f} GFLOPS); slowest:"
        )
        for part in sorted(floor["gemms"], key=lambda p: -p["seconds"])[:4]:
            print(f"  {part['what']:<42}{str(tuple(part['shape'])) + ' x' + str(part['count']):>26}"
                  f"{part['seconds']:>8.3f} s")

    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump(
            {
                "benchmark": "train_throughput",
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor(),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "shape": {
                    "batch_size": BATCH_SIZE, "num_frames": NUM_FRAMES,
                    "msvd_frames": args.msvd_frames, "caption_tokens": CAPTION_LENGTH + 1,
                    "hidden_dim": HIDDEN_DIM, "vocabulary_size": VOCABULARY_SIZE,
                },
                "warmup_steps": WARMUP_STEPS,
                "timed_steps": TIMED_STEPS,
                "rounds": args.rounds,
                "rows": rows,
                "ratios": ratios,
                "round_ratios": round_ratios,
                "note": (
                    "Encoder-decoder layout: the encoder LSTM never reads zero words and "
                    "the decoder never reads zero frames, unlike the original S2VT "
                    "(torch_s2vt_original), so that work is skipped by construction."
                ),
            },
            file,
            indent=2,
        )
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
