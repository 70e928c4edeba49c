"""Fuzz tests of every loader: damaged inputs end in a documented error that
names the file, or in a skip, never in another exception or a hang.

Each loader gets inputs derived from a valid file by a fixed-seed generator
(random truncations, random bytes including non-UTF-8 ones, JSON values
replaced by wrong types and huge values, deep nesting, huge fields). The
default suite tries a few per loader (seconds); `-m slow` tries many more.
Every test prints its counts: inputs tried and each outcome.
"""

import collections
import json
import os
import shutil
import signal
import warnings

import numpy as np
import pytest

from keras_pvc.datasets.clip import DatasetError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SEED = 20261201
FAST, SLOW = 24, 400  # inputs per loader in the default suite / under -m slow
PER_INPUT_SECONDS = 20  # a loader taking longer on one input counts as a hang

WRONG_VALUES = [None, True, -1, 0, 10**30, 1e308, float("inf"), "", "x" * 100_000,
                [], {}, [[[]]], {"a": {"b": None}}, "\udcff", "../../escape", -1e308]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_fuzz(name, inputs, load, errors, path_of):
    """Runs `load(case)` for every case; returns the outcome counts.

    An outcome is `loaded`, `skipped` (loaded with a warning), or the
    documented error's type name; the error's message must name
    `path_of(case)`. Anything else fails the test.
    """
    outcomes = collections.Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for number, case in enumerate(inputs):
            signal.alarm(PER_INPUT_SECONDS)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    load(case)
                outcomes["skipped" if caught else "loaded"] += 1
            except errors as error:
                expected = path_of(case)
                assert expected in str(error), (name, number, str(error)[:500])
                outcomes[type(error).__name__] += 1
            except Hang:
                pytest.fail(f"{name} input {number}: no answer in {PER_INPUT_SECONDS} s")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    outcomes["inputs"] = sum(outcomes.values())
    print(f"\nfuzz {name}: {dict(outcomes)}")
    return outcomes


# === Byte-level and JSON-level damage ===


def damage_bytes(data, rng):
    """One random byte-level damage of `data`."""
    kind = rng.integers(5)
    if kind == 0:  # truncation
        return data[: rng.integers(len(data))]
    if kind == 1:  # random bytes (mostly not UTF-8) over a random span
        start = rng.integers(len(data))
        return data[:start] + rng.bytes(rng.integers(1, 64)) + data[start + rng.integers(64):]
    if kind == 2:  # a few flipped bytes
        array = bytearray(data)
        for index in rng.integers(len(array), size=rng.integers(1, 8)):
            array[index] ^= int(rng.integers(1, 256))
        return bytes(array)
    if kind == 3:  # Latin-1 and invalid UTF-8 sequences spliced in
        start = rng.integers(len(data))
        return data[:start] + b"\xe9\xff\xfe\xc3(" + data[start:]
    return data * int(rng.integers(2, 4))  # repeated content


