"""The held-out renderers (`sprites`, `outlines`) and the attribute grader."""

import os

import numpy as np
import pytest

from keras_pvc.datasets.heldout import attributes
from keras_pvc.datasets.heldout import outlines
from keras_pvc.datasets.heldout import sprites
from keras_pvc.datasets.heldout.attributes import grade_captions
from keras_pvc.datasets.heldout.attributes import parse_attributes
from heldout_testing import read_all_frames
from heldout_testing import read_metadata
from keras_pvc.datasets.msvd import load_msvd

NUM_CLIPS = 30


@pytest.fixture(scope="module", params=["sprites", "outlines"])
def heldout(request, tmp_path_factory):
    root = str(tmp_path_factory.mktemp(request.param))
    if request.param == "sprites":
        sprites.generate_sprites_dataset(root, num_clips=NUM_CLIPS, num_frames=20)
        return root, sprites
    outlines.generate_outlines_dataset(root, num_clips=NUM_CLIPS)
    return root, outlines


def test_writes_a_user_like_msvd_folder(heldout):
    root, module = heldout
    clips = load_msvd(root)
    assert len(clips) == NUM_CLIPS
    splits = [clip.split for clip in clips]
    assert splits.count("test") == round(0.2 * NUM_CLIPS) and "val" not in splits
    metadata = read_metadata(root)
    assert metadata["generator"] == module.GENERATOR
    assert set(metadata["scenes"]) == {clip.clip_id for clip in clips}
    for clip in clips[:5]:
        frames = read_all_frames(clip.video_path)
        scene = metadata["scenes"][clip.clip_id]
        expected = scene.get("num_frames", metadata.get("num_frames"))
        assert frames.shape == (expected, module.HEIGHT, module.WIDTH, 3)
        # The clip id's end second covers the whole clip.
        assert int(clip.clip_id.rsplit("_", 1)[1]) * module.FPS == expected
        assert len(set(clip.references)) == 6


def test_every_reference_reads_back_as_its_scene(heldout):
    root, _ = heldout
    scenes = read_metadata(root)["scenes"]
    shape_words = set()
    for clip in load_msvd(root):
        for reference in clip.references:
            grades = grade_captions(scenes, {clip.clip_id: reference})
            assert grades["per_clip"][clip.clip_id]["all"], reference
            shape_words.update(w for w in reference.split() if w in attributes.SHAPE_WORDS)
    # References name shapes with synonyms, not one word per shape.
    assert len(shape_words) > 3


def _colour_mask(frame, rgb, tolerance):
    distance = np.linalg.norm(frame.astype(float) - np.asarray(rgb, float), axis=-1)
    return distance < tolerance


def test_the_pixels_show_the_stated_motion(heldout):
    """One-shape clips, read back from the decoded video alone: the pixels
    of the shape's colour move (or grow) the way the captions say."""
    root, module = heldout
    metadata = read_metadata(root)
    checked = 0
    for clip in load_msvd(root):
        scene = metadata["scenes"][clip.clip_id]
        if scene["type"] != "single":
            continue
        frames = read_all_frames(clip.video_path)
        # Sprites have noisy backgrounds, outlines blurred thin strokes.
        tolerance = 45 if module is sprites else 95
        colour = module.COLORS[scene["mover"]["color"]]
        masks = [_colour_mask(frames[t], colour, tolerance) for t in (0, -1)]
        assert all(mask.sum() > 10 for mask in masks), clip.clip_id
        (y0, x0), (y1, x1) = (np.argwhere(mask).mean(axis=0) for mask in masks)
        area0, area1 = (mask.sum() for mask in masks)
        motion = scene["motion"]
        expected = {
            "left": x1 < x0 - 10,
            "right": x1 > x0 + 10,
            "up": y1 < y0 - 8,
            "down": y1 > y0 + 8,
            "grow": area1 > 2 * area0,
            "shrink": area0 > 2 * area1,
        }[motion]
        assert expected, (clip.clip_id, motion, (x0, y0, area0), (x1, y1, area1))
        checked += 1
    assert checked >= 8


def test_is_deterministic_and_does_not_share_procedural_code(heldout, tmp_path):
    root, module = heldout
    again = str(tmp_path / "again")
    if module is sprites:
        sprites.generate_sprites_dataset(again, num_clips=3, num_frames=20)
    else:
        outlines.generate_outlines_dataset(again, num_clips=3)
    with open(os.path.join(root, "video_corpus.csv")) as a, open(
        os.path.join(again, "video_corpus.csv")
    ) as b:
        lines = b.read().splitlines()
        assert a.read().splitlines()[: len(lines)] == lines
    with pytest.raises(ValueError, match="other parameters"):
        if module is sprites:
            sprites.generate_sprites_dataset(again, num_clips=4, num_frames=20)
        else:
            outlines.generate_outlines_dataset(again, num_clips=4)
    with open(module.__file__) as handle:
        assert "procedural" not in handle.read()


def test_parse_attributes_by_hand():
    assert parse_attributes("The red ball heads leftwards.") == {
        "objects": [("red", "circle")], "motion": "left", "relation": None,
    }
    assert parse_attributes("a blue box gets bigger")["motion"] == "grow"
    assert parse_attributes("an outlined yellow wedge deflates")["objects"] == [("yellow", "triangle")]
    said = parse_attributes("the green ring comes closer to the red block")
    assert said["objects"] == [("green", "circle"), ("red", "square")]
    assert said["relation"] == "toward"
    assert parse_attributes("a red circle moves left and right")["motion"] is None
    assert parse_attributes("a red thing moves up")["objects"] == [("red", None)]
    assert parse_attributes("")["objects"] == []


def test_grade_captions_counts_by_hand():
    single = {"type": "single", "mover": {"color": "red", "shape": "circle"}, "motion": "left"}
    pair = {
        "type": "pair",
        "mover": {"color": "blue", "shape": "square"},
        "relation": "away",
        "other": {"color": "red", "shape": "triangle"},
    }
    scenes = {"a": single, "b": single, "c": pair, "d": pair}
    predictions = {
        "a": "the red disc drifts left",  # all right
        "b": "a red square moves to the left",  # shape wrong
        "c": "a blue box retreats from the red triangle",  # all right
        "d": "a red triangle moves toward a blue square",  # roles and relation wrong
        "z": "no scene",  # ignored
    }
    grades = grade_captions(scenes, predictions)
    assert grades["single"] == {
        "num_clips": 2, "color": 1.0, "shape": 0.5, "motion": 1.0, "all": 0.5,
    }
    assert grades["pair"]["num_clips"] == 2 and grades["pair"]["all"] == 0.5
    assert grades["pair"]["mover_color"] == 0.5 and grades["pair"]["relation"] == 0.5
    assert grades["pair"]["other_shape"] == 0.5 and grades["pair"]["mover"] == 0.5
    assert set(grades["per_clip"]) == {"a", "b", "c", "d"}
    assert "100%" in attributes.format_grades(grades)
