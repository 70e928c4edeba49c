import csv
import json
import os
import re

import cv2
import numpy as np
import pytest

from keras_pvc.datasets import procedural
from keras_pvc.datasets.msvd import CORPUS_HEADER
from keras_pvc.datasets.procedural import COLORS
from keras_pvc.datasets.procedural import RELATIONS
from keras_pvc.datasets.procedural import Scene
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.datasets.procedural import render_scene
from keras_pvc.datasets.procedural import sample_scene
from keras_pvc.datasets.procedural import parse_caption
from keras_pvc.datasets.procedural import scene_accuracy
from keras_pvc.datasets.procedural import scene_captions
from keras_pvc.datasets.procedural import scene_meaning

SMALL = dict(num_clips=12, num_frames=6, frame_size=64)


def read_rgb_frames(path):
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames)


def read_corpus(root):
    with open(os.path.join(root, "video_corpus.csv"), newline="") as f:
        return list(csv.reader(f))


def references_by_clip(root):
    references = {}
    for row in read_corpus(root)[1:]:
        record = dict(zip(CORPUS_HEADER, row))
        clip = f"{record['VideoID']}_{record['Start']}_{record['End']}"
        references.setdefault(clip, []).append(record["Description"])
    return references


def load_scenes(root):
    with open(os.path.join(root, "metadata.json")) as f:
        metadata = json.load(f)
    return {c: Scene.from_dict(s) for c, s in metadata["scenes"].items()}


def color_centroids(frame):
    """(x, y) pixel centroid of each palette colour present in an RGB frame."""
    palette = np.array([procedural.BACKGROUND] + list(COLORS.values()), float)
    distance = np.linalg.norm(frame[:, :, None, :].astype(float) - palette, axis=-1)
    label = distance.argmin(-1)
    centroids = {}
    for index, name in enumerate(COLORS, start=1):
        ys, xs = np.nonzero((label == index) & (distance.min(-1) < 80))
        if len(xs) >= 10:
            centroids[name] = np.array([xs.mean(), ys.mean()])
    return centroids


def check_relation(relation, subject_path, object_path, frame_size):
    """Asserts a relation on centre paths `(T, 2)` of (x, y) in pixels, y down."""
    a0, a1 = subject_path[0], subject_path[-1]
    if relation in ("left_of", "right_of", "above", "below"):
        offset = object_path.mean(0) - subject_path.mean(0)
        along, across = (offset[0], offset[1])
        if relation in ("above", "below"):
            along, across = across, along
        if relation in ("right_of", "below"):
            along = -along
        assert along > 2 * abs(across) and along > 0.25 * frame_size, relation
    elif relation in ("toward", "away_from"):
        before = np.linalg.norm(a0 - object_path[0])
        after = np.linalg.norm(a1 - object_path[-1])
        change = after - before if relation == "away_from" else before - after
        assert change > 0.15 * frame_size, relation
        assert np.ptp(object_path, axis=0).max() < 0.05 * frame_size
    else:
        motion = a1 - a0
        axis = 0 if relation in ("moves_left", "moves_right") else 1
        sign = -1 if relation in ("moves_left", "moves_up") else 1
        assert sign * motion[axis] > 0.2 * frame_size, relation
        assert abs(motion[1 - axis]) < 0.05 * frame_size, relation


def test_layout(tmp_path):
    root = str(tmp_path / "shapes")
    assert generate_procedural_dataset(root, seed=3, **SMALL) == root
    rows = read_corpus(root)
    assert rows[0] == list(CORPUS_HEADER)
    assert all(len(row) == 8 and row[6] == "English" for row in rows[1:])

    references = references_by_clip(root)
    assert len(references) == SMALL["num_clips"]
    for refs in references.values():
        assert len(set(refs)) >= 5
        assert all(r == r.lower() and r.strip() == r for r in refs)

    with open(os.path.join(root, "split.tsv")) as f:
        lines = [line.rstrip("\n").split("\t") for line in f]
    splits = dict(lines)
    assert len(lines) == len(splits) == SMALL["num_clips"]
    assert set(splits) == set(references)
    assert set(splits.values()) == {"train", "val", "test"}

    for clip_id in references:
        match = re.fullmatch(r"([A-Za-z0-9]+)_(\d+)_(\d+)", clip_id)
        assert match, clip_id
        video = os.path.join(root, "YouTubeClips", clip_id + ".avi")
        capture = cv2.VideoCapture(video)
        assert capture.isOpened()
        assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == SMALL["frame_size"]
        assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == SMALL["frame_size"]
        capture.release()
        frames = read_rgb_frames(video)
        assert frames.shape == (SMALL["num_frames"], 64, 64, 3)
    assert sorted(os.listdir(os.path.join(root, "YouTubeClips"))) == sorted(
        c + ".avi" for c in references
    )

    with open(os.path.join(root, "metadata.json")) as f:
        metadata = json.load(f)
    for key, value in dict(seed=3, **SMALL).items():
        assert metadata[key] == value
    assert metadata["generator"] == procedural.GENERATOR
    assert 30 <= len(metadata["vocabulary"]) <= 50
    words = {w for refs in references.values() for r in refs for w in r.split()}
    assert words <= set(metadata["vocabulary"])
    assert not os.path.exists(os.path.join(root, ".procedural_in_progress.json"))


