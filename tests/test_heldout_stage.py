"""The third held-out renderer, `stage`, and the grader words it added."""

import os

import cv2
import numpy as np
import pytest

from keras_pvc.datasets.heldout import attributes
from keras_pvc.datasets.heldout import stage
from keras_pvc.datasets.heldout.attributes import grade_captions
from keras_pvc.datasets.heldout.attributes import parse_attributes
from heldout_testing import read_all_frames
from heldout_testing import read_metadata
from keras_pvc.datasets.msvd import load_msvd

NUM_CLIPS = 30


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("stage"))
    return stage.generate_stage_dataset(folder, num_clips=NUM_CLIPS)


def test_writes_a_user_like_msvd_folder(root):
    clips = load_msvd(root)
    assert len(clips) == NUM_CLIPS
    splits = [clip.split for clip in clips]
    assert splits.count("test") == round(0.2 * NUM_CLIPS) and "val" not in splits
    metadata = read_metadata(root)
    assert metadata["generator"] == stage.GENERATOR
    assert set(metadata["scenes"]) == {clip.clip_id for clip in clips}
    lengths = set()
    for clip in clips[:6]:
        frames = read_all_frames(clip.video_path)
        expected = metadata["scenes"][clip.clip_id]["num_frames"]
        lengths.add(expected)
        assert frames.shape == (expected, stage.HEIGHT, stage.WIDTH, 3)
        # The clip id's end second covers the whole clip.
        assert int(clip.clip_id.rsplit("_", 1)[1]) * stage.FPS == expected
        assert len(set(clip.references)) == 8
    # Not square, and clips of more than one length.
    assert stage.WIDTH != stage.HEIGHT and len(lengths) > 1
    kinds = [scene["type"] for scene in metadata["scenes"].values()]
    assert 0 < kinds.count("single") < NUM_CLIPS


def test_every_reference_reads_back_as_exactly_its_scene(root):
    scenes = read_metadata(root)["scenes"]
    words = set()
    for clip in load_msvd(root):
        scene = scenes[clip.clip_id]
        truth = attributes.scene_attributes(scene)
        for reference in clip.references:
            said = attributes.caption_attributes(reference, scene["type"])
            assert said == truth, reference
            parsed = parse_attributes(reference)
            # Exactly the named shapes: no distractor, no stray object.
            assert len(parsed["objects"]) == (1 if scene["type"] == "single" else 2), reference
            words.update(reference.split())
    # The words this renderer brings, graded as the others are.
    assert {"sphere", "cube", "pyramid"} <= words


def _saturated(frame):
    """Pixels of a named colour: the stage and distractors are near-grey."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    mask = ((hsv[..., 1] > 110) & (hsv[..., 2] > 50)).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)) > 0


def _hue_mask(frame, rgb):
    """Saturated pixels whose hue is nearest the named colour's."""
    hues = {name: cv2.cvtColor(np.uint8([[c]]), cv2.COLOR_RGB2HSV)[0, 0, 0] for name, c in stage.COLORS.items()}
    target = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV)[0, 0, 0]
    hue = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)[..., 0].astype(int)

    def gap(h):  # OpenCV hue is 0..179, circular
        d = np.abs(hue - int(h))
        return np.minimum(d, 180 - d)

    nearest = np.argmin(np.stack([gap(h) for h in hues.values()]), axis=0)
    return _saturated(frame) & (np.asarray(list(hues.values()))[nearest] == target)


def test_the_pixels_show_the_stated_motion(root):
    """From the decoded video alone: saturated pixels (the one named shape)
    move or change area the way the references say, beyond the camera pan."""
    metadata = read_metadata(root)
    checked = 0
    for clip in load_msvd(root):
        scene = metadata["scenes"][clip.clip_id]
        if scene["type"] != "single":
            continue
        frames = read_all_frames(clip.video_path)
        masks = [_saturated(frames[t]) for t in (0, -1)]
        assert all(mask.sum() > 10 for mask in masks), clip.clip_id
        (y0, x0), (y1, x1) = (np.argwhere(mask).mean(axis=0) for mask in masks)
        area0, area1 = (mask.sum() for mask in masks)
        expected = {
            "left": x1 < x0 - 15,
            "right": x1 > x0 + 15,
            "up": y1 < y0 - 10,
            "down": y1 > y0 + 10,
            "grow": area1 > 2.5 * area0,
            "shrink": area0 > 2.5 * area1,
        }[scene["motion"]]
        assert expected, (clip.clip_id, scene["motion"], (x0, y0, area0), (x1, y1, area1))
        checked += 1
    assert checked >= 8