def _json_slots(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_slots(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_slots(item, path + (index,))


def damage_json(data, rng):
    """`data` (parsed JSON) with one random value replaced by a wrong one."""
    data = json.loads(json.dumps(data))
    slots = list(_json_slots(data))
    path = slots[rng.integers(len(slots))]
    wrong = WRONG_VALUES[rng.integers(len(WRONG_VALUES))]
    if rng.integers(6) == 0:
        # A long list (20,000 items; 200 of the 100 kB string, 20 MB, not
        # 2 GB: the alarm looks for hangs, not for disk and parse speed).
        repeats = 200 if isinstance(wrong, str) and len(wrong) > 1000 else 20_000
        wrong = [wrong] * repeats if rng.integers(2) else {"deep": None}
        if isinstance(wrong, dict):
            for _ in range(5000):  # nesting deeper than json's recursion limit
                wrong = {"deep": wrong}
    if not path:
        return wrong
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = wrong
    return data


def json_text(value):
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except RecursionError:  # too deep for the writer: write it by hand
        return b'{"deep": ' * 5000 + b"null" + b"}" * 5000


def damaged_files(original, rng, count, structured):
    """`count` damaged versions of a file's bytes, byte- or JSON-level."""
    with open(original, "rb") as handle:
        data = handle.read()
    parsed = json.loads(data) if structured else None
    for _ in range(count):
        if structured and rng.integers(2):
            yield json_text(damage_json(parsed, rng))
        else:
            yield damage_bytes(data, rng)


# === One test per loader ===


def _fuzz_file_loader(tmp_path, name, original, file_name, load, count, structured):
    rng = np.random.default_rng(SEED)
    path = str(tmp_path / file_name)

    def cases():
        for content in damaged_files(original, rng, count, structured):
            with open(path, "wb") as handle:
                handle.write(content)
            yield path

    return run_fuzz(name, cases(), load, (DatasetError,), lambda case: case)


def _msvd(path):
    from keras_pvc.datasets.msvd import read_video_corpus

    references, counts = read_video_corpus(path)
    assert isinstance(references, dict) and counts["rows"] >= counts["kept"]


def _msrvtt(path):
    from keras_pvc.datasets.msrvtt import load_msrvtt

    clips = load_msrvtt(path)
    assert all(isinstance(clip.clip_id, str) for clip in clips)


def _youcook2(path):
    from keras_pvc.datasets.youcook2 import load_youcook2

    clips = load_youcook2(path)
    assert all(clip.end > clip.start >= 0 for clip in clips)


LOADERS = {
    "msvd_csv": (os.path.join(FIXTURES, "msvd", "video_corpus.csv"), "video_corpus.csv", _msvd, False),
    "msrvtt_json": (os.path.join(FIXTURES, "msrvtt", "videodatainfo.json"), "videodatainfo.json", _msrvtt, True),
    "youcook2_json": (
        os.path.join(FIXTURES, "youcook2", "youcookii_annotations.json"),
        "youcookii_annotations.json", _youcook2, True,
    ),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fuzz_annotation_loaders(tmp_path, name):
    original, file_name, load, structured = LOADERS[name]
    outcomes = _fuzz_file_loader(tmp_path, name, original, file_name, load, FAST, structured)
    assert outcomes["inputs"] == FAST


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fuzz_annotation_loaders_many(tmp_path, name):
    original, file_name, load, structured = LOADERS[name]
    outcomes = _fuzz_file_loader(tmp_path, name, original, file_name, load, SLOW, structured)
    assert outcomes["inputs"] == SLOW


# --- features folder ---


def _features_folder(tmp_path):
    from keras_pvc.datasets.clip import Clip

    folder = tmp_path / "features"
    folder.mkdir()
    rng = np.random.default_rng(0)
    clips = []
    for index in range(3):
        clip_id = f"clip{index}_0_1"
        np.save(folder / f"{clip_id}.npy", rng.normal(size=(4, 2, 3)).astype("float16"))
        np.save(folder / f"{clip_id}.mask.npy", np.array([True, True, True, False]))
        clips.append(Clip(clip_id, ["a clip"], "train"))
    return folder, clips


def fuzz_features(tmp_path, count):
    from keras_pvc.datasets.features import load_feature_arrays
    from keras_pvc.datasets.msvd import load_features

    folder, clips = _features_folder(tmp_path)
    pristine = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    names = sorted(pristine)
    rng = np.random.default_rng(SEED)

    def cases():
        for _ in range(count):
            for name, data in pristine.items():
                (folder / name).write_bytes(data)
            name = names[rng.integers(len(names))]
            (folder / name).write_bytes(damage_bytes(pristine[name], rng))
            yield str(folder / name)

    def load(path):
        # The folder reader skips a damaged clip (or names the folder when
        # none is left); the single-file reader names the file.
        arrays = load_feature_arrays(clips, folder)
        for clip_id, reason in arrays.failures:
            assert clip_id in path and clip_id in reason
        if not path.endswith(".mask.npy"):
            try:
                load_features(path)
            except (DatasetError, FileNotFoundError) as error:
                assert path in str(error)

    return run_fuzz("features_folder", cases(), load, (DatasetError,), lambda case: str(folder))


def test_fuzz_features_folder(tmp_path):
    assert fuzz_features(tmp_path, FAST)["inputs"] == FAST


@pytest.mark.slow
def test_fuzz_features_folder_many(tmp_path):
    assert fuzz_features(tmp_path, SLOW)["inputs"] == SLOW


# --- preset folder ---


@pytest.fixture(scope="module")
def saved_preset(tmp_path_factory):
    from test_models import tiny_model

    folder = tmp_path_factory.mktemp("fuzz_preset") / "model"
    tiny_model().save_to_preset(str(folder))
    return str(folder)


def fuzz_preset(saved_preset, tmp_path, count):
    import keras_pvc
    from keras_pvc.presets import PresetError

    names = ["config.json", "preprocessor.json", "task.json", "metadata.json", "model.weights.h5"]
    rng = np.random.default_rng(SEED)
    folder = str(tmp_path / "model")

    def cases():
        for _ in range(count):
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(saved_preset, folder)
            name = names[rng.integers(len(names))]
            path = os.path.join(folder, name)
            if rng.integers(8) == 0:
                os.remove(path)
            else:
                structured = name.endswith(".json")
                content = next(damaged_files(path, rng, 1, structured))
                with open(path, "wb") as handle:
                    handle.write(content)
            yield folder

    return run_fuzz(
        "preset_folder", cases(), keras_pvc.from_preset, (PresetError,), lambda case: case
    )


def test_fuzz_preset_folder(saved_preset, tmp_path):
    count = 12  # each load builds a model: a smaller default sample
    assert fuzz_preset(saved_preset, tmp_path, count)["inputs"] == count


@pytest.mark.slow
def test_fuzz_preset_folder_many(saved_preset, tmp_path):
    assert fuzz_preset(saved_preset, tmp_path, 150)["inputs"] == 150
