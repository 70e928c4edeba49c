"""Bad input and faults (issue 16): every probe ends in a clear message naming
the file and the problem, nothing is read from outside the dataset, and the
rest of the run goes on."""

import csv
import os
import sys
import warnings

import cv2
import numpy as np
import pytest

from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.clip import DatasetError
from keras_pvc.datasets.clip import DatasetWarning
from keras_pvc.datasets.clip import clip_file
from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.msvd import CORPUS_HEADER

# Training goes through VideoCaptioner.train_step, which is TensorFlow-only
# until the JAX/torch port of keras_pvc/models/video_captioner.py lands.
tensorflow_training = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow",
    reason="VideoCaptioner.fit is TensorFlow-only until the backend port of "
    "video_captioner.py (another engineer) lands",
)


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CORPUS_HEADER)
        for video_id, start, end, language, description in rows:
            writer.writerow([video_id, start, end, 1, "clean", 10, language, description])


def write_clip(path, size=(32, 24), num_frames=6, level=None):
    """An MJPG clip of `num_frames` frames of `size` (width, height)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8.0, size)
    assert writer.isOpened()
    for index in range(num_frames):
        value = 60 + 30 * index if level is None else level
        frame = np.full((size[1], size[0], 3), value, np.uint8)
        frame[: size[1] // 2, : size[0] // 2] = 255 - value if level is None else level
        writer.write(frame)
    writer.release()
    return str(path)


class OpenedFiles:
    """Every path opened while active: Python's `open`/`os.open` (an audit
    hook) and OpenCV's `VideoCapture` (which opens files in C)."""

    def __init__(self, monkeypatch):
        import keras_pvc.video as video

        self.paths = []
        self.active = True
        real_capture = video.cv2.VideoCapture

        def capture(path, *args):
            self.paths.append(os.path.realpath(str(path)))
            return real_capture(path, *args)

        monkeypatch.setattr(video.cv2, "VideoCapture", capture)

        def hook(event, args):
            if self.active and event == "open" and isinstance(args[0], (str, bytes)):
                self.paths.append(os.path.realpath(os.fsdecode(args[0])))

        sys.addaudithook(hook)  # hooks cannot be removed: `stop` disarms it

    def stop(self):
        self.active = False


# --- Row 1: one rule for clip ids -------------------------------------------


@pytest.mark.parametrize(
    "clip_id, reason",
    [
        ("../../escape_0_1", "path separator"),
        ("a\\b_0_1", "path separator"),
        ("..", "names a folder"),
        ("", "empty"),
        ("bad\x00id", "control character"),
        (7, "not a str"),
    ],
)
def test_clip_id_rule_refuses_names_that_are_not_plain(clip_id, reason):
    assert reason in clip_id_problem(clip_id)


def test_clip_id_rule_refuses_a_symlink_out_of_the_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    outside = tmp_path / "secret.avi"
    outside.write_bytes(b"x")
    os.symlink(outside, folder / "link_0_1.avi")
    assert "resolves outside" in clip_id_problem("link_0_1.avi", folder)
    with pytest.raises(DatasetError, match="link_0_1") as info:
        clip_file(folder, "link_0_1", ".avi")
    assert str(folder) in str(info.value)
    assert clip_id_problem("-_hbPLsZvvo_18_25", folder) is None


@pytest.fixture
def escaping_msvd(tmp_path):
    """An MSVD folder with a good clip, a `../../escape` row and a symlink
    leaving the folder; the escape target holds a readable clip."""
    root = tmp_path / "datasets" / "msvd"
    videos = root / "YouTubeClips"
    videos.mkdir(parents=True)
    write_clip(videos / "good_0_1.avi")
    # YouTubeClips/../../escape_0_1.avi is tmp_path/datasets/escape_0_1.avi.
    escape = write_clip(tmp_path / "datasets" / "escape_0_1.avi")
    linked = write_clip(tmp_path / "linked_target.avi")
    os.symlink(linked, videos / "linked_0_1.avi")
    write_csv(
        root / "video_corpus.csv",
        [
            ("good", 0, 1, "English", "a good clip"),
            ("../../escape", 0, 1, "English", "a clip from outside"),
            ("linked", 0, 1, "English", "a clip linked from outside"),
        ],
    )
    return str(root), [os.path.realpath(escape), os.path.realpath(linked)]