def test_deterministic_for_a_seed(tmp_path):
    roots = [str(tmp_path / name) for name in ("a", "b", "c")]
    for root, seed in zip(roots, (0, 0, 1)):
        generate_procedural_dataset(root, seed=seed, **SMALL)

    def content(root, name):
        with open(os.path.join(root, name), "rb") as f:
            return f.read()

    for name in ("video_corpus.csv", "split.tsv", "metadata.json"):
        assert content(roots[0], name) == content(roots[1], name)
    corpus = [content(root, "video_corpus.csv") for root in roots]
    assert corpus[0] != corpus[2]
    clip = sorted(os.listdir(os.path.join(roots[0], "YouTubeClips")))[0]
    frames = [read_rgb_frames(os.path.join(r, "YouTubeClips", clip)) for r in roots]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])

    # Clip i depends on (seed, i) only: a smaller dataset is a prefix.
    generate_procedural_dataset(str(tmp_path / "d"), seed=0, num_clips=3,
                                num_frames=6, frame_size=64)
    assert load_scenes(str(tmp_path / "d")).items() <= load_scenes(roots[0]).items()


def test_captions_match_decoded_pixels(tmp_path):
    root = str(tmp_path / "shapes")
    generate_procedural_dataset(root, seed=5, num_clips=24, num_frames=6)
    scenes = load_scenes(root)
    references = references_by_clip(root)
    for clip_id, scene in scenes.items():
        frames = read_rgb_frames(os.path.join(root, "YouTubeClips", clip_id + ".avi"))
        centers = procedural.shape_centers(scene, 6) * 64
        # The canonical caption names the subject first: "a red circle ...".
        subject = scene.shapes[scene.subject]
        assert references[clip_id][0].split()[1:3] == [subject.color, subject.kind]
        for shape, path in zip(scene.shapes, centers):
            for t in (0, 5):
                x, y = np.round(path[t]).astype(int)
                pixel = frames[t, y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(0)
                palette = np.array(list(COLORS.values()), float)
                nearest = list(COLORS)[np.linalg.norm(palette - pixel, axis=1).argmin()]
                assert nearest == shape.color, (clip_id, shape, pixel)
                r, g, b = pixel
                if shape.color == "red":
                    assert r > 150 and r > g + 100 and r > b + 100, pixel
                if shape.color == "blue":
                    assert b > 150 and b > r + 100, pixel
        # Relation truth on the decoded video, where colours tell shapes apart.
        if len(scene.shapes) == 1 or scene.shapes[0].color != scene.shapes[1].color:
            found = [color_centroids(frame) for frame in frames]
            paths = [np.stack([f[s.color] for f in found]) for s in scene.shapes]
            obj = paths[scene.object] if scene.object is not None else None
            check_relation(scene.relation, paths[scene.subject], obj, 64)


def test_relations_true_in_rendered_frames():
    for index in range(100):
        rng = np.random.default_rng([7, index])
        scene = sample_scene(rng)
        captions = scene_captions(scene, rng)
        assert len(set(captions)) == len(captions) >= 5
        assert captions[0] == scene_captions(scene)[0]
        # Geometry of every scene, same-coloured pairs included.
        centers = procedural.shape_centers(scene, 4) * 64
        obj = centers[scene.object] if scene.object is not None else None
        check_relation(scene.relation, centers[scene.subject], obj, 64)
        # And the pixels, where colours tell the shapes apart.
        colors = [s.color for s in scene.shapes]
        if len(set(colors)) == len(colors):
            frames = render_scene(scene, num_frames=4, frame_size=64)
            assert frames.dtype == np.uint8 and frames.shape == (4, 64, 64, 3)
            found = [color_centroids(frame) for frame in frames]
            paths = {c: np.stack([f[c] for f in found]) for c in colors}
            obj = paths[colors[scene.object]] if scene.object is not None else None
            check_relation(scene.relation, paths[colors[scene.subject]], obj, 64)


def test_captions_need_relations():
    relations_by_pair = {}
    seen = set()
    for index in range(400):  # the scenes of the default 400-clip dataset
        scene = sample_scene(np.random.default_rng([0, index]))
        seen.add(scene.relation)
        if len(scene.shapes) == 2:
            names = [s.name for s in scene.shapes]
            assert names[0] != names[1]
            pair = frozenset(names)
            relations_by_pair.setdefault(pair, set()).add(scene_captions(scene)[0])
    assert seen == set(RELATIONS)
    ambiguous = [p for p, captions in relations_by_pair.items() if len(captions) > 1]
    assert len(ambiguous) >= 20


def test_idempotent_and_overwrite(tmp_path):
    root = str(tmp_path / "shapes")
    generate_procedural_dataset(root, **SMALL)
    metadata = os.path.join(root, "metadata.json")
    stamp = os.stat(metadata).st_mtime_ns
    video = os.path.join(root, "YouTubeClips", "proc00000_0_1.avi")
    video_stamp = os.stat(video).st_mtime_ns
    generate_procedural_dataset(root, **SMALL)
    assert os.stat(metadata).st_mtime_ns == stamp
    assert os.stat(video).st_mtime_ns == video_stamp

    with pytest.raises(ValueError, match="overwrite"):
        generate_procedural_dataset(root, num_clips=5, num_frames=6)
    with pytest.raises(ValueError):
        generate_procedural_dataset(root, seed=1, **SMALL)
    generate_procedural_dataset(root, num_clips=5, num_frames=6, overwrite=True)
    assert len(references_by_clip(root)) == 5
    assert len(os.listdir(os.path.join(root, "YouTubeClips"))) == 5
    with open(metadata) as f:
        assert json.load(f)["num_clips"] == 5


def test_crash_leaves_no_metadata_and_resumes(tmp_path, monkeypatch):
    root = str(tmp_path / "shapes")
    write_video = procedural.write_video
    calls = []

    def crashing_write_video(path, frames, **kwargs):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        write_video(path, frames, **kwargs)

    monkeypatch.setattr(procedural, "write_video", crashing_write_video)
    with pytest.raises(KeyboardInterrupt):
        generate_procedural_dataset(root, **SMALL)
    assert not os.path.exists(os.path.join(root, "metadata.json"))
    assert not os.path.exists(os.path.join(root, "video_corpus.csv"))

    calls.clear()
    monkeypatch.setattr(procedural, "write_video", write_video)
    generate_procedural_dataset(root, **SMALL)
    fresh = str(tmp_path / "fresh")
    generate_procedural_dataset(fresh, **SMALL)
    for name in ("video_corpus.csv", "split.tsv", "metadata.json"):
        with open(os.path.join(root, name)) as a, open(os.path.join(fresh, name)) as b:
            assert a.read() == b.read()
    assert sorted(os.listdir(os.path.join(root, "YouTubeClips"))) == sorted(
        os.listdir(os.path.join(fresh, "YouTubeClips"))
    )


def test_foreign_corpus_is_not_overwritten(tmp_path):
    root = tmp_path / "msvd"
    root.mkdir()
    (root / "video_corpus.csv").write_text(",".join(CORPUS_HEADER) + "\n")
    with pytest.raises(ValueError, match="overwrite"):
        generate_procedural_dataset(str(root), **SMALL)
    generate_procedural_dataset(str(root), overwrite=True, **SMALL)
    assert len(references_by_clip(str(root))) == SMALL["num_clips"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate_procedural_dataset(str(tmp_path), split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError):
        generate_procedural_dataset(str(tmp_path), num_frames=1)


def test_every_reference_parses_back_to_its_scene():
    for index in range(300):
        scene = sample_scene(np.random.default_rng([3, index]))
        for caption in scene_captions(scene):
            assert scene_meaning(scene) in parse_caption(caption), caption


def test_parse_caption_by_hand():
    assert parse_caption("A red circle is to the right of a blue square.") == {
        ("left_of", "blue square", "red circle")
    }
    assert parse_caption("the green triangle is under the red circle") == {
        ("above", "red circle", "green triangle")
    }
    # "move apart" does not say which shape moves: both readings.
    assert parse_caption("the red circle and the blue square move apart") == {
        ("away_from", "red circle", "blue square"),
        ("away_from", "blue square", "red circle"),
    }
    assert parse_caption("a yellow square goes up") == {("moves_up", "yellow square", None)}
    assert parse_caption("a purple circle goes up") is None  # not a colour here
    assert parse_caption("a red circle is near a blue square") is None
    assert parse_caption("") is None


def test_scene_accuracy_counts_by_hand():
    red, blue = ("red", "circle"), ("blue", "square")
    left = Scene(
        (
            procedural.Shape(*red, 0.1, (0.2, 0.5), (0.2, 0.5)),
            procedural.Shape(*blue, 0.1, (0.7, 0.5), (0.7, 0.5)),
        ),
        "left_of", 0, 1,
    )
    mover = Scene((procedural.Shape(*red, 0.1, (0.2, 0.5), (0.7, 0.5)),), "moves_right", 0)
    scenes = {"a": left, "b": left.to_dict(), "c": left, "d": mover, "e": mover}
    predictions = {
        "a": "the blue square is on the right of the red circle",  # right
        "b": "a red circle is to the right of a blue square",  # roles swapped
        "c": "a red circle is above a green square",  # wrong relation and shape
        "d": "a red circle moves to the right",  # right
        "e": "a red circle circle",  # no template
        "unknown": "a red circle goes up",  # no scene: ignored
    }
    result = scene_accuracy(scenes, predictions)
    assert result["num_clips"] == 5
    assert result["per_clip"] == {"a": True, "b": False, "c": False, "d": True, "e": False}
    assert result["exact"] == pytest.approx(2 / 5)
    assert result["shapes"] == pytest.approx(3 / 5)  # a, b, d
    assert result["relation"] == pytest.approx(3 / 5)  # a, b, d
    assert result["parsed"] == pytest.approx(4 / 5)
    # Per attribute (hand-counted): b keeps only the relation (its roles are
    # swapped), c its subject and the object's kind; three clips have an object.
    attributes = result["attributes"]
    assert attributes["num_clips"] == 5 and attributes["num_pair_clips"] == 3
    assert attributes["subject_color"] == pytest.approx(3 / 5)  # a, c, d
    assert attributes["subject_kind"] == pytest.approx(3 / 5)
    assert attributes["subject"] == pytest.approx(3 / 5)
    assert attributes["relation"] == pytest.approx(3 / 5)  # a, b, d
    assert attributes["object_color"] == pytest.approx(1 / 3)  # a
    assert attributes["object_kind"] == pytest.approx(2 / 3)  # a, c
    assert attributes["object"] == pytest.approx(1 / 3)


def test_compositional_split_tests_only_unseen_combinations(tmp_path):
    compositional = str(tmp_path / "compositional")
    generate_procedural_dataset(compositional, num_clips=240, num_frames=2, frame_size=16, split="compositional")
    random_root = str(tmp_path / "random")
    generate_procedural_dataset(random_root, num_clips=240, num_frames=2, frame_size=16)
    with open(os.path.join(compositional, "metadata.json")) as f:
        metadata = json.load(f)
    with open(os.path.join(random_root, "metadata.json")) as f:
        assert "split" not in json.load(f)  # the default's metadata as before
    held_out = {tuple(c) for c in metadata["held_out_combinations"]}
    assert held_out == set(procedural.held_out_combinations(0)) and len(held_out) == 16
    with open(os.path.join(compositional, "split.tsv")) as f:
        splits = dict(line.split() for line in f)
    meanings = {c: scene_meaning(Scene.from_dict(s)) for c, s in metadata["scenes"].items()}

    def combination(meaning):
        return tuple(meaning[1].split()) + (meaning[0],)

    by_split = {name: [c for c in splits if splits[c] == name] for name in ("train", "val", "test")}
    assert all(by_split.values())
    for clip_id in by_split["test"]:
        assert combination(meanings[clip_id]) in held_out
    for clip_id in by_split["train"] + by_split["val"]:
        assert combination(meanings[clip_id]) not in held_out
    train_meanings = {meanings[c] for c in by_split["train"]}
    assert not any(meanings[c] in train_meanings for c in by_split["test"])
    # ...although every colour, shape and relation of the test is trained on.
    trained = [combination(meanings[c]) for c in by_split["train"]]
    for position in range(3):
        assert {t[position] for t in trained} >= {
            combination(meanings[c])[position] for c in by_split["test"]
        }
    # Train : val keeps the asked 0.8 : 0.05 ratio; videos and references are
    # the random split's.
    assert len(by_split["val"]) == round(
        (len(by_split["train"]) + len(by_split["val"])) * 0.05 / 0.85
    )
    for name in ("video_corpus.csv", os.path.join("YouTubeClips", "proc00007_0_1.avi")):
        with open(os.path.join(compositional, name), "rb") as a, open(
            os.path.join(random_root, name), "rb"
        ) as b:
            assert a.read() == b.read()
    with pytest.raises(ValueError, match="split"):
        generate_procedural_dataset(str(tmp_path / "bad"), split="by_colour")
