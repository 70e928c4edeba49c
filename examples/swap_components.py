"""Swap the components of a video captioner: configuration, not code.

The same `procedural` model three ways, each trained a few steps on the
embedded procedural dataset and asked for captions:

  (a) another graph layer: spektral's GCNConv behind a small adapter (it
      needs spektral, `pip install keras-pvc[spektral]`, and the TensorFlow
      backend; without them the example stops with a message), or with
      `--another-graph learned` our SpatialGraphConv with a learned
      adjacency only;
  (b) a GRU temporal encoder: a user's own registered layer;
  (c) no graph at all: regions are mean-pooled per frame.

Any registered Keras layer with the same call signature plugs in; the model
serializes it with `keras.layers.serialize`, so no registry of ours is
involved. Run: `python examples/swap_components.py [--another-graph learned]`.
Each variant prints which graph ran; for spektral's, how far training moved
its GCNConv kernel (so a GCNConv that never ran cannot pass for one).
"""

import argparse
import os
import sys
import tempfile

import keras
from keras import ops

from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.pipeline import caption_dataset
from keras_pvc.datasets.pipeline import read_clip_videos
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import grid_adjacency
from keras_pvc.models import VideoCaptioner
from keras_pvc.models import VideoCaptionerBackbone
from keras_pvc.models import VideoCaptionerPreprocessor
from keras_pvc.presets import build_video_captioner
from keras_pvc.presets import preset_config

# === Knobs ===
NUM_CLIPS = 60
STEPS = 6
BATCH_SIZE = 16
DATA_ROOT = os.path.join(tempfile.gettempdir(), "keras_pvc_swap_example")