def test_msvd_skips_escaping_ids_by_name_and_never_opens_them(escaping_msvd, monkeypatch):
    from keras_pvc.presets import preset_config
    from keras_pvc.training.runs import load_dataset_clips
    from keras_pvc.training.runs import read_clip_arrays

    root, outside = escaping_msvd
    opened = OpenedFiles(monkeypatch)
    with pytest.warns(DatasetWarning) as record:
        clips = load_dataset_clips("msvd", root)  # what `keras-pvc train` calls
    config = preset_config("procedural")
    arrays = read_clip_arrays(clips, config, verbose=0)
    opened.stop()
    message = " ".join(str(warning.message) for warning in record)
    assert "video_corpus.csv" in message
    assert "'../../escape_0_1'" in message and "path separator" in message
    assert "'linked_0_1'" in message and "resolves outside" in message
    assert [clip.clip_id for clip in clips] == ["good_0_1"]
    assert [clip.clip_id for clip in arrays.clips] == ["good_0_1"]
    assert any(path.endswith("good_0_1.avi") for path in opened.paths)
    for path in outside:
        assert path not in opened.paths


def test_extract_and_train_readers_apply_the_same_rule(tmp_path, escaping_msvd):
    """`keras-pvc extract` and the training reader refuse the same ids with
    the same reason, even for clips built by hand."""
    from keras_pvc.datasets.pipeline import read_clip_videos
    from keras_pvc.training.extract import extract_features
    from keras_pvc.layers import FrameCNN

    root, outside = escaping_msvd
    clip = Clip("../../escape_0_1", ["a clip"], "train", video_path=outside[0])
    arrays = read_clip_videos([clip], 2, (16, 16), verbose=False)
    assert arrays.clips == []
    (clip_id, reason), = arrays.failures
    assert clip_id == "../../escape_0_1" and "path separator" in reason
    report = extract_features(
        [clip], tmp_path / "features", FrameCNN("simple", filters=(4,)),
        num_frames=2, frame_size=(16, 16), verbose=0,
    )
    assert report.failed[0]["clip_id"] == "../../escape_0_1"
    assert "path separator" in report.failed[0]["reason"]


def test_msrvtt_and_youcook2_skip_escaping_ids(tmp_path):
    import json

    from keras_pvc.datasets.msrvtt import load_msrvtt
    from keras_pvc.datasets.youcook2 import load_youcook2

    msrvtt = tmp_path / "videodatainfo.json"
    msrvtt.write_text(json.dumps({
        "videos": [{"video_id": "video0", "split": "train"},
                   {"video_id": "../video1", "split": "train"}],
        "sentences": [{"video_id": "video0", "caption": "a man", "sen_id": 0}],
    }))
    with pytest.warns(DatasetWarning, match=r"'\.\./video1'.*path separator"):
        clips = load_msrvtt(msrvtt)
    assert [clip.clip_id for clip in clips] == ["video0"]
    youcook = tmp_path / "youcook.json"
    youcook.write_text(json.dumps({"database": {
        "ok": {"subset": "training", "annotations": [{"segment": [1, 2], "sentence": "cut"}]},
        "../up": {"subset": "training", "annotations": [{"segment": [1, 2], "sentence": "cut"}]},
    }}))
    with pytest.warns(DatasetWarning, match=r"youcook.json.*'\.\./up'.*path separator"):
        clips = load_youcook2(youcook)
    assert [clip.clip_id for clip in clips] == ["ok_1_2"]


# --- Row 3: every skipped csv row with its line number and reason -----------


