"""The demo's compositional report: unseen combinations on test, seen on val."""

import json
import os

import pytest

from keras_pvc.apps.demo import caption_run_clips
from keras_pvc.apps.demo import score_seen_combinations
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.datasets.procedural import held_out_combinations
from keras_pvc.datasets.procedural import scene_meaning
from keras_pvc.datasets.procedural import Scene
from keras_pvc.training.runs import train_run

TINY = {
    "hidden_dim": 16,
    "embedding_dim": 8,
    "graph": {"units": 16, "adjacency": "both", "pooling": "attention", "attention_dim": 8},
    "batch_size": 16,
    "num_frames": 2,
    "frame_size": (32, 32),
    "input_shape": (32, 32, 3),
    "checkpoint_every": 1,
}


def _combination(scene):
    relation, subject, _ = scene_meaning(Scene.from_dict(scene))
    return (*subject.split(" "), relation)


@pytest.mark.slow  # a short training run (~30 s on TensorFlow, ~2 min on JAX)
def test_seen_combinations_are_the_val_clips_captioned_by_the_saved_model(tmp_path):
    root, out = str(tmp_path / "data"), str(tmp_path / "run")
    generate_procedural_dataset(root, num_clips=160, num_frames=2, frame_size=32, split="compositional")
    clips = load_msvd(root)
    train_run(clips, out, overrides=TINY, epochs=1, verbose=0)

    # The saved model, reloaded, captions the test clips as the run did.
    test = [clip for clip in clips if clip.split == "test"]
    with open(os.path.join(out, "predictions.json")) as handle:
        assert caption_run_clips(out, test) == json.load(handle)

    result = score_seen_combinations(out, root)
    val = {clip.clip_id for clip in clips if clip.split == "val"}
    with open(os.path.join(out, "scene_accuracy_val.json")) as handle:
        written = json.load(handle)
    assert set(written["predictions"]) == val and result["num_clips"] == len(val) > 0
    with open(os.path.join(root, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    held_out = set(held_out_combinations(0))
    assert all(_combination(scenes[clip_id]) not in held_out for clip_id in val)
    assert all(_combination(scenes[clip.clip_id]) in held_out for clip in test)
    with open(os.path.join(out, "metrics.json")) as handle:
        assert json.load(handle)["seen_scene_accuracy"] == result
