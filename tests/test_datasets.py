"""Tests for the dataset loaders and split rules, on fixtures in the real schemas."""

import collections
import json
import os
import pickle
import shutil
import warnings

import cv2
import numpy as np
import pytest

from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.msrvtt import load_msrvtt
from keras_pvc.datasets.msvd import (
    CORPUS_FIELDS,
    CORPUS_HEADER,
    load_feature_clips,
    load_features,
    load_msvd,
    missing_videos,
    read_video_corpus,
)
from keras_pvc.datasets.splits import assign_splits, hash_split, read_split_file
from keras_pvc.datasets.youcook2 import load_youcook2

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MSVD = os.path.join(FIXTURES, "msvd")
MSVD_REFERENCES = {
    "-4wsuPCjDBc_5_15": ["A squirrel is eating a peanut in its shell.", "A chipmunk eats."],
    "-_hbPLsZvvo_18_25": ["A dog is barking.", "A dog, a small one, barks at the camera."],
    "mv89psg6zh4_33_46": ["A bird is bathing in a sink.", "A parakeet takes a bath."],
    "9Q0JfdP36kI_23_28": ["A man is slicing a tomato.", "Someone cuts a tomato with a knife."],
    "ZbzDGXEwtGc_6_15": ["A woman is riding a horse.", "A lady rides a horse on a beach."],
    "zv2RIbUsnSw_335_341": ["A cat is playing the piano."],
}


def write_tiny_avi(path, num_frames=6):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, (32, 24))
    for index in range(num_frames):
        writer.write(np.full((24, 32, 3), 40 * index, np.uint8))
    writer.release()


@pytest.fixture
def msvd_copy(tmp_path):
    """The MSVD fixture's csv alone (no split.tsv, no mapping) in tmp_path."""
    shutil.copy(os.path.join(MSVD, "video_corpus.csv"), tmp_path / "video_corpus.csv")
    return tmp_path


# --- MSVD -------------------------------------------------------------------


def test_corpus_header_is_msvds():
    # The header the procedural and held-out writers use is the one in the
    # MSVD fixture's csv (MSVD's own file, cut down), and holds every column
    # read_video_corpus needs.
    with open(os.path.join(MSVD, "video_corpus.csv"), encoding="utf-8-sig") as handle:
        header = handle.readline().rstrip("\r\n").split(",")
    assert list(CORPUS_HEADER) == header
    assert set(CORPUS_FIELDS) <= set(CORPUS_HEADER)


def test_read_video_corpus_counts():
    with pytest.warns(UserWarning, match="2 rows missing a field") as record:
        references, counts = read_video_corpus(os.path.join(MSVD, "video_corpus.csv"))
    assert references == MSVD_REFERENCES
    skipped = counts.pop("skipped")
    assert counts == dict(
        rows=21, kept=11, other_language=5, missing_fields=2, empty=1, duplicate=2
    )
    # Line numbers of the fixture's file (line 1 is the header).
    assert skipped == [
        (3, "repeats line 2 of clip '-4wsuPCjDBc_5_15'"),
        (4, "language 'French'"),
        (8, "language 'German'"),
        (9, "empty Description"),
        (11, "language 'Spanish'"),
        (12, "repeats line 10 of clip 'mv89psg6zh4_33_46'"),
        (19, "language 'Chinese'"),
        (20, "no VideoID"),
        (21, "no End"),
        (22, "language 'French'"),
    ]
    message = str(record[0].message)
    assert "video_corpus.csv" in message
    for text in ("line 20 (no VideoID)", "line 21 (no End)", "line 9 (empty Description)",
                 "line 3 (repeats line 2", "lines 4, 8, 11, 19, 22"):
        assert text in message
    with pytest.warns(UserWarning):
        french, _ = read_video_corpus(os.path.join(MSVD, "video_corpus.csv"), "French")
    assert set(french) == {"-4wsuPCjDBc_5_15", "onlyfrench1_1_9"}


