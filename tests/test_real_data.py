"""The real-data path as a user meets it (issue 21), on fixtures in each
dataset's real schema: MSVD's video_corpus.csv, MSR-VTT's videodatainfo.json,
YouCook2's youcookii_annotations.json, trained from fake cached features."""

import collections
import json
import os

import numpy as np
import pytest

from keras_pvc.apps.cli import main
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


def youcook2_json(path, database):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"database": database}, handle)
    return str(path)


@pytest.mark.slow
def test_youcook2_without_test_sentences_scores_on_val(tmp_path, capsys, monkeypatch):
    import keras_pvc.datasets.features as features_module
    from keras_pvc.datasets.youcook2 import load_youcook2

    def no_in_memory_load(*args, **kwargs):
        raise AssertionError("val/test features must stream, not load into memory")

    monkeypatch.setattr(features_module, "load_feature_arrays", no_in_memory_load)

    with open(YOUCOOK2) as handle:
        database = json.load(handle)["database"]
    # The public annotations: the testing videos carry no sentences.
    for entry in database.values():
        if entry["subset"] == "testing":
            del entry["annotations"]
    annotations = youcook2_json(tmp_path / "youcookii_annotations.json", database)
    clips = load_youcook2(annotations)
    assert not [clip for clip in clips if clip.split == "test"]
    features = write_features(clips, str(tmp_path / "features"))
    out = tmp_path / "run"
    code = train_cli("youcook2", annotations, features, str(out), "--epochs", "1", *set_args())
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "The test split is empty" in captured.out and "scoring on the 1 val clips" in captured.out
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    with open(out / "predictions.json") as handle:
        predictions = json.load(handle)
    val_ids = {clip.clip_id for clip in clips if clip.split == "val"}
    assert metrics["scored_split"] == "val" and set(predictions) == val_ids
    assert np.isfinite(metrics["metrics"]["all"]["CIDEr"])


def test_carved_validation_split_is_a_stable_hash_of_the_ids():
    import random
    import zlib

    from keras_pvc.datasets.splits import carve_validation_split

    clips = [Clip(f"clip{index}", ["a cat"], "train") for index in range(30)]
    clips += [Clip("t0", ["a dog"], "test")]
    moved, carved = carve_validation_split(clips)
    # Hand-computed: the 3 (10% of 30) lowest CRC-32s of "val:<id>".
    expected = sorted(
        (c.clip_id for c in clips[:30]), key=lambda i: zlib.crc32(f"val:{i}".encode())
    )[:3]
    assert carved == sorted(expected)
    assert {c.clip_id for c in moved if c.split == "val"} == set(expected)
    assert all(c.split == "train" for c in clips[:30])  # the input is untouched
    shuffled = list(clips)
    random.Random(1).shuffle(shuffled)
    assert carve_validation_split(shuffled)[1] == carved  # order does not matter
    assert carve_validation_split(clips[:9])[1] == []  # too few to carve
    with_val = clips + [Clip("v0", ["a cow"], "val")]
    assert carve_validation_split(with_val)[1] == []  # the dataset's val wins


@pytest.mark.slow
def test_train_without_val_split_carves_one_and_restores_best_weights(tmp_path, capsys):
    from keras_pvc.datasets.splits import carve_validation_split
    from keras_pvc.datasets.youcook2 import load_youcook2

    sentences = ["cut the onion", "fry the onion in oil", "add salt", "boil the pasta"]
    database = {
        f"vid{index:08d}x": {
            "subset": "testing" if index >= 12 else "training",
            "recipe_type": "101",
            "annotations": [
                {"segment": [0, 5 + index], "id": 0, "sentence": sentences[index % 4]}
            ],
        }
        for index in range(14)
    }
    annotations = youcook2_json(tmp_path / "youcookii_annotations.json", database)
    clips = load_youcook2(annotations)
    features = write_features(clips, str(tmp_path / "features"))
    out = tmp_path / "run"
    code = train_cli(
        "youcook2", annotations, features, str(out), "--epochs", "2",
        *set_args("restore_best_weights=true"),
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no val split: 1 of 12 training clips" in captured.out
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["validation"]["source"] == "carved"
    assert metrics["validation"]["clip_ids"] == carve_validation_split(clips)[1]
    assert metrics["best_xe_epoch"] in (1, 2)  # restore_best_weights acted
    with open(out / "history.csv") as handle:
        assert "val_loss" in handle.readline()
    assert "Kept the weights of epoch" in captured.out

    # Too small to carve: say so, and that restore_best_weights does nothing.
    small = {k: v for k, v in list(database.items())[:5] + list(database.items())[12:]}
    annotations = youcook2_json(tmp_path / "small.json", small)
    code = train_cli(
        "youcook2", annotations, features, str(tmp_path / "small"), "--epochs", "1",
        *set_args("restore_best_weights=true"),
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "too few to carve one" in captured.out
    assert "restore_best_weights does nothing" in captured.out
    with open(tmp_path / "small" / "metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["validation"] == {"source": "none", "clips": 0}
    assert metrics["best_xe_epoch"] is None


def test_streamed_features_caption_as_the_in_memory_arrays(tmp_path):
    import keras_pvc
    from keras_pvc.datasets.features import StreamedFeatures
    from keras_pvc.datasets.features import feature_batches
    from keras_pvc.datasets.features import load_feature_arrays
    from keras_pvc.datasets.youcook2 import load_youcook2
    from keras_pvc.models import VideoCaptionerPreprocessor
    from keras_pvc.training.runs import caption_split

    clips = load_youcook2(YOUCOOK2)
    features = write_features(clips, str(tmp_path / "features"))
    os.remove(os.path.join(features, clips[1].clip_id + ".npy"))
    with pytest.warns(UserWarning, match="1 of 4 clips have no usable features"):
        streamed = StreamedFeatures.scan(clips, features)
    with pytest.warns(UserWarning):
        in_memory = load_feature_arrays(clips, features)
    assert [c.clip_id for c in streamed.clips] == [c.clip_id for c in in_memory.clips]
    assert streamed.failures == in_memory.failures
    batches = list(feature_batches(streamed.clips, features, 2).as_numpy_iterator())
    assert [len(batch["features"]) for batch in batches] == [2, 1]
    stacked = np.concatenate([batch["features"] for batch in batches])
    assert stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked, in_memory.videos)
    np.testing.assert_array_equal(
        np.concatenate([batch["frame_mask"] for batch in batches]), in_memory.frame_masks
    )
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        [r for clip in clips for r in clip.references]
    )
    model = keras_pvc.from_preset(
        "msvd", vocabulary=vocabulary, input_shape=(4, 8), num_frames=3, frame_cnn=None,
        graph=None, hidden_dim=8, embedding_dim=8,
    )
    expected = model.generate(in_memory.model_inputs("features"))
    assert caption_split(model, streamed, batch_size=2) == dict(
        zip([c.clip_id for c in in_memory.clips], expected)
    )