def test_every_skipped_csv_row_has_its_line_and_reason(tmp_path):
    from keras_pvc.datasets.msvd import read_video_corpus

    path = tmp_path / "video_corpus.csv"
    write_csv(path, [
        ("a", 0, 1, "English", "a dog runs"),        # line 2: kept
        ("a", 0, 1, "English", ""),                   # 3: empty
        ("a", 0, 1, "English", "  A dog   RUNS "),    # 4: duplicate of 2
        ("", 0, 1, "English", "no id"),               # 5: missing VideoID
        ("b", 0, 1, "French", "un chien"),            # 6: other language
        ("b", 0, 1, "English", "a cat sits"),         # 7: kept
    ])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("c,0,1,1,clean,10,English\n")   # 8: no Description field
    with pytest.warns(DatasetWarning) as record:
        references, counts = read_video_corpus(path)
    assert references == {"a_0_1": ["a dog runs"], "b_0_1": ["a cat sits"]}
    assert counts["skipped"] == [
        (3, "empty Description"),
        (4, "repeats line 2 of clip 'a_0_1'"),
        (5, "no VideoID"),
        (6, "language 'French'"),
        (8, "no Description"),
    ]
    message = str(record[0].message)
    assert str(path) in message
    for text in ("line 3 (empty Description)", "line 4 (repeats line 2",
                 "line 5 (no VideoID)", "line 8 (no Description)", "lines 6"):
        assert text in message


def test_an_unparseable_csv_names_the_file_and_line(tmp_path):
    from keras_pvc.datasets.msvd import read_video_corpus

    path = tmp_path / "video_corpus.csv"
    write_csv(path, [("a", 0, 1, "English", "a dog runs")])
    with open(path, "ab") as handle:
        handle.write(b'b,0,1,1,clean,10,English,"' + b"x" * 200_000 + b'"\n')
    with pytest.raises(DatasetError, match=r"video_corpus.csv: cannot be parsed as csv after line 2 .field larger"):
        read_video_corpus(path)
    path.write_text("just,a,header\n")
    with pytest.raises(DatasetError, match="not an MSVD video_corpus.csv"):
        read_video_corpus(path)


# --- Row 2: clips too small, too short or too dark --------------------------


@pytest.mark.parametrize(
    "size, num_frames, level, reason",
    [
        ((1, 1), 6, None, "too small to be a video: 1x1 pixels"),
        ((32, 8), 6, None, "too small to be a video: 32x8 pixels"),
        ((32, 24), 1, None, "too short to be a video: 1 frame"),
        ((32, 24), 6, 0, "too dark to be a video"),
    ],
)
def test_read_frames_refuses_clips_that_are_not_videos(tmp_path, size, num_frames, level, reason):
    from keras_pvc.video import VideoReadError
    from keras_pvc.video import read_frames

    path = write_clip(tmp_path / "bad.avi", size=size, num_frames=num_frames, level=level)
    with pytest.raises(VideoReadError) as info:
        read_frames(path, 4, size=(64, 64))
    assert reason in str(info.value)
    assert path in str(info.value)


def test_bad_clips_are_reported_by_name_and_the_rest_is_read(tmp_path):
    from keras_pvc.datasets.pipeline import read_clip_videos
    from keras_pvc.video import MIN_PEAK_BRIGHTNESS

    clips = [
        Clip("tiny", ["x"], "train", video_path=write_clip(tmp_path / "tiny.avi", size=(1, 1))),
        Clip("good", ["x"], "train", video_path=write_clip(tmp_path / "good.avi")),
        Clip("still", ["x"], "train", video_path=write_clip(tmp_path / "still.avi", num_frames=1)),
        Clip("black", ["x"], "train", video_path=write_clip(tmp_path / "black.avi", level=3)),
        # Dark but not black: the brightest pixel just above the minimum.
        Clip("dim", ["x"], "train",
             video_path=write_clip(tmp_path / "dim.avi", level=MIN_PEAK_BRIGHTNESS + 8)),
    ]
    arrays = read_clip_videos(clips, 4, (16, 16), verbose=False)
    assert [clip.clip_id for clip in arrays.clips] == ["good", "dim"]
    reasons = dict(arrays.failures)
    assert sorted(reasons) == ["black", "still", "tiny"]
    assert "too small" in reasons["tiny"] and "tiny.avi" in reasons["tiny"]
    assert "too short" in reasons["still"] and "still.avi" in reasons["still"]
    assert "too dark" in reasons["black"] and "black.avi" in reasons["black"]
    assert arrays.videos.shape == (2, 4, 16, 16, 3)


# --- Row 7: raw captions in validation data and in a second fit -------------