def test_load_msvd_uses_root_split_file():
    with pytest.warns(UserWarning) as record:
        clips = load_msvd(MSVD)
    messages = " ".join(str(warning.message) for warning in record)
    assert "1 clip not listed in the split file" in messages
    assert all(isinstance(clip, Clip) for clip in clips)
    assert [clip.clip_id for clip in clips] == list(MSVD_REFERENCES)[:5]
    assert [clip.split for clip in clips] == ["train", "train", "val", "test", "test"]
    assert clips[1].clip_id == "-_hbPLsZvvo_18_25"  # VideoID with '-' and '_'
    assert clips[1].references == MSVD_REFERENCES["-_hbPLsZvvo_18_25"]
    assert clips[0].video_path == os.path.join(MSVD, "YouTubeClips", "-4wsuPCjDBc_5_15.avi")
    assert clips[0].features_path is None
    assert clips[0].start is None and clips[0].end is None
    assert len(missing_videos(clips)) == 5


def test_load_msvd_videos_and_features(msvd_copy):
    video_dir = msvd_copy / "YouTubeClips"
    video_dir.mkdir()
    write_tiny_avi(video_dir / "-4wsuPCjDBc_5_15.avi")
    write_tiny_avi(video_dir / "mv89psg6zh4_33_46.mp4")  # another extension
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_msvd(msvd_copy, features_dir=msvd_copy / "features")
    by_id = {clip.clip_id: clip for clip in clips}
    assert set(by_id) == set(MSVD_REFERENCES)  # the hash split keeps every clip
    assert by_id["mv89psg6zh4_33_46"].video_path.endswith("mv89psg6zh4_33_46.mp4")
    assert by_id["9Q0JfdP36kI_23_28"].video_path.endswith("9Q0JfdP36kI_23_28.avi")
    assert by_id["9Q0JfdP36kI_23_28"].features_path == os.path.join(
        msvd_copy, "features", "9Q0JfdP36kI_23_28.npy"
    )
    missing = {clip.clip_id for clip in missing_videos(clips)}
    assert missing == set(MSVD_REFERENCES) - {"-4wsuPCjDBc_5_15", "mv89psg6zh4_33_46"}
    # The files the loader names are readable videos.
    from keras_pvc.video import read_frames

    frames, frame_mask = read_frames(by_id["-4wsuPCjDBc_5_15"].video_path, 4)
    assert frames.shape == (4, 24, 32, 3) and frame_mask.all()


def test_load_msvd_mapping_gives_standard_split(msvd_copy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_msvd(msvd_copy, mapping_file=os.path.join(MSVD, "youtube_mapping.txt"))
    splits = {clip.clip_id: clip.split for clip in clips}
    assert splits == {
        "-4wsuPCjDBc_5_15": "train",  # vid1
        "-_hbPLsZvvo_18_25": "train",  # vid1200
        "mv89psg6zh4_33_46": "val",  # vid1201
        "9Q0JfdP36kI_23_28": "val",  # vid1300
        "ZbzDGXEwtGc_6_15": "test",  # vid1301
        "zv2RIbUsnSw_335_341": "test",  # vid1970
    }
    # An explicit split file beats the mapping.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_msvd(
            msvd_copy,
            split_file=os.path.join(MSVD, "split.tsv"),
            mapping_file=os.path.join(MSVD, "youtube_mapping.txt"),
        )
    assert {clip.clip_id: clip.split for clip in clips}["9Q0JfdP36kI_23_28"] == "test"


def test_load_msvd_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_msvd(tmp_path)


