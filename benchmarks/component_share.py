"""Where a training step's time goes: frame CNN, graph, encoder, decoder, loss.

Method: each component of the preset's own (built) model is timed *in
isolation* at the shapes it sees in a training step, forward + backward
(`tf.GradientTape` inside a `tf.function`, gradients for its trainable
weights and for the inputs a gradient flows into in the full model: the
decoder's encoder states, the loss's logits; not the input features, which
are data). The optimizer update (Adam over every trainable weight) is timed
the same way. A whole `train_on_batch` step is timed too; the remainder
(step - sum of parts) is what the parts' isolation misses (Keras' step
bookkeeping, metrics, fusion across component boundaries); it can be
negative because the isolated runs also pay their own call overhead.

The `msvd` preset trains on cached region features, so its frame CNN
(EfficientNet-Lite0, frozen: forward only) is not in the step; its row
is the forward cost if frames were the input instead, measured on
`CNN_FRAMES` frames and scaled linearly to batch x frames, and shown apart
from the shares.

Prints a table and writes `benchmarks/results/component_share.json`. Never
asserts times.

    python benchmarks/component_share.py
    python benchmarks/component_share.py --presets s2vt --msvd-frames 20
    python benchmarks/component_share.py --presets msvd --plain-graph  # the graph before issue 19
    python benchmarks/component_share.py --presets msvd --node-residual  # residual at every node
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_pvc
from keras_pvc.presets import preset_config

# --- knobs ---
BATCH_SIZE = 20
NUM_FRAMES = 80
CAPTION_LENGTH = 20  # 21 input tokens
HIDDEN_DIM = 1000
VOCABULARY_SIZE = 3000
CNN_FRAMES = 16
REPEATS = 3
SEED = 0
RESULTS_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "results", "component_share.json"
)


def median_seconds(function, repeats=REPEATS):
    function()  # trace
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, function())
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def forward_backward(forward, variables, inputs):
    """A tf.function: gradients of sum(outputs * noise) for variables+inputs."""

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = tf.nest.flatten(forward())
            loss = tf.add_n(
                [tf.reduce_sum(o * tf.random.normal(tf.shape(o))) for o in outputs]
            )
        return tape.gradient(loss, list(variables) + list(inputs))

    return run


def frame_cnn_seconds(backbone):
    frame_cnn = keras_pvc.layers.FrameCNN(
        backbone=backbone.frame_cnn.backbone, output=backbone.frame_cnn.output_mode,
        backbone_weights=None,  # weights do not change the speed
    )
    frames = tf.random.uniform((1, CNN_FRAMES, 224, 224, 3), 0, 255)
    run = tf.function(lambda: frame_cnn(frames, training=False))
    return median_seconds(run) * BATCH_SIZE * NUM_FRAMES / CNN_FRAMES


def measure(preset, num_frames, plain_graph=False, node_residual=False):
    overrides = {}
    graph = preset_config(preset)["graph"]
    if plain_graph and graph:
        # The graph before issue 19: per-sublayer projections.
        overrides["graph"] = {**graph, "fused_projection": False}
    elif node_residual and graph:
        # Fused projections, the residual projected at every node.
        overrides["graph"] = {**graph, "pooled_residual": False}
    model = keras_pvc.from_preset(
        preset, vocabulary_size=VOCABULARY_SIZE, hidden_dim=HIDDEN_DIM,
        caption_length=CAPTION_LENGTH, num_frames=num_frames, **overrides,
    )
    backbone = model.backbone
    rng = np.random.default_rng(SEED)
    feature_shape = (4096,) if preset == "s2vt" else (49, 1280)
    features = tf.constant(
        rng.normal(size=(BATCH_SIZE, num_frames) + feature_shape).astype("float32")
    )
    frame_mask = tf.ones((BATCH_SIZE, num_frames), tf.bool)
    tokens = CAPTION_LENGTH + 1
    token_ids = tf.constant(rng.integers(2, VOCABULARY_SIZE, (BATCH_SIZE, tokens)), tf.int32)
    labels = tf.constant(rng.integers(4, VOCABULARY_SIZE, (BATCH_SIZE, tokens)), tf.int32)
    padding_mask = tf.ones((BATCH_SIZE, tokens), tf.bool)

    # The tensors each component sees, from one forward pass.
    graph_output = backbone._frame_features(
        backbone._regions(features, backbone.input_kind), training=True
    )
    sequence, hidden, cell = backbone.temporal_encoder(graph_output, frame_mask, training=True)
    logits = backbone.caption_decoder(
        token_ids, sequence, frame_mask, initial_state=(hidden, cell), training=True
    )
    loss_fn = model.loss
    rows = []

    if backbone.spatial_graph is not None:
        graph = backbone.spatial_graph
        rows.append(("spatial graph", forward_backward(
            lambda: graph(features, training=True), graph.trainable_weights, [])))
    encoder = backbone.temporal_encoder
    encoder_input = tf.constant(graph_output)
    rows.append(("temporal encoder", forward_backward(
        lambda: encoder(encoder_input, frame_mask, training=True),
        encoder.trainable_weights,
        [encoder_input] if backbone.spatial_graph is not None else [],
    )))
    decoder = backbone.caption_decoder
    states = [tf.constant(x) for x in (sequence, hidden, cell)]
    rows.append(("caption decoder", forward_backward(
        lambda: decoder(token_ids, states[0], frame_mask,
                        initial_state=(states[1], states[2]), training=True),
        decoder.trainable_weights, states,
    )))
    logits = tf.constant(logits)
    weights = tf.cast(padding_mask, "float32")
    rows.append(("loss", forward_backward(
        lambda: loss_fn(labels, logits, sample_weight=weights), [], [logits])))

    variables = model.trainable_variables
    model.optimizer.build(variables)
    gradients = [tf.random.normal(v.shape) * 1e-3 for v in variables]

    @tf.function
    def optimizer_step():
        model.optimizer.apply(gradients, variables)
        return tf.constant(0)

    rows.append(("optimizer (Adam)", optimizer_step))

    timed = [(name, median_seconds(run)) for name, run in rows]
    inputs = {"features": features, "frame_mask": frame_mask,
              "token_ids": token_ids, "padding_mask": padding_mask}
    step_seconds = median_seconds(
        lambda: model.train_on_batch(inputs, labels, sample_weight=weights)
    )
    cnn_seconds = None
    if backbone.frame_cnn is not None:
        cnn_seconds = frame_cnn_seconds(backbone)
    return timed, step_seconds, cnn_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["s2vt", "msvd"], choices=["s2vt", "msvd"])
    parser.add_argument("--msvd-frames", type=int, default=NUM_FRAMES)
    parser.add_argument(
        "--plain-graph", action="store_true",
        help="the spatial graph's plain per-sublayer projections (fused_projection=False)",
    )
    parser.add_argument(
        "--node-residual", action="store_true",
        help="the fused graph with its residual projected at every node (pooled_residual=False)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = []
    for preset in args.presets:
        num_frames = args.msvd_frames if preset == "msvd" else NUM_FRAMES
        print(f"running {preset} ...", flush=True)
        timed, step_seconds, cnn_seconds = measure(
            preset, num_frames, args.plain_graph, args.node_residual
        )
        total = sum(seconds for _, seconds in timed)
        components = [
            {"component": name, "seconds": seconds, "share_of_parts": seconds / total}
            for name, seconds in timed
        ]
        results.append({
            "preset": preset,
            "num_frames": num_frames,
            "plain_graph": args.plain_graph,
            "node_residual": args.node_residual,
            "components": components,
            "sum_of_parts_seconds": total,
            "train_step_seconds": step_seconds,
            "remainder_seconds": step_seconds - total,
            "frame_cnn_forward_seconds_if_frames_input": cnn_seconds,
        })
    load_after = os.getloadavg()

    print(
        f"\ncomponent share of a training step: batch {BATCH_SIZE}, hidden {HIDDEN_DIM}, vocab "
        f"{VOCABULARY_SIZE}, {CAPTION_LENGTH + 1} tokens; forward+backward in isolation, median "
        f"of {REPEATS}; {os.cpu_count()} CPUs, load {load_before[0]:.2f} before / "
        f"{load_after[0]:.2f} after"
    )
    for result in results:
        print(f"\n{result['preset']} ({result['num_frames']} frames)")
        print(f"{'component':<22}{'seconds':>9}{'share':>8}")
        for row in result["components"]:
            print(f"{row['component']:<22}{row['seconds']:>9.3f}{row['share_of_parts']:>8.1%}")
        print(f"{'sum of parts':<22}{result['sum_of_parts_seconds']:>9.3f}")
        print(f"{'whole train step':<22}{result['train_step_seconds']:>9.3f}")
        cnn = result["frame_cnn_forward_seconds_if_frames_input"]
        if cnn is not None:
            print(f"{'frame CNN fwd*':<22}{cnn:>9.3f}  (*not in this step: features are cached; "
                  f"the cost if frames were the input, scaled from {CNN_FRAMES} frames)")

    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    with open(RESULTS_PATH, "w") as file:
        json.dump(
            {
                "benchmark": "component_share",
                "method": (
                    "each component timed in isolation, forward+backward in a tf.function "
                    "with GradientTape, at the shapes of a training step; optimizer apply "
                    "timed alone; whole train_on_batch step for comparison"
                ),
                "machine": {
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                "keras_version": keras.__version__,
                "repeats": REPEATS,
                "results": results,
            },
            file,
            indent=2,
        )
    print(f"wrote {RESULTS_PATH}")


if __name__ == "__main__":
    main()
