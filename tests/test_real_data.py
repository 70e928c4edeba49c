"""The real-data path as a user meets it (issue 21), on fixtures in each
dataset's real schema: MSVD's video_corpus.csv, MSR-VTT's videodatainfo.json,
YouCook2's youcookii_annotations.json, trained from fake cached features."""

import collections
import json
import os

import numpy as np
import pytest

from keras_pvc.cli import main
from keras_pvc.datasets.clip import Clip

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MSVD = os.path.join(FIXTURES, "msvd")
MSRVTT = os.path.join(FIXTURES, "msrvtt", "videodatainfo.json")
YOUCOOK2 = os.path.join(FIXTURES, "youcook2", "youcookii_annotations.json")

# A tiny `msvd`-preset model on (3 frames, 4 regions, 8 channels) features.
TINY_SET = [
    "input_shape=[4, 8]",
    "num_frames=3",
    "frame_cnn=null",
    "graph=null",
    "hidden_dim=8",
    "embedding_dim=8",
    "batch_size=2",
    "checkpoint_every=1",
]


def write_features(clips, folder, seed=0):
    """Random `(3, 4, 8)` float16 features for every clip, as `extract` writes."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for clip in clips:
        features = rng.standard_normal((3, 4, 8)).astype("float16")
        np.save(os.path.join(folder, clip.clip_id + ".npy"), features)
    return folder


def set_args(*extra):
    return [arg for pair in (*TINY_SET, *extra) for arg in ("--set", pair)]


def train_cli(dataset, root, features, out, *args):
    return main(
        [
            "train", "--dataset", dataset, "--root", root, "--features", features,
            "--preset", "msvd", "--out", out, *args,
        ]
    )


@pytest.fixture(scope="module")
def msvd_features(tmp_path_factory):
    from keras_pvc.datasets.msvd import load_msvd

    folder = str(tmp_path_factory.mktemp("msvd_features"))
    return write_features(load_msvd(MSVD), folder)


@pytest.mark.slow
def test_set_changes_preset_knobs_and_parses_json(msvd_features, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli(
        "msvd", MSVD, msvd_features, str(out), "--epochs", "0",
        *set_args("lr_schedule=cosine", "learning_rate=3e-3"),
    )
    assert code == 0, capsys.readouterr().err
    with open(out / "metrics.json") as handle:
        overrides = json.load(handle)["overrides"]
    # JSON where it parses (numbers, null, lists), the string otherwise.
    assert overrides["hidden_dim"] == 8 and overrides["learning_rate"] == 3e-3
    assert overrides["graph"] is None and overrides["input_shape"] == [4, 8]
    assert overrides["lr_schedule"] == "cosine"
    with open(out / "model" / "config.json") as handle:
        config = json.load(handle)["config"]
    assert config["temporal_encoder"]["config"]["hidden_dim"] == 8
    assert config["spatial_graph"] is None and config["input_shape"] == [4, 8]


def test_set_with_an_unknown_key_is_one_line_listing_the_knobs(tmp_path, capsys):
    code = main(
        ["train", "--root", MSVD, "--out", str(tmp_path / "r"), "--set", "hiden_dim=8"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "['hiden_dim']" in err
    assert "hidden_dim" in err and "min_word_count" in err  # the valid knobs
    assert not (tmp_path / "r").exists()  # checked before anything is done
    assert main(["demo", "--out", str(tmp_path / "d"), "--set", "epochs"]) == 1
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_min_word_count_maps_rare_training_words_to_unk(msvd_features, tmp_path):
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.models.video_captioner_preprocessor import caption_words

    out = tmp_path / "run"
    code = train_cli(
        "msvd", MSVD, msvd_features, str(out), "--epochs", "0",
        *set_args("min_word_count=2"),
    )
    assert code == 0
    with open(out / "model" / "preprocessor.json") as handle:
        vocabulary = json.load(handle)["config"]["vocabulary"]
    # Counted by hand from the fixture's training references.
    counts = collections.Counter(
        word
        for clip in load_msvd(MSVD)
        if clip.split == "train"
        for reference in clip.references
        for word in caption_words(reference)
    )
    kept = {word for word, count in counts.items() if count >= 2}
    rare = {word for word, count in counts.items() if count == 1}
    assert kept and rare
    assert set(vocabulary[4:]) == kept
    import keras_pvc

    model = keras_pvc.from_preset(str(out / "model"))
    rare_word = sorted(rare)[0]
    ids = np.asarray(model.preprocessor.tokenize([f"a {rare_word}"]))[0]
    assert model.preprocessor.vocabulary[ids[2]] == "<unk>"
    # The default keeps every training word (today's behaviour).
    code = train_cli("msvd", MSVD, msvd_features, str(tmp_path / "all"), "--epochs", "0",
                     *set_args())
    with open(tmp_path / "all" / "model" / "preprocessor.json") as handle:
        assert set(json.load(handle)["config"]["vocabulary"][4:]) == set(counts)