def test_load_msvd_wrong_header(tmp_path):
    (tmp_path / "video_corpus.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="header lacks"):
        load_msvd(tmp_path)


# --- Split rules ------------------------------------------------------------


def test_read_split_file():
    splits = read_split_file(os.path.join(MSVD, "split.tsv"))
    assert splits == {
        "-4wsuPCjDBc_5_15": "train",
        "-_hbPLsZvvo_18_25": "train",
        "mv89psg6zh4_33_46": "val",
        "9Q0JfdP36kI_23_28": "test",
        "ZbzDGXEwtGc_6_15": "test",
    }


@pytest.mark.parametrize(
    "text, line, problem",
    [
        ("a_1_2\ttrain\nb_1_2\tvalidation\n", 2, "split must be one of"),
        ("# header\n\na_1_2\n", 3, "expected"),
        ("a_1_2\ttrain\tx\n", 1, "expected"),
        ("a_1_2\ttrain\na_1_2\ttest\n", 2, "already in split"),
    ],
)
def test_bad_split_file_lines(tmp_path, text, line, problem):
    path = tmp_path / "split.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        read_split_file(path)
    assert f"{path}, line {line}:" in str(info.value)


def test_split_file_wins_and_drops_unlisted(tmp_path):
    path = tmp_path / "split.tsv"
    path.write_text("a_1_2\tval\nc_1_2\ttest\n")
    mapping = {"a_1_2": 1, "b_1_2": 2, "c_1_2": 3}
    with pytest.warns(UserWarning, match="1 clip not listed"):
        splits = assign_splits(["a_1_2", "b_1_2", "c_1_2"], split_file=path, standard=mapping)
    assert splits == {"a_1_2": "val", "c_1_2": "test"}


def test_mapping_gives_standard_boundaries(tmp_path):
    clip_ids = [f"clip{number:04d}_0_10" for number in range(1, 1971)]
    mapping_path = tmp_path / "youtube_mapping.txt"
    # Written shuffled: the vid number decides, not the line order.
    order = np.random.default_rng(0).permutation(1970)
    mapping_path.write_text(
        "".join(f"{clip_ids[index]} vid{index + 1}\n" for index in order)
    )
    with pytest.warns(UserWarning, match="1 clip not numbered vid1..vid1970"):
        splits = assign_splits(clip_ids + ["unmapped_0_1"], standard=mapping_path)
    assert collections.Counter(splits.values()) == {"train": 1200, "val": 100, "test": 670}
    assert splits["clip1200_0_10"] == "train" and splits["clip1201_0_10"] == "val"
    assert splits["clip1300_0_10"] == "val" and splits["clip1301_0_10"] == "test"
    assert splits["clip1970_0_10"] == "test"
    assert "unmapped_0_1" not in splits


def test_bad_mapping_line(tmp_path):
    path = tmp_path / "youtube_mapping.txt"
    path.write_text("a_1_2 vid1\nb_1_2 video2\n")
    with pytest.raises(ValueError, match=r"youtube_mapping.txt, line 2"):
        assign_splits(["a_1_2"], standard=path)


def test_hash_split_is_stable_and_proportional():
    clip_ids = [f"v{index:05d}_{index % 7}_{index % 7 + 5}" for index in range(5000)]
    splits = assign_splits(clip_ids)
    assert splits == assign_splits(list(reversed(clip_ids)))
    assert splits == assign_splits(clip_ids[:100] + clip_ids[100:])
    # A clip's split depends on its id alone.
    assert assign_splits(clip_ids[:10]) == {c: splits[c] for c in clip_ids[:10]}
    counts = collections.Counter(splits.values())
    assert abs(counts["train"] / 5000 - 1200 / 1970) < 0.03
    assert abs(counts["val"] / 5000 - 100 / 1970) < 0.015
    assert abs(counts["test"] / 5000 - 670 / 1970) < 0.03
    # Pinned values: a change of hash would silently move clips between splits.
    assert [hash_split(c) for c in ("-4wsuPCjDBc_5_15", "video0", "a", "b")] == [
        "train",
        "test",
        "test",
        "train",
    ]


# --- Seed features ----------------------------------------------------------


def test_load_feature_clips_and_features(tmp_path):
    features_dir = tmp_path / "features"
    features_dir.mkdir()
    np.save(features_dir / "-4wsuPCjDBc_5_15.npy", np.ones((80, 4096), np.float64))
    np.save(features_dir / "mv89psg6zh4_33_46.npy", np.zeros((8, 49, 16), np.float16))
    with pytest.warns(UserWarning, match="2 rows missing"), pytest.warns(
        UserWarning, match="4 clips"
    ):
        clips = load_feature_clips(
            features_dir,
            os.path.join(MSVD, "video_corpus.csv"),
            mapping_file=os.path.join(MSVD, "youtube_mapping.txt"),
        )
    assert [(clip.clip_id, clip.split) for clip in clips] == [
        ("-4wsuPCjDBc_5_15", "train"),
        ("mv89psg6zh4_33_46", "val"),
    ]
    assert all(clip.video_path is None for clip in clips)
    pooled = load_features(clips[0].features_path)
    assert pooled.shape == (80, 4096) and pooled.dtype == np.float32
    grid = load_features(clips[1].features_path)
    assert grid.shape == (8, 49, 16) and grid.dtype == np.float32


def test_load_feature_clips_keeps_missing_when_asked(msvd_copy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_feature_clips(
            msvd_copy / "features", msvd_copy / "video_corpus.csv", drop_missing=False
        )
    assert {clip.clip_id for clip in clips} == set(MSVD_REFERENCES)
    # A split.tsv beside the csv is used: it leaves out one clip.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_feature_clips(
            msvd_copy, os.path.join(MSVD, "video_corpus.csv"), drop_missing=False
        )
    assert {clip.clip_id for clip in clips} == set(MSVD_REFERENCES) - {
        "zv2RIbUsnSw_335_341"
    }


def test_load_features_refuses_pickles_and_bad_files(tmp_path):
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot be loaded") as info:
        load_features(objects)
    assert str(objects) in str(info.value) and "allow_pickle" in str(info.value)

    raw_pickle = tmp_path / "raw.npy"
    raw_pickle.write_bytes(pickle.dumps(np.ones((2, 2))))
    with pytest.raises(ValueError) as info:
        load_features(raw_pickle)
    assert str(raw_pickle) in str(info.value)

    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_features(garbage)

    rank_one = tmp_path / "rank_one.npy"
    np.save(rank_one, np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        load_features(rank_one)

    strings = tmp_path / "strings.npy"
    np.save(strings, np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="not numbers"):
        load_features(strings)

    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_features(tmp_path / "nope.npy")


# --- MSR-VTT ----------------------------------------------------------------


def test_load_msrvtt():
    json_path = os.path.join(FIXTURES, "msrvtt", "videodatainfo.json")
    for source in (json_path, os.path.dirname(json_path)):
        clips = load_msrvtt(source)
        assert [(clip.clip_id, clip.split) for clip in clips] == [
            ("video0", "train"),
            ("video1", "train"),
            ("video6513", "val"),
            ("video7010", "test"),
        ]
        assert clips[0].references == [
            "a cartoon animals runs through an ice cave in a video game",
            "a car is shown",
        ]
        assert clips[1].references == ["a person is discussing a car"]
        assert clips[2].references == ["a man cooks food in a kitchen"]
        assert all(clip.video_path is None for clip in clips)  # no videos beside it
        assert all(clip.start is None and clip.end is None for clip in clips)
    clips = load_msrvtt(json_path, video_dir="/data/msrvtt/videos")
    assert clips[3].video_path == os.path.join("/data/msrvtt/videos", "video7010.mp4")


def test_load_msrvtt_finds_videos_and_parts(tmp_path):
    source = json.load(open(os.path.join(FIXTURES, "msrvtt", "videodatainfo.json")))
    train_val = dict(source, videos=source["videos"][:3])
    test = dict(source, videos=source["videos"][3:])
    (tmp_path / "train_val_videodatainfo.json").write_text(json.dumps(train_val))
    (tmp_path / "test_videodatainfo.json").write_text(json.dumps(test))
    (tmp_path / "TrainValVideo").mkdir()
    (tmp_path / "TrainValVideo" / "video1.mp4").write_bytes(b"")
    clips = load_msrvtt(tmp_path)
    assert [clip.clip_id for clip in clips] == ["video0", "video1", "video6513", "video7010"]
    assert clips[1].video_path == os.path.join(tmp_path, "TrainValVideo", "video1.mp4")
    assert clips[0].video_path is None
    with pytest.raises(FileNotFoundError):
        load_msrvtt(tmp_path / "nothing")


# --- YouCook2 ---------------------------------------------------------------


def test_load_youcook2(tmp_path):
    json_path = os.path.join(FIXTURES, "youcook2", "youcookii_annotations.json")
    video_dir = tmp_path / "raw_videos"
    (video_dir / "113").mkdir(parents=True)
    (video_dir / "validation" / "226").mkdir(parents=True)
    (video_dir / "113" / "GLd3aX16zBg.mp4").write_bytes(b"")
    (video_dir / "113" / "GLd3aX16zBg.info.json").write_bytes(b"")  # not a video
    (video_dir / "validation" / "226" / "xHr8X2Wpmno.webm").write_bytes(b"")
    with pytest.warns(UserWarning, match="2 segments"):
        clips = load_youcook2(json_path, video_dir=video_dir)
    assert [(clip.clip_id, clip.split, clip.start, clip.end) for clip in clips] == [
        ("GLd3aX16zBg_90_102", "train", 90.0, 102.0),
        ("GLd3aX16zBg_114_127", "train", 114.0, 127.0),
        ("xHr8X2Wpmno_12.5_20", "val", 12.5, 20.0),
        ("V53XmPeyjIU_5_17", "test", 5.0, 17.0),
    ]
    assert clips[0].references == ["spread margarine on two slices of white bread"]
    assert clips[0].video_path == os.path.join(video_dir, "113", "GLd3aX16zBg.mp4")
    assert clips[2].video_path == os.path.join(
        video_dir, "validation", "226", "xHr8X2Wpmno.webm"
    )
    assert clips[3].video_path is None
    # A flat folder beats a recipe folder.
    (video_dir / "GLd3aX16zBg.mkv").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clips = load_youcook2(json_path, video_dir=video_dir)
    assert clips[0].video_path == os.path.join(video_dir, "GLd3aX16zBg.mkv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_youcook2(json_path)[0].video_path is None


def test_load_youcook2_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"videos": []}')
    with pytest.raises(ValueError, match="no 'database'"):
        load_youcook2(path)


# --split-file for MSR-VTT and YouCook2 (issue 21): the file wins over the
# json's splits, and what it does not list is dropped with a warning.


def test_msrvtt_split_file_wins_over_the_json(tmp_path):
    from keras_pvc.training.runs import load_dataset_clips

    json_path = os.path.join(FIXTURES, "msrvtt", "videodatainfo.json")
    split_file = tmp_path / "split.tsv"
    split_file.write_text("video0\ttest\nvideo6513\ttrain\nvideo7010\tval\n")
    with pytest.warns(UserWarning, match="1 clip not listed in the split file"):
        clips = load_dataset_clips("msrvtt", json_path, split_file=str(split_file))
    assert {clip.clip_id: clip.split for clip in clips} == {
        "video0": "test", "video6513": "train", "video7010": "val",
    }
    default = {clip.clip_id: clip.split for clip in load_msrvtt(json_path)}
    assert default["video0"] == "train" and default["video6513"] == "val"
    # Captions are those of the json, whatever the split.
    assert {c.clip_id: c.references for c in clips}["video0"] == [
        c.references for c in load_msrvtt(json_path) if c.clip_id == "video0"
    ][0]
    split_file.write_text("video0\tholdout\n")
    with pytest.raises(ValueError, match="split.tsv, line 1: split must be one of"):
        load_dataset_clips("msrvtt", json_path, split_file=str(split_file))


def test_youcook2_split_file_by_segment_or_by_video(tmp_path):
    from keras_pvc.training.runs import load_dataset_clips

    json_path = os.path.join(FIXTURES, "youcook2", "youcookii_annotations.json")
    split_file = tmp_path / "split.tsv"
    # A whole video to test, one of its segments back to train; the
    # validation video unlisted (dropped).
    split_file.write_text(
        "GLd3aX16zBg\ttest\nGLd3aX16zBg_114_127\ttrain\nV53XmPeyjIU\tval\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = load_dataset_clips("youcook2", json_path, split_file=str(split_file))
    assert {clip.clip_id: clip.split for clip in clips} == {
        "GLd3aX16zBg_90_102": "test",
        "GLd3aX16zBg_114_127": "train",
        "V53XmPeyjIU_5_17": "val",
    }
    assert any("1 clip not listed in the split file" in str(w.message) for w in caught)
    default = {clip.clip_id: clip.split for clip in load_youcook2(json_path)}
    assert default["GLd3aX16zBg_90_102"] == "train" and default["V53XmPeyjIU_5_17"] == "test"