def test_the_pixels_show_the_stated_relation(root):
    """Pairs of two colours: the gap between the two hues' centroids closes
    (toward) or opens (away) between the first and the last frame."""
    metadata = read_metadata(root)
    checked = 0
    for clip in load_msvd(root):
        scene = metadata["scenes"][clip.clip_id]
        if scene["type"] != "pair" or scene["mover"]["color"] == scene["other"]["color"]:
            continue
        frames = read_all_frames(clip.video_path)
        gaps = []
        for t in (0, -1):
            centres = []
            for spec in (scene["mover"], scene["other"]):
                mask = _hue_mask(frames[t], stage.COLORS[spec["color"]])
                assert mask.sum() > 8, clip.clip_id
                centres.append(np.argwhere(mask).mean(axis=0))
            gaps.append(np.linalg.norm(centres[0] - centres[1]))
        closer = gaps[1] < gaps[0] - 12
        farther = gaps[1] > gaps[0] + 12
        assert closer if scene["relation"] == "toward" else farther, (clip.clip_id, gaps)
        checked += 1
    assert checked >= 5


def test_is_deterministic_given_a_seed(root, tmp_path):
    again = stage.generate_stage_dataset(str(tmp_path / "again"), num_clips=3)
    other = stage.generate_stage_dataset(str(tmp_path / "other"), num_clips=3, seed=1)
    with open(os.path.join(root, "video_corpus.csv")) as a, open(
        os.path.join(again, "video_corpus.csv")
    ) as b:
        lines = b.read().splitlines()
        assert a.read().splitlines()[: len(lines)] == lines
    first = read_metadata(root)["scenes"]
    assert all(first[key] == value for key, value in read_metadata(again)["scenes"].items())
    assert read_metadata(other)["scenes"] != read_metadata(again)["scenes"]
    # Frames too: the same scene renders the same pixels (noise is seeded).
    scene = next(iter(read_metadata(again)["scenes"].values()))
    np.testing.assert_array_equal(stage.render(scene), stage.render(scene))
    with pytest.raises(ValueError, match="other parameters"):
        stage.generate_stage_dataset(again, num_clips=4)
    with open(stage.__file__) as handle:
        assert "procedural" not in handle.read()


def test_the_stage_changes_per_clip_and_the_camera_moves(root):
    """Backdrops differ between clips; a static region drifts with the pan."""
    metadata = read_metadata(root)
    clips = load_msvd(root)
    firsts = [read_all_frames(clip.video_path)[0].astype(float) for clip in clips[:4]]
    assert min(np.abs(a - b).mean() for i, a in enumerate(firsts) for b in firsts[i + 1:]) > 3
    scene = metadata["scenes"][clips[0].clip_id]
    pan = np.subtract(scene["camera"]["pan_end"], scene["camera"]["pan_start"])
    mover = scene["mover"]
    still_mover = dict(mover, start=mover["end"], radius=[mover["radius"][1]] * 2)
    still = dict(scene, distractors=[], mover=still_mover)
    frames = stage.render(still).astype(np.float32).mean(axis=-1)
    # The shift that best aligns the last frame on the first: the pan.
    (dx, dy), _ = cv2.phaseCorrelate(frames[0], frames[-1])
    assert abs(dx + pan[0]) < 2.0 and abs(dy + pan[1]) < 2.0, ((dx, dy), pan)


def test_parse_attributes_reads_the_stage_words():
    assert parse_attributes("a red sphere ascends") == {
        "objects": [("red", "circle")], "motion": "up", "relation": None,
    }
    assert parse_attributes("we see a blue cube descending")["motion"] == "down"
    assert parse_attributes("the green pyramid balloons")["objects"] == [("green", "triangle")]
    assert parse_attributes("a yellow cube enlarges")["motion"] == "grow"
    assert parse_attributes("the red ball dwindles")["motion"] == "shrink"
    assert parse_attributes("a blue box diminishes")["motion"] == "shrink"
    said = parse_attributes("a red sphere converges on a yellow pyramid")
    assert said["objects"] == [("red", "circle"), ("yellow", "triangle")]
    assert said["relation"] == "toward"
    assert parse_attributes("the green cube withdraws from the blue ball")["relation"] == "away"
    # A distractor's unnamed colour is no object colour.
    assert parse_attributes("a white pillar and a red cube")["objects"] == [("red", "square")]


def test_grade_captions_on_stage_words_by_hand():
    single = {"type": "single", "mover": {"color": "yellow", "shape": "triangle"}, "motion": "down"}
    pair = {"type": "pair", "mover": {"color": "green", "shape": "square"}, "relation": "toward",
            "other": {"color": "blue", "shape": "circle"}}
    grades = grade_captions(
        {"a": single, "b": pair},
        {"a": "the yellow pyramid descends", "b": "a green cube withdraws from a blue sphere"},
    )
    assert grades["single"]["all"] == 1.0
    assert grades["pair"]["mover"] == 1.0 and grades["pair"]["other"] == 1.0
    assert grades["pair"]["relation"] == 0.0 and grades["pair"]["all"] == 0.0
