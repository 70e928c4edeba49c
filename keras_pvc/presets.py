"""Presets: named model configurations, and `from_preset` to build them.

A preset is a flat dict of knobs (nanoGPT-style). `build_video_captioner`
turns knobs into the four components; `from_preset(name, **overrides)`
changes any knob first. A folder saved with `model.save_to_preset(dir)` (and
every `keras-pvc train`/`demo` run folder's `model/`) loads by path.
"""

import copy
import os

PRESETS = {
    "msvd": {
        "description": (
            "The seed's MSVD setup: 80 frames, captions of 20 words, hidden "
            "1000, batch 20, 50 epochs, checkpoint every 10. EfficientNet-Lite0 "
            "(ImageNet, offline) 7x7 region grids cached by `keras-pvc "
            "extract`, a grid+learned spatial graph, an LSTM encoder and an "
            "attention LSTM decoder."
        ),
        "input_kind": "features",
        "input_shape": (49, 1280),
        "frame_cnn": {
            "backbone": "efficientnet_lite0",
            "backbone_weights": "imagenet",
            "output": "regions",
            "trainable_backbone": False,
        },
        "frame_size": (224, 224),
        "graph": {"units": 512, "adjacency": "both", "pooling": "attention"},
        "hidden_dim": 1000,
        "encoder_layers": 1,
        "embedding_dim": 512,
        "attention": True,
        "dropout": 0.3,
        "vocabulary_size": 3000,
        "caption_length": 20,
        "num_frames": 80,
        "batch_size": 20,
        "epochs": 50,
        "learning_rate": 1e-4,
        "lr_schedule": None,
        "restore_best_weights": False,
        "checkpoint_every": 10,
    },
    "s2vt": {
        "description": (
            "S2VT-shaped baseline (Venugopalan et al., 2015): the seed's "
            "pooled 4096-d VGG16 fc7 features, an LSTM of 1000 over frames "
            "feeding an LSTM of 1000 over words, no graph, no attention."
        ),
        "input_kind": "features",
        "input_shape": (4096,),
        "frame_cnn": None,
        "frame_size": (224, 224),
        "graph": None,
        "hidden_dim": 1000,
        "encoder_layers": 1,
        "embedding_dim": 500,
        "attention": False,
        "dropout": 0.3,
        "vocabulary_size": 3000,
        "caption_length": 20,
        "num_frames": 80,
        "batch_size": 20,
        "epochs": 50,
        "learning_rate": 1e-4,
        "lr_schedule": None,
        "restore_best_weights": False,
        "checkpoint_every": 10,
    },
    "procedural": {
        "description": (
            "Small, for the embedded procedural dataset: 64x64 frames through "
            "a small batch-normalised CNN trained end to end, an 8x8 region "
            "grid read out per frame by keypoint pooling (the max over "
            "regions plus where 16 heads look; no message passing), hidden "
            "192, cosine learning-rate decay, the weights of the best "
            "validation epoch."
        ),
        "input_kind": "frames",
        "input_shape": (64, 64, 3),
        "frame_cnn": {
            "backbone": "simple",
            "filters": (16, 32, 64),
            "normalization": "batch",
        },
        "frame_size": (64, 64),
        # The readout that beat the graph-off ablation (three seeds, README):
        # "what" as the max over the 64 regions, "where" as 16 heads'
        # spatial soft-argmax. Rounds of message passing before it scored
        # lower on this dataset (README), so there are none; `units` must
        # then equal the CNN's channels.
        "graph": {
            "units": 64,
            "num_layers": 0,
            "pooling": "keypoints",
            "pooling_heads": 16,
            "keypoint_summary": "max",
        },
        "hidden_dim": 192,
        "encoder_layers": 1,
        "embedding_dim": 64,
        "attention": True,
        "dropout": 0.1,
        "vocabulary_size": 64,
        "caption_length": 12,
        # 4 frames are enough to see a motion's start and end; half the
        # frame CNN's work of 8 pays for twice the epochs, which is what the
        # model needed (README: 30 epochs of 8 frames vs 60 of 4).
        "num_frames": 4,
        "batch_size": 32,
        "epochs": 60,
        "learning_rate": 2e-3,
        "lr_schedule": "cosine",
        "restore_best_weights": True,
        "checkpoint_every": 10,
    },
}