def _caption_dataset(model, captions, seed):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(len(captions), 3, 4, 5)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(
        {"features": features, "frame_mask": np.ones((len(captions), 3), bool),
         "caption": list(captions)}
    ).batch(2)


def test_one_lookup_table_serves_several_tf_data_graphs():
    """What `fit(train, validation_data=val)` does with raw captions: the
    preprocessor mapped over two datasets (two graphs), then a third."""
    import tensorflow as tf

    from test_models import CAPTIONS
    from test_models import tiny_preprocessor

    preprocessor = tiny_preprocessor()
    expected = preprocessor.tokenize(CAPTIONS)
    for _ in range(3):
        dataset = tf.data.Dataset.from_tensor_slices(
            {"features": np.zeros((4, 3, 5), "float32"), "caption": CAPTIONS}
        ).batch(4).map(preprocessor)
        (x, labels, weights), = list(dataset)
        np.testing.assert_array_equal(x["token_ids"].numpy(), expected[:, :-1])
        np.testing.assert_array_equal(labels.numpy(), expected[:, 1:])


@pytest.mark.slow
@tensorflow_training
def test_fit_with_raw_caption_validation_data_and_a_second_fit():
    import keras

    from test_models import CAPTIONS
    from test_models import tiny_model

    keras.utils.set_random_seed(0)
    model = tiny_model()
    train_ds = _caption_dataset(model, CAPTIONS, 0)
    val_ds = _caption_dataset(model, CAPTIONS[:2], 1)
    history = model.fit(train_ds, validation_data=val_ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["val_loss"][0])
    table = model.preprocessor.lookup_table()
    # A second fit on a new dataset of strings reuses the one eager table.
    again = model.fit(_caption_dataset(model, CAPTIONS[::-1], 2), epochs=1, verbose=0)
    assert np.isfinite(again.history["loss"][0])
    assert model.preprocessor.lookup_table() is table
    # And the table tokenizes as the numpy path does.
    import tensorflow as tf

    ids = model.preprocessor._tf_tokenize(tf.constant(CAPTIONS + ["an unseen word"]))
    np.testing.assert_array_equal(
        ids.numpy(), model.preprocessor.tokenize(CAPTIONS + ["an unseen word"])
    )


# --- Row 6: the CLI's errors ------------------------------------------------

REFERENCES = {"v1": ["a man is playing a guitar"], "v2": ["a dog runs"],
              "v3": ["a cat sits on a mat"]}


def _json_file(path, value, bom=False):
    import json

    text = value if isinstance(value, str) else json.dumps(value)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return str(path)


