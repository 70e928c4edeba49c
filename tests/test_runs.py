"""Training runs end to end: the run folder, features path, CLI and resume."""

import json
import os
import subprocess
import sys

import numpy as np
import keras
import pytest

from keras_pvc.apps.cli import build_parser
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.training.runs import train_run

TINY = {
    "hidden_dim": 16,
    "embedding_dim": 8,
    "graph": {"units": 16, "adjacency": "both", "pooling": "attention", "attention_dim": 8},
    "batch_size": 8,
    "checkpoint_every": 1,
}


@pytest.fixture(scope="module")
def procedural_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("procedural"))
    generate_procedural_dataset(root, num_clips=24, num_frames=8, seed=3)
    return root


def test_cli_help_is_fast_and_lists_commands():
    # --help must not import TensorFlow (the CLI imports lazily).
    code = (
        "import sys, keras_pvc.apps.cli as c\n"
        "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("False"), out.stdout
    for command in ("demo", "train", "extract", "evaluate", "caption", "report"):
        assert command in out.stdout
    args = build_parser().parse_args(["train", "--root", "r", "--out", "o", "--rl-epochs", "2"])
    assert args.rl_epochs == 2 and args.preset is None  # `default_preset` picks


def test_train_run_rejects_an_unknown_schedule(procedural_root, tmp_path):
    with pytest.raises(ValueError, match="Unknown `lr_schedule` 'linear'"):
        train_run(
            load_msvd(procedural_root), str(tmp_path / "run"),
            overrides={**TINY, "lr_schedule": "linear"}, epochs=1, verbose=0,
        )


@pytest.mark.slow
def test_train_run_writes_a_complete_run_folder(procedural_root, tmp_path):
    out = str(tmp_path / "run")
    overrides = {**TINY, "num_frames": 4}
    summary = train_run(
        load_msvd(procedural_root), out, overrides=overrides, epochs=2, rl_epochs=1, verbose=0
    )
    for name in (
        "metrics.json",
        "predictions.json",
        "samples.txt",
        "history.csv",
        "loss_imgs/loss.png",
        "loss_imgs/reward.png",
        "checkpoints/epoch_001.weights.h5",
        "model/config.json",
        "model/preprocessor.json",
    ):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.json")) as handle:
        written = json.load(handle)
    assert written["metrics"]["all"]["CIDEr"] == summary["metrics"]["all"]["CIDEr"]
    assert set(written["phases"]) == {"XE", "XE+RL"}
    assert written["backend"] == keras.backend.backend()
    # The history has the XE epochs and the RL epoch, with rewards only in RL.
    import csv

    with open(os.path.join(out, "history.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    assert rows[0]["reward"] == "" and float(rows[2]["reward"]) >= 0
    # The preset's cosine schedule over the 2 XE epochs, then the RL rate.
    rates = [float(row["learning_rate"]) for row in rows[:2]]
    assert rates[0] == pytest.approx(2e-3) and rates[1] == pytest.approx(2e-3 * 0.525)
    assert float(rows[2]["val_loss"]) > 0
    # The saved model is a preset folder that captions the same way.
    import keras_pvc

    model = keras_pvc.from_preset(os.path.join(out, "model"))
    with open(os.path.join(out, "predictions.json")) as handle:
        predictions = json.load(handle)
    assert len(predictions) == len(
        [clip for clip in load_msvd(procedural_root) if clip.split == "test"]
    )
    assert model.preprocessor.num_frames == 4

    # Starting a run from the saved model (no training) captions the same.
    again = str(tmp_path / "again")
    train_run(
        load_msvd(procedural_root), again, overrides=overrides, epochs=0,
        init_weights=os.path.join(out, "model"), verbose=0,
    )
    with open(os.path.join(again, "predictions.json")) as handle:
        assert json.load(handle) == predictions
    with pytest.raises(ValueError, match="do not fit this model"):
        train_run(
            load_msvd(procedural_root), str(tmp_path / "bad"),
            overrides={**overrides, "hidden_dim": 12}, epochs=0,
            init_weights=os.path.join(out, "checkpoints", "epoch_001.weights.h5"), verbose=0,
        )
    with pytest.raises(FileNotFoundError, match="No weights at"):
        train_run(
            load_msvd(procedural_root), str(tmp_path / "none"), overrides=overrides,
            epochs=0, init_weights=str(tmp_path / "missing.weights.h5"), verbose=0,
        )

    # The demo's check of captions against the scenes they describe.
    from keras_pvc.datasets.procedural import scene_accuracy
    from keras_pvc.training.runs import score_scenes

    result = score_scenes(out, procedural_root)
    with open(os.path.join(procedural_root, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    expected = scene_accuracy(scenes, predictions)
    assert result["exact"] == expected["exact"] and result["num_clips"] == len(predictions)
    with open(os.path.join(out, "metrics.json")) as handle:
        assert json.load(handle)["scene_accuracy"] == result


@pytest.mark.slow
def test_train_run_on_extracted_features(procedural_root, tmp_path):
    from keras_pvc.training.extract import extract_features
    from keras_pvc.layers import FrameCNN

    clips = load_msvd(procedural_root)
    features = str(tmp_path / "features")
    extract_features(
        clips,
        features,
        FrameCNN("efficientnet_lite0", backbone_weights="imagenet"),
        num_frames=4,
        frame_size=(64, 64),
        verbose=0,
    )
    overrides = {**TINY, "num_frames": 4, "input_shape": (4, 1280)}
    summary = train_run(
        clips, str(tmp_path / "run"), preset="msvd", overrides=overrides,
        epochs=1, features_dir=features, verbose=0,
    )
    assert np.isfinite(summary["metrics"]["all"]["BLEU-1"])
    with pytest.raises(ValueError, match="per-frame shape"):
        train_run(
            clips, str(tmp_path / "bad"), preset="msvd",
            overrides={**TINY, "num_frames": 4}, epochs=1, features_dir=features, verbose=0,
        )


def test_caption_command_reports_bad_files_and_captions_the_rest(
    procedural_root, tmp_path, capsys
):
    import keras_pvc
    from keras_pvc.apps.cli import main
    from keras_pvc.models import VideoCaptionerPreprocessor

    clips = load_msvd(procedural_root)
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(clips[0].references)
    overrides = {key: value for key, value in TINY.items() if key != "checkpoint_every"}
    model = keras_pvc.from_preset(
        "procedural", vocabulary=vocabulary, num_frames=4, **overrides
    )
    run = tmp_path / "run"
    model.save_to_preset(str(run / "model"))
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video")
    videos = [clips[0].video_path, str(tmp_path / "missing.avi"), str(garbage), clips[1].video_path]

    code = main(["caption", *videos, "--model", str(run), "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # Every caption it could make is written, and the failures make it exit 1.
    assert code == 1
    assert "2 of 4 videos could not be captioned" in captured.err
    assert sorted(out["captions"]) == sorted([clips[0].video_path, clips[1].video_path])
    assert set(out["errors"]) == {str(tmp_path / "missing.avi"), str(garbage)}
    assert "missing.avi" in out["errors"][str(tmp_path / "missing.avi")]
    # The CLI captions a file as the model does on the same frames.
    from keras_pvc.video import read_frames

    frames, mask = read_frames(clips[0].video_path, 4, size=(64, 64))
    expected = model.generate({"frames": frames[None].astype("float32"), "frame_mask": mask[None]})
    assert out["captions"][clips[0].video_path] == expected[0]

    code = main(["caption", str(garbage), "--model", str(run / "model"), "--beam", "3"])
    assert code == 1


def test_train_command_on_a_procedural_folder_scores_like_the_demo(
    procedural_root, tmp_path, capsys
):
    from keras_pvc.apps.cli import main
    from keras_pvc.training.runs import relation_clip_ids

    out = tmp_path / "run"
    # No training: the point is what the command reports, not the model.
    code = main(["train", "--root", procedural_root, "--out", str(out), "--epochs", "0"])
    assert code == 0
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    with open(out / "predictions.json") as handle:
        predictions = json.load(handle)
    relations = relation_clip_ids(procedural_root)
    assert relations and set(predictions) & relations
    assert "relations" in metrics["metrics"]
    assert metrics["scene_accuracy"]["num_clips"] == len(predictions)
    assert "state their scene exactly" in capsys.readouterr().out


def test_relation_clip_ids_only_reads_procedural_metadata(procedural_root, tmp_path):
    from keras_pvc.training.runs import relation_clip_ids

    with open(os.path.join(procedural_root, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    expected = {k for k, scene in scenes.items() if len(scene["shapes"]) == 2}
    assert relation_clip_ids(procedural_root) == expected
    (tmp_path / "metadata.json").write_text(json.dumps({"scenes": scenes}))
    assert relation_clip_ids(str(tmp_path)) == set()  # not the generator's
    assert relation_clip_ids(str(tmp_path / "missing")) == set()
    (tmp_path / "metadata.json").write_text("{truncated")
    with pytest.raises(ValueError, match="metadata.json: not valid JSON"):
        relation_clip_ids(str(tmp_path))