# Knobs that shape training, not the network; the CLI reads them.
# `lr_schedule`: None (constant) or "cosine" (per-epoch cosine decay to 5%
# over the cross-entropy epochs, `keras_pvc.training.cosine_learning_rate`).
# `restore_best_weights`: after the cross-entropy epochs, keep the weights of
# the epoch with the lowest validation loss (`keras_pvc.training.BestWeights`).
TRAINING_KNOBS = (
    "batch_size",
    "epochs",
    "learning_rate",
    "lr_schedule",
    "restore_best_weights",
    "checkpoint_every",
)


def list_presets():
    """Names `from_preset` accepts (besides preset folders)."""
    return sorted(PRESETS)


def preset_config(name, **overrides):
    """The knobs of a named preset with `overrides` applied (a copy)."""
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset {name!r}. Available presets: {list_presets()}; "
            "or pass the path of a folder saved with `save_to_preset`."
        )
    config = copy.deepcopy(PRESETS[name])
    vocabulary = overrides.get("vocabulary")
    unknown = set(overrides) - set(config) - {"vocabulary"}
    if unknown:
        raise ValueError(
            f"Unknown override(s) {sorted(unknown)} for preset {name!r}. "
            f"Knobs: {sorted(config)}."
        )
    config.update(overrides)
    if vocabulary is not None:
        config["vocabulary_size"] = len(vocabulary)
    return config


def build_video_captioner(config):
    """Builds (and compiles) a `VideoCaptioner` from a dict of knobs."""
    from keras_pvc.layers import CaptionDecoder
    from keras_pvc.layers import FrameCNN
    from keras_pvc.layers import SpatialGraphConv
    from keras_pvc.layers import TemporalLSTMEncoder
    from keras_pvc.models import VideoCaptioner
    from keras_pvc.models import VideoCaptionerBackbone
    from keras_pvc.models import VideoCaptionerPreprocessor

    frame_cnn = None
    if config.get("frame_cnn"):
        frame_cnn = FrameCNN(**config["frame_cnn"], name="frame_cnn")
    graph = None
    if config.get("graph"):
        graph = SpatialGraphConv(
            dropout=config["dropout"], **config["graph"], name="spatial_graph"
        )
    backbone = VideoCaptionerBackbone(
        frame_cnn=frame_cnn,
        spatial_graph=graph,
        temporal_encoder=TemporalLSTMEncoder(
            config["hidden_dim"],
            num_layers=config["encoder_layers"],
            dropout=config["dropout"],
            name="temporal_encoder",
        ),
        caption_decoder=CaptionDecoder(
            config["vocabulary_size"],
            embedding_dim=config["embedding_dim"],
            hidden_dim=config["hidden_dim"],
            attention=config["attention"],
            dropout=config["dropout"],
            name="caption_decoder",
        ),
        input_kind=config["input_kind"],
        input_shape=config["input_shape"],
    )
    preprocessor = VideoCaptionerPreprocessor(
        vocabulary=config.get("vocabulary"),
        caption_length=config["caption_length"],
        num_frames=config["num_frames"],
        frame_size=config["frame_size"],
    )
    model = VideoCaptioner(backbone, preprocessor)
    model.compile(learning_rate=config["learning_rate"])
    return model


def from_preset(name_or_dir, **overrides):
    """A `VideoCaptioner` from a preset name or a saved preset folder.

    Args:
        name_or_dir: str. A name from `list_presets()` (untrained, the
            preset's architecture), or a folder written by `save_to_preset`
            (a `keras-pvc` run folder's `model/` included; also `hf://` and
            `kaggle://` handles, through keras-hub).
        **overrides: knobs to change on a named preset, e.g.
            `hidden_dim=512`, `graph=None`, `vocabulary=[...]` (sets the
            vocabulary size too).

    Returns:
        A compiled `keras_pvc.VideoCaptioner`.

    Raises:
        ValueError: for an unknown name (the message lists the presets) or an
            unknown knob.
    """
    from keras_pvc.models import VideoCaptioner

    if name_or_dir in PRESETS:
        return build_video_captioner(preset_config(name_or_dir, **overrides))
    is_handle = "://" in str(name_or_dir)
    if is_handle or os.path.isdir(name_or_dir):
        if overrides:
            raise ValueError(
                "Overrides apply to named presets only; load the folder, "
                f"then change the model. Got {sorted(overrides)}."
            )
        model = VideoCaptioner.from_preset(name_or_dir)
        model.compile()
        return model
    raise ValueError(
        f"Unknown preset {name_or_dir!r}. Available presets: {list_presets()}; "
        "or pass the path of a folder saved with `save_to_preset`."
    )