def _run_cli(argv, capsys):
    from keras_pvc.apps.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "predictions, expected",
    [
        ('{"v1": "a man', "is not valid JSON"),
        ({}, "predictions is empty"),
        ({"v1": "a man", "nope": "x", "gone": "y"}, "2 of 3 predictions are for clips that have no references"),
        (["a list"], "must hold a JSON object"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
    ],
)
def test_evaluate_errors_are_one_line_naming_the_file(tmp_path, capsys, predictions, expected):
    references = _json_file(tmp_path / "refs.json", REFERENCES)
    if isinstance(predictions, bytes):
        (tmp_path / "preds.json").write_bytes(predictions)
        path = str(tmp_path / "preds.json")
    else:
        path = _json_file(tmp_path / "preds.json", predictions)
    code, out, err = _run_cli(["evaluate", path, references], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert expected in err and "preds.json" in err
    assert "Traceback" not in err + out


def test_evaluate_a_missing_path_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    from keras_pvc.apps.cli import main

    references = _json_file(tmp_path / "refs.json", REFERENCES)
    missing = str(tmp_path / "nowhere.json")
    code, _, err = _run_cli(["evaluate", missing, references], capsys)
    assert code == 1 and "nowhere.json not found" in err and err.count("\n") == 1
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        main(["--debug", "evaluate", missing, references])
    monkeypatch.setenv("KERAS_PVC_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        main(["evaluate", missing, references])


def test_evaluate_accepts_a_bom_and_warns_about_a_subset(tmp_path, capsys, monkeypatch):
    import json

    import keras_pvc.metrics.evaluate as evaluate

    # METEOR's jar takes seconds to start and is not what this checks.
    monkeypatch.setattr(evaluate, "corpus_meteor", lambda *args, **kwargs: (None, None, None))

    references = _json_file(tmp_path / "refs.json", REFERENCES, bom=True)
    predictions = _json_file(
        tmp_path / "preds.json", {"v1": "a man plays a guitar", "v2": "a dog runs"}, bom=True
    )
    out_json = str(tmp_path / "scores.json")
    code, out, err = _run_cli(
        ["evaluate", predictions, references, "--out", out_json], capsys
    )
    assert code == 0
    assert "WARNING: Scoring 2 of the 3 clips with references: 1 have no prediction" in err
    assert "'v3'" in err
    with open(out_json, encoding="utf-8") as handle:
        info = json.load(handle)["info"]
    assert (info["num_clips"], info["num_references"], info["unpredicted"]) == (2, 3, 1)
    assert "BLEU-4" in out


def test_any_command_error_is_one_line(tmp_path, capsys):
    code, _, err = _run_cli(
        ["caption", str(tmp_path / "a.avi"), "--model", str(tmp_path / "no_model")], capsys
    )
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "no_model" in err


# --- Row 5: preset folders that are not what they claim ----------------------


@pytest.fixture(scope="module")
def saved_preset(tmp_path_factory):
    from test_models import tiny_model

    folder = tmp_path_factory.mktemp("preset") / "model"
    tiny_model().save_to_preset(str(folder))
    return str(folder)


def _edit_json(path, edit):
    import json

    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    edit(data)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _truncate(path):
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


def _drop_two_words(data):
    vocabulary = data["config"]["vocabulary"]
    data["config"]["vocabulary"] = vocabulary[:-2]


def _unknown_keras_pvc_class(data):
    encoder = data["config"]["backbone"]["config"]["temporal_encoder"]
    encoder["class_name"], encoder["registered_name"] = "NoSuchLayer", "keras_pvc>NoSuchLayer"


def _unknown_keras_class(data):
    data["config"]["backbone"]["config"]["temporal_encoder"] = {
        "module": "keras.layers", "class_name": "NoSuchLSTM", "config": {},
        "registered_name": None,
    }


@pytest.mark.parametrize(
    "name, damage, culprit, expected",
    [
        ("no_weights", lambda f: os.remove(os.path.join(f, "model.weights.h5")),
         "model.weights.h5", "missing: a preset folder must hold"),
        ("no_preprocessor", lambda f: os.remove(os.path.join(f, "preprocessor.json")),
         "preprocessor.json", "missing"),
        ("truncated_weights", lambda f: _truncate(os.path.join(f, "model.weights.h5")),
         "model.weights.h5", "not a readable HDF5 weights file"),
        ("malformed_config", lambda f: open(os.path.join(f, "config.json"), "w").write("{bad"),
         "config.json", "not valid JSON"),
        ("short_vocabulary",
         lambda f: _edit_json(os.path.join(f, "preprocessor.json"), _drop_two_words),
         "preprocessor.json", "the vocabulary has 17 words but the caption decoder"),
        ("unknown_keras_pvc_class",
         lambda f: _edit_json(os.path.join(f, "task.json"), _unknown_keras_pvc_class),
         "task.json", "unknown class 'keras_pvc>NoSuchLayer'"),
        ("unknown_keras_class",
         lambda f: _edit_json(os.path.join(f, "task.json"), _unknown_keras_class),
         "task.json", "ValueError: Could not deserialize 'keras.layers.NoSuchLSTM'"),
    ],
)
def test_preset_loading_names_the_file_and_the_problem(
    saved_preset, tmp_path, name, damage, culprit, expected
):
    import shutil

    import keras_pvc
    from keras_pvc.presets import PresetError

    folder = str(tmp_path / name)
    shutil.copytree(saved_preset, folder)
    damage(folder)
    with pytest.raises(PresetError) as info:
        keras_pvc.from_preset(folder)
    message = str(info.value)
    # The file at fault leads the message, then the root cause.
    assert message.startswith(os.path.join(folder, culprit) + ": ")
    assert expected in message.split(": ", 1)[1][: len(expected) + 40]


def test_an_intact_preset_still_loads(saved_preset):
    import keras_pvc

    model = keras_pvc.from_preset(saved_preset)
    assert model.preprocessor.vocabulary_size == model.backbone.caption_decoder.vocabulary_size


def test_file_errors_share_one_base_and_carry_the_path(tmp_path):
    """PresetError, DatasetError and VideoReadError, raised by the real
    loaders, are all FileErrors (and ValueErrors) with `.path`/`.reason`, and
    survive pickling (multiprocessing workers raise them across processes)."""
    import pickle

    import keras_pvc
    from keras_pvc.datasets.msvd import read_video_corpus
    from keras_pvc.errors import FileError
    from keras_pvc.presets import PresetError
    from keras_pvc.video import VideoReadError
    from keras_pvc.video import read_frames

    corpus = tmp_path / "video_corpus.csv"
    corpus.write_text("just,a,header\n")
    (tmp_path / "empty_preset").mkdir()
    cases = [
        (lambda: read_video_corpus(corpus), DatasetError, str(corpus)),
        (
            lambda: keras_pvc.from_preset(str(tmp_path / "empty_preset")),
            PresetError,
            os.path.join(str(tmp_path / "empty_preset"), "config.json"),
        ),
        (lambda: read_frames(str(tmp_path / "none.mp4"), 4), VideoReadError, str(tmp_path / "none.mp4")),
    ]
    for load, error_type, path in cases:
        with pytest.raises(FileError) as info:
            load()
        error = info.value
        assert type(error) is error_type
        assert isinstance(error, ValueError)
        assert error.path == path
        assert path in str(error) and error.reason in str(error)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is error_type
        assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))
    # The two subclasses are unrelated siblings, as before.
    assert not issubclass(PresetError, DatasetError)
    assert not issubclass(DatasetError, PresetError)