@keras.saving.register_keras_serializable(package="my_project")
class GRUTemporalEncoder(keras.layers.Layer):
    """A GRU over frames with the `TemporalLSTMEncoder` call signature.

    Returns `(sequence, hidden, hidden)`: a GRU has no cell state, so the
    decoder's LSTM starts from the hidden state twice.
    """

    def __init__(self, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.gru = keras.layers.GRU(
            hidden_dim, return_sequences=True, return_state=True, name="gru"
        )

    def build(self, features_shape, frame_mask_shape=None):
        self.gru.build(features_shape)

    def call(self, features, frame_mask=None, training=None):
        sequence, hidden = self.gru(features, mask=frame_mask, training=training)
        return sequence, hidden, hidden

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        batch, frames = features_shape[0], features_shape[1]
        state = (batch, self.hidden_dim)
        return (batch, frames, self.hidden_dim), state, state

    def get_config(self):
        return {**super().get_config(), "hidden_dim": self.hidden_dim}


def spektral_problem():
    """Why spektral's GCNConv cannot run here, or None when it can."""
    if keras.config.backend() != "tensorflow":
        return (
            f"spektral's layers are TensorFlow-only; this is the "
            f"{keras.config.backend()!r} backend (set KERAS_BACKEND=tensorflow)"
        )
    try:
        import spektral.layers  # noqa: F401
        import spektral.utils  # noqa: F401
    except Exception as error:  # an optional extra
        return f"spektral is not importable ({error}); pip install keras-pvc[spektral]"
    return None


def spektral_graph(units):
    """spektral's GCNConv on the region grid, behind an adapter."""
    from spektral.layers import GCNConv
    from spektral.utils import gcn_filter

    @keras.saving.register_keras_serializable(package="my_project")
    class SpektralGridGCN(keras.layers.Layer):
        """(B, T, N, C) regions -> spektral GCNConv on the grid -> (B, T, units)."""

        def __init__(self, units, grid_side, **kwargs):
            super().__init__(**kwargs)
            self.units, self.grid_side = units, grid_side
            self.gcn = GCNConv(units, activation="relu")
            self.adjacency = gcn_filter(grid_adjacency(grid_side, grid_side))

        def call(self, regions, training=None):
            shape = ops.shape(regions)
            nodes = ops.reshape(regions, (-1, shape[2], regions.shape[-1]))
            # Keras 3 passes mask=[None, None], which spektral 1.3 multiplies by.
            nodes = self.gcn.call([nodes, ops.convert_to_tensor(self.adjacency)], mask=None)
            return ops.reshape(ops.mean(nodes, axis=1), (shape[0], shape[1], self.units))

        def build(self, regions_shape):
            num_regions, channels = regions_shape[2], regions_shape[3]
            self.gcn.build([(None, num_regions, channels), (num_regions, num_regions)])

        def compute_output_shape(self, regions_shape):
            return (regions_shape[0], regions_shape[1], self.units)

        def get_config(self):
            return {**super().get_config(), "units": self.units, "grid_side": self.grid_side}

    return SpektralGridGCN(units, grid_side=8, name="spatial_graph")


def build_variant(name, vocabulary, another_graph="spektral"):
    """The procedural preset with one component swapped."""
    config = preset_config("procedural", vocabulary=vocabulary, hidden_dim=64)
    if name == "no graph":
        config["graph"] = None
        return build_video_captioner(config)
    base = build_video_captioner(config)
    backbone = base.backbone
    graph, encoder = backbone.spatial_graph, backbone.temporal_encoder
    if name == "another graph":
        # The encoder is already built for the preset graph's output width
        # (its keypoint readout: units + 2 * heads channels).
        units = graph.output_dim
        if another_graph == "spektral":
            graph = spektral_graph(units)
        else:
            graph = SpatialGraphConv(units, adjacency="learned", name="spatial_graph")
    elif name == "GRU encoder":
        encoder = GRUTemporalEncoder(64, name="temporal_encoder")
    swapped = VideoCaptionerBackbone(
        frame_cnn=backbone.frame_cnn,
        spatial_graph=graph,
        temporal_encoder=encoder,
        caption_decoder=backbone.caption_decoder,
        input_kind="frames",
        input_shape=backbone.video_input_shape,
    )
    model = VideoCaptioner(swapped, base.preprocessor)
    model.compile(learning_rate=config["learning_rate"])
    return model


def describe_graph(graph, kernel_before):
    """Which graph ran; for spektral's, how far training moved its kernel."""
    if graph is None:
        return "None"
    name = type(graph).__name__
    if hasattr(graph, "gcn"):
        kernel = keras.ops.convert_to_numpy(graph.gcn.kernel)
        moved = float(abs(kernel - kernel_before).max())
        layer = f"{type(graph.gcn).__module__}.{type(graph.gcn).__name__}"
        name += f" ({layer}, kernel moved {moved:.3g})"
    elif getattr(graph, "adjacency", None) is not None:
        name += f" (adjacency={graph.adjacency}, num_layers={graph.num_layers})"
    return name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--another-graph",
        choices=("spektral", "learned"),
        default="spektral",
        help="Variant (a): spektral's GCNConv (needs spektral and TensorFlow) "
        "or our SpatialGraphConv with a learned adjacency.",
    )
    args = parser.parse_args(argv)
    if args.another_graph == "spektral":
        problem = spektral_problem()
        if problem:
            # No silent stand-in: the variant is named for spektral's layer.
            sys.exit(
                f"swap_components.py: the 'another graph' variant uses spektral's "
                f"GCNConv, but {problem}. Run with `--another-graph learned` for "
                "our SpatialGraphConv instead."
            )
    generate_procedural_dataset(DATA_ROOT, num_clips=NUM_CLIPS)
    clips = load_msvd(DATA_ROOT)
    arrays = read_clip_videos(clips, 8, (64, 64), verbose=0)
    train, test = arrays.subset("train"), arrays.subset("test")
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in train.clips for reference in clip.references]
    )
    for name in ("another graph", "GRU encoder", "no graph"):
        model = build_variant(name, vocabulary, args.another_graph)
        graph = model.backbone.spatial_graph
        kernel_before = None
        if hasattr(graph, "gcn"):
            kernel_before = keras.ops.convert_to_numpy(graph.gcn.kernel).copy()
        dataset = caption_dataset(
            train, model.preprocessor, "frames", BATCH_SIZE, captions="random"
        )
        # The dataset shuffles itself; `fit` would warn that it cannot.
        history = model.fit(dataset.repeat().take(STEPS), shuffle=False, verbose=0)
        captions = model.generate({
            "frames": test.videos[:2].astype("float32"),
            "frame_mask": test.frame_masks[:2],
        })
        # The swapped model still saves and reloads as one file.
        path = os.path.join(tempfile.gettempdir(), "swapped.keras")
        model.save(path)
        keras.saving.load_model(path)
        print(
            f"{name:>14}: graph={describe_graph(graph, kernel_before)}, "
            f"encoder={type(model.backbone.temporal_encoder).__name__}, "
            f"loss {history.history['loss'][-1]:.2f}, captions {captions}"
        )


if __name__ == "__main__":
    main()
