"""What `keras-pvc train` picks with no `--preset`, the `regions` preset, and
captioning video files with a model trained on cached features (issue 15)."""

import json
import os

import numpy as np
import pytest

import keras_pvc
from keras_pvc.datasets.heldout import sprites
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.models import VideoCaptionerPreprocessor
from keras_pvc.presets import preset_config
from keras_pvc.training.runs import default_preset

# `regions` cut to test size; EfficientNet-Lite0 on 64x64 frames gives a
# 2x2 grid of 1280 channels.
TINY_REGIONS = {
    "hidden_dim": 8,
    "embedding_dim": 8,
    "graph": {"units": 8, "adjacency": "both", "pooling": "attention", "attention_dim": 8,
              "temporal_centering": {"static": "pooled"}, "motion_tracks": {"scale": 10.0}},
    "num_frames": 3,
    "frame_size": (64, 64),
    "input_shape": (4, 1280),
    "batch_size": 2,
}


@pytest.fixture(scope="module")
def sprites_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sprites"))
    sprites.generate_sprites_dataset(root, num_clips=10, num_frames=8, seed=1)
    return root


def _vocabulary(clips):
    words = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in clips for reference in clip.references]
    )
    return words[:10]


def test_train_picks_procedural_only_for_the_embedded_generator(sprites_root, tmp_path):
    procedural = str(tmp_path / "procedural")
    generate_procedural_dataset(procedural, num_clips=4, num_frames=4, seed=0)
    assert default_preset("msvd", procedural) == "procedural"
    # A folder someone else rendered, one without metadata, other datasets.
    assert default_preset("msvd", sprites_root) == "regions"
    assert default_preset("msvd", str(tmp_path)) == "regions"
    assert default_preset("msrvtt", procedural) == "regions"
    (tmp_path / "metadata.json").write_text("{not json")
    assert default_preset("msvd", str(tmp_path)) == "regions"


def test_train_without_preset_uses_the_default_preset():
    from keras_pvc.apps.cli import build_parser

    args = build_parser().parse_args(["train", "--root", "DIR", "--out", "RUN"])
    assert args.preset is None  # resolved by `default_preset` in cmd_train


def test_regions_preset_features_match_its_frame_cnn():
    from keras_pvc.layers import FrameCNN

    config = preset_config("regions")
    assert config["input_kind"] == "features" and config["num_frames"] == 8
    cnn = FrameCNN(**config["frame_cnn"], name="frame_cnn")
    shape = cnn.compute_output_shape((1, config["num_frames"], *config["frame_size"], 3))
    assert tuple(shape[2:]) == tuple(config["input_shape"])


def test_regions_preset_round_trips(tmp_path):
    captions = ["the red ball moves left", "a blue box moves up"]
    words = VideoCaptionerPreprocessor.build_vocabulary(captions)
    model = keras_pvc.from_preset(
        "regions", vocabulary=words, **{**TINY_REGIONS, "frame_cnn": None}
    )
    ids = model.preprocessor.tokenize(captions)
    inputs = {
        "features": np.random.default_rng(0).normal(size=(2, 3, 4, 1280)).astype("float32"),
        "frame_mask": np.array([[True, True, True], [True, True, False]]),
        "token_ids": ids[:, :-1],
        "padding_mask": ids[:, :-1] != 0,
    }
    model.save_to_preset(str(tmp_path / "model"))
    loaded = keras_pvc.from_preset(str(tmp_path / "model"))
    assert loaded.preprocessor.vocabulary == words
    # The preset's regions are centred on their clip mean, with the pooled
    # "what" beside them, and the motion tracks beside the graph's output.
    tracks = loaded.backbone.spatial_graph
    assert isinstance(tracks, keras_pvc.layers.MotionTracks) and tracks.scale == 10.0
    assert isinstance(tracks.graph, keras_pvc.layers.TemporalCentering)
    assert tracks.graph.static == "pooled" and tracks.graph.units == 8
    assert tracks.output_dim == 8 + 16
    np.testing.assert_allclose(
        loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6
    )
    assert loaded.generate(inputs) == model.generate(inputs)


@pytest.mark.slow
def test_caption_command_on_a_features_run_matches_the_cached_features(
    sprites_root, tmp_path
):
    from keras_pvc.apps.cli import main
    from keras_pvc.training.runs import prepare_features

    clips = load_msvd(sprites_root)
    config = preset_config("regions", **TINY_REGIONS)
    features = str(tmp_path / "features")
    prepare_features(clips[:2], config, features, verbose=0)
    model = keras_pvc.from_preset("regions", vocabulary=_vocabulary(clips), **TINY_REGIONS)
    model.save_to_preset(str(tmp_path / "run" / "model"))

    videos = [clip.video_path for clip in clips[:2]]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["caption", *videos, "--model", str(tmp_path / "run"), "--json"]) == 0
    captions = json.loads(out.getvalue())["captions"]
    # The CLI's frames -> recorded frame CNN -> model gives the caption of
    # the features `extract` cached (float16 there, so compare the captions
    # of a loaded model on both).
    from keras_pvc.video import read_frames

    loaded = keras_pvc.from_preset(str(tmp_path / "run" / "model"))
    extractor = loaded.backbone.build_feature_extractor()
    for clip in clips[:2]:
        cached = np.load(os.path.join(features, clip.clip_id + ".npy")).astype("float32")
        mask = np.load(os.path.join(features, clip.clip_id + ".mask.npy"))
        # The run's recorded frame CNN is the ImageNet one `extract` used.
        frames, _ = read_frames(clip.video_path, 3, size=(64, 64))
        recomputed = np.asarray(extractor(frames[None].astype("float32")))[0]
        np.testing.assert_allclose(recomputed, cached, rtol=2e-3, atol=2e-3)
        expected = loaded.generate({"features": cached[None], "frame_mask": mask[None]})
        assert captions[clip.video_path] == expected[0]


@pytest.mark.slow
def test_train_extracts_features_into_the_run_and_reuses_them(sprites_root, tmp_path):
    from keras_pvc.apps.cli import main
    from keras_pvc.training.extract import read_manifest

    run = tmp_path / "run"
    # No training: the point is the preset chosen and the feature cache.
    assert main(["train", "--root", sprites_root, "--out", str(run), "--epochs", "0"]) == 0
    with open(run / "metrics.json") as handle:
        assert json.load(handle)["preset"] == "regions"
    manifest = read_manifest(str(run / "features"))
    assert manifest["counts"]["extracted"] == 10
    assert manifest["feature_shape"] == [8, 49, 1280]
    assert main(["train", "--root", sprites_root, "--out", str(run), "--epochs", "0"]) == 0
    manifest = read_manifest(str(run / "features"))
    assert manifest["counts"] == dict(manifest["counts"], extracted=0, skipped_existing=10)


def test_every_preset_has_every_knob():
    # `--set KEY=VALUE` and `preset_config` accept a preset's own keys only:
    # a knob missing from one preset (min_word_count once was) cannot be set.
    from keras_pvc.presets import PRESETS

    knobs = {name: set(config) for name, config in PRESETS.items()}
    every = set.union(*knobs.values())
    assert {name: every - keys for name, keys in knobs.items()} == {n: set() for n in knobs}