# --- Row 8: fit on a dict of numpy arrays shuffles ---------------------------


def test_shuffled_numpy_dataset_reshuffles_every_epoch():
    from keras_pvc.models.numpy_inputs import shuffled_numpy_dataset

    inputs = {"index": np.arange(16), "caption": [f"word{i}" for i in range(16)]}
    dataset = shuffled_numpy_dataset(inputs, batch_size=4, seed=3)
    orders = [np.concatenate([batch["index"].numpy() for batch in dataset]) for _ in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(16))  # every example once
    assert orders[0].tolist() != list(range(16))
    assert orders[0].tolist() != orders[1].tolist()  # a new order each epoch
    with pytest.raises(ValueError, match="one row per example"):
        shuffled_numpy_dataset({"a": np.zeros(3), "b": np.zeros(4)})


@pytest.mark.slow
@tensorflow_training
def test_fit_on_a_numpy_dict_shuffles_without_a_warning(monkeypatch):
    import keras

    import keras_pvc.models.numpy_inputs as numpy_inputs
    from test_models import CAPTIONS
    from test_models import tiny_model

    seen = []
    real = numpy_inputs.shuffled_numpy_dataset

    def spy(inputs, batch_size=None, seed=None):
        seen.append((sorted(inputs), batch_size))
        return real(inputs, batch_size, seed)

    monkeypatch.setattr(numpy_inputs, "shuffled_numpy_dataset", spy)
    keras.utils.set_random_seed(0)
    model = tiny_model()
    features = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype("float32")
    inputs = {"features": features, "frame_mask": np.ones((4, 3), bool), "caption": CAPTIONS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(inputs, batch_size=2, epochs=2, shuffle=True, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert seen == [(["caption", "features", "frame_mask"], 2)]
    assert np.isfinite(history.history["loss"]).all()
    # shuffle=False keeps keras-hub's in-order batches.
    model.fit(inputs, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert len(seen) == 1


def test_train_on_a_missing_dataset_is_one_line(tmp_path, capsys):
    code, _, err = _run_cli(
        ["train", "--root", str(tmp_path / "no_msvd"), "--out", str(tmp_path / "run")], capsys
    )
    assert code == 1
    assert err.count("\n") == 1
    assert os.path.join(str(tmp_path / "no_msvd"), "video_corpus.csv") in err
    assert not (tmp_path / "run").exists()  # nothing written before the data is read
