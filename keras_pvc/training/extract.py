"""Caching frame-CNN features on disk: `keras-pvc extract`.

`extract_features` reads every clip's video, runs a `FrameCNN` on its frames
and writes one file per clip, so training reads small feature arrays instead
of decoding videos and running an ImageNet CNN every epoch.

The folder it writes:

```
out_dir/
    <clip_id>.npy         # features: (T, N, C) regions or (T, C) pooled,
                          # float16 by default; padding frames are zeros
    <clip_id>.mask.npy    # frame mask: bool (T,), False on padding frames
    manifest.json         # how the features were made (see below)
    extract_report.json   # the clips that could not be read, and why
```

`<clip_id>.npy` is the seed project's layout (one plain `.npy` per clip, read
by `keras_pvc.datasets.msvd.load_feature_clips`, memory-mappable); the mask
sits in its own small `.npy` so both load with `allow_pickle=False` and a
folder of the seed's features (no masks) still loads: a missing mask means
every frame is real. `keras_pvc.datasets.features` reads the folder back.

A clip counts as done when its `.npy` exists, its header gives the expected
shape and dtype, its size matches the header, and its mask exists. Both files
are written under a temporary name and moved into place with `os.replace`
(mask first, features last), so a run that is killed never leaves a file that
looks done: a rerun skips the finished clips and redoes the rest.

`manifest.json` records the `FrameCNN`'s config, a SHA-1 of its weights,
`num_frames`, `frame_size`, the feature shape and dtype, counts and timings,
and the keras_pvc version. A folder whose manifest disagrees on any of the
settings that shape the features is refused (`ValueError` naming each
difference), so features of two backbones never mix.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import time

import numpy as np

from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.feature_files import FEATURES_SUFFIX
from keras_pvc.datasets.feature_files import MASK_SUFFIX
from keras_pvc.datasets.feature_files import REPORT_NAME
from keras_pvc.datasets.feature_files import extract_failures  # noqa: F401 (re-exported)
from keras_pvc.datasets.feature_files import feature_file_problem
from keras_pvc.datasets.feature_files import features_path
from keras_pvc.datasets.feature_files import is_complete  # noqa: F401
from keras_pvc.datasets.feature_files import mask_path
from keras_pvc.datasets.feature_files import mask_path_for  # noqa: F401
from keras_pvc.datasets.feature_files import read_npy_header  # noqa: F401
from keras_pvc.video import read_frames

MANIFEST_NAME = "manifest.json"
# Temporary files are `<final name>.partial-<pid>`.
PARTIAL_MARKER = ".partial-"
FORMAT_VERSION = 1

# Manifest keys that must agree for features to share a folder.
_MATCHING_KEYS = (
    "frame_cnn",
    "weights_sha1",
    "num_frames",
    "frame_size",
    "feature_shape",
    "dtype",
)


@dataclasses.dataclass
class ExtractionReport:
    """What `extract_features` did.

    Attributes:
        out_dir: str. The folder written.
        done: list of str. Clip ids extracted by this run.
        skipped: list of str. Clip ids already complete in `out_dir`.
        failed: list of dict `{"clip_id", "path", "reason"}`: clips whose
            video could not be read (missing, empty, corrupt, no frames).
        feature_shape: tuple. One clip's features, `(T, N, C)` or `(T, C)`.
        dtype: str. The features' dtype.
        timings: dict. Seconds: `total` (the whole call), `setup`
            (building the CNN, hashing its weights, checking the folder),
            `loop` (decoding, CNN and writing: `total - setup`), `decode`
            (time the decoding threads spent in `read_frames`, summed over
            clips; it overlaps the CNN), `decode_wait` (time the CNN waited
            for decoded frames: decoding that was not hidden), of which
            `decode_wait_first` for the first clip (the pipeline filling), `cnn`,
            `write`. Shares of `loop`: `decode_share`, `decode_wait_share`,
            `cnn_share`. Speeds over `loop`: `clips_per_second`,
            `frames_per_second` (real frames through the CNN), and
            `real_frames`.
    """

    out_dir: str
    done: list
    skipped: list
    failed: list
    feature_shape: tuple
    dtype: str
    timings: dict

    def summary(self):
        """One line: counts and speed."""
        timings = self.timings
        return (
            f"{len(self.done)} clips extracted, {len(self.skipped)} already "
            f"done, {len(self.failed)} failed; "
            f"{timings.get('clips_per_second', 0.0):.2f} clips/s, "
            f"{timings.get('frames_per_second', 0.0):.1f} frames/s, decoding "
            f"{100 * timings.get('decode_share', 0.0):.0f}% of the time "
            f"(CNN waited {100 * timings.get('decode_wait_share', 0.0):.0f}%)."
        )


def _as_frame_cnn(frame_cnn):
    from keras_pvc.layers import FrameCNN

    if isinstance(frame_cnn, FrameCNN):
        return frame_cnn
    if isinstance(frame_cnn, str):
        return FrameCNN(frame_cnn)
    if isinstance(frame_cnn, dict):
        return FrameCNN.from_config(frame_cnn)
    raise TypeError(
        "`frame_cnn` must be a keras_pvc.layers.FrameCNN, a backbone name or "
        f"a FrameCNN config dict; got {type(frame_cnn).__name__}."
    )


def _json_normalise(value):
    """Tuples -> lists etc., as the value reads back from JSON."""
    return json.loads(json.dumps(value))


def _frame_cnn_config(frame_cnn):
    config = dict(frame_cnn.get_config())
    # The layer's name and trainability do not change its features.
    config.pop("name", None)
    config.pop("trainable", None)
    config.pop("trainable_backbone", None)
    return _json_normalise(config)


def _weights_sha1(frame_cnn):
    import keras

    digest = hashlib.sha1()
    for weight in sorted(frame_cnn.weights, key=lambda weight: weight.path):
        digest.update(weight.path.encode())
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def read_manifest(out_dir):
    """The `manifest.json` of a features folder as a dict, or None if absent.

    Compare its `frame_cnn`, `num_frames`, `frame_size` and `feature_shape`
    with a model's before training it on the folder.
    """
    path = os.path.join(os.fspath(out_dir), MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _check_manifest(out_dir, manifest):
    """Raises ValueError if `out_dir` holds features made another way."""
    path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.exists(path):
        stray = [
            name
            for name in os.listdir(out_dir)
            if name.endswith(FEATURES_SUFFIX) and PARTIAL_MARKER not in name
        ]
        if stray:
            raise ValueError(
                f"{out_dir!r} already holds {len(stray)} .npy files (e.g. "
                f"{stray[0]!r}) but no {MANIFEST_NAME}, so how they were made "
                "is unknown. Extract into an empty folder (or delete them)."
            )
        return
    try:
        with open(path, encoding="utf-8") as file:
            existing = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the existing manifest {path!r}: {error}")
    differences = []
    for key in _MATCHING_KEYS:
        if key in manifest and existing.get(key) != manifest[key]:
            if key == "frame_cnn" and isinstance(existing.get(key), dict):
                old, new = existing[key], manifest[key]
                keys = sorted(set(old) | set(new))
                detail = ", ".join(
                    f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
                    for name in keys
                    if old.get(name) != new.get(name)
                )
                differences.append(f"frame_cnn config ({detail})")
            else:
                differences.append(
                    f"{key}: {existing.get(key)!r} in the folder, "
                    f"{manifest[key]!r} in this run"
                )
    if differences:
        raise ValueError(
            f"{out_dir!r} holds features made with different settings; "
            "refusing to mix them. Differences: "
            + "; ".join(differences)
            + ". Use another out_dir, or delete the old features."
        )


def _write_json(path, value):
    partial = f"{path}{PARTIAL_MARKER}{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2)
        file.write("\n")
    os.replace(partial, path)


def _save_npy(path, array):
    """Writes `array` to `path` atomically (temporary name, then os.replace)."""
    partial = f"{path}{PARTIAL_MARKER}{os.getpid()}"
    with open(partial, "wb") as file:
        np.save(file, array, allow_pickle=False)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def _remove_stale_partials(out_dir):
    """Deletes temporary files left by runs that no longer exist."""
    for name in os.listdir(out_dir):
        if PARTIAL_MARKER not in name:
            continue
        pid = name.rsplit(PARTIAL_MARKER, 1)[1]
        alive = False
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            try:
                os.remove(os.path.join(out_dir, name))
            except OSError:
                pass


# The last extractor model built, as `(frame_cnn, frame_size, model)`: repeated
# calls with the same FrameCNN (a benchmark's warm-up, a CLI extracting several
# splits) reuse its traced predict function. One entry, so at most one
# FrameCNN is kept alive by it.
_LAST_EXTRACTOR = [None]


def _extractor_model(frame_cnn, frame_size):
    """A model `(1, T, H, W, 3) -> features` for any number of frames `T`."""
    import keras

    last = _LAST_EXTRACTOR[0]
    if last is not None and last[0] is frame_cnn and last[1] == frame_size:
        return last[2]
    frames_input = keras.Input((None,) + frame_size + (3,), name="frames")
    model = keras.Model(frames_input, frame_cnn(frames_input), name="extractor")
    _LAST_EXTRACTOR[0] = (frame_cnn, frame_size, model)
    return model


def _version():
    import keras_pvc

    return keras_pvc.__version__


def extract_features(
    clips,
    out_dir,
    frame_cnn,
    num_frames,
    frame_size,
    dtype="float16",
    batch_size=32,
    workers=2,
    verbose=1,
    on_clip_written=None,
):
    """Extracts frame-CNN features of every clip's video into `out_dir`.

    Each clip's video is sampled with `read_frames` (`num_frames` frames,
    resized to `frame_size`), its real frames go through `frame_cnn` (padding
    frames of short clips are not computed: their features are zeros and
    their mask False) and the result is saved as `<out_dir>/<clip_id>.npy`
    with the frame mask as `<out_dir>/<clip_id>.mask.npy` (see the module
    docstring for the folder's layout and `manifest.json`).

    Decoding runs ahead in `workers` threads (OpenCV releases the GIL),
    feeding a bounded queue of decoded clips that the CNN consumes in order,
    so decoding overlaps the CNN. Clips already complete in `out_dir` are
    skipped, so an interrupted run resumes where it stopped. Clips whose video
    is missing, empty, corrupt or gives no frame are skipped and listed in
    `<out_dir>/extract_report.json` (`clip_id`, `path`, `reason`); they never
    stop the run (and are retried by the next one).

    Args:
        clips: list of `keras_pvc.datasets.Clip` with `video_path` (and
            optional `start`/`end` in seconds). Repeated clip ids are
            extracted once.
        out_dir: str or path-like. The folder; created if needed.
        frame_cnn: `keras_pvc.layers.FrameCNN` (or a backbone name, or a
            FrameCNN config dict), e.g.
            `FrameCNN("efficientnet_lite0", backbone_weights="imagenet")`.
        num_frames: int. Frames sampled per clip (the feature's `T`).
        frame_size: tuple `(height, width)`. Frames are resized to it.
        dtype: str. The stored dtype, `"float16"` (default: half the disk;
            features that overflow it are reported as failures) or
            `"float32"`.
        batch_size: int. Frames per CNN call.
        workers: int. Decoding threads.
        verbose: int. 0 silent, 1 a progress bar and a summary line.
        on_clip_written: callable or None. Called with each clip id once its
            files are in place (progress hooks; tests use it to interrupt a
            run).

    Returns:
        An `ExtractionReport`.

    Raises:
        ValueError: `out_dir` holds features made with other settings (a
            different backbone, weights, `num_frames`, `frame_size` or dtype),
            or `.npy` files without a manifest.

    Example:

    >>> from keras_pvc.layers import FrameCNN  # doctest: +SKIP
    >>> clips = keras_pvc.datasets.msvd.load_msvd("/data/msvd")  # doctest: +SKIP
    >>> report = extract_features(
    ...     clips, "/data/msvd/features",
    ...     FrameCNN("efficientnet_lite0", backbone_weights="imagenet"),
    ...     num_frames=80, frame_size=(224, 224))  # doctest: +SKIP
    >>> report.failed[:1]  # doctest: +SKIP
    [{'clip_id': 'x_1_5', 'path': '.../x_1_5.avi', 'reason': 'file not found'}]
    """
    started = time.perf_counter()
    out_dir = os.fspath(out_dir)
    num_frames, frame_size, dtype = _checked_settings(num_frames, frame_size, dtype)
    batch_size = max(1, int(batch_size))
    workers = max(1, int(workers))
    frame_cnn = _as_frame_cnn(frame_cnn)
    os.makedirs(out_dir, exist_ok=True)
    cnn_model, feature_shape, manifest = _open_folder(
        out_dir, frame_cnn, num_frames, frame_size, dtype
    )
    seen, todo, skipped, failed = _plan_clips(clips, out_dir, feature_shape, dtype)

    progbar = None
    if verbose and todo:
        progbar = _progress_bar(len(todo), len(skipped), out_dir)
    loop_started = time.perf_counter()
    done, real_frames, counters = _extract_clips(
        todo,
        out_dir,
        functools.partial(_decode_clip, num_frames=num_frames, frame_size=frame_size),
        functools.partial(
            _clip_features, cnn_model, feature_shape=feature_shape, dtype=dtype,
            batch_size=batch_size,
        ),
        workers,
        failed,
        progbar,
        on_clip_written,
    )
    timings = _loop_timings(counters, started, loop_started, len(done), real_frames)
    report = ExtractionReport(
        out_dir=out_dir,
        done=done,
        skipped=skipped,
        failed=failed,
        feature_shape=feature_shape,
        dtype=dtype.name,
        timings=timings,
    )
    _finish_folder(out_dir, manifest, seen, report)
    if verbose:
        print(report.summary())
        if failed:
            print(
                f"{len(failed)} clips could not be read; see "
                f"{os.path.join(out_dir, REPORT_NAME)}"
            )
    return report


def _checked_settings(num_frames, frame_size, dtype):
    """`(num_frames, (height, width), numpy dtype)`, checked."""
    num_frames = int(num_frames)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype("float16"), np.dtype("float32")):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype}.")
    return num_frames, frame_size, dtype


def _progress_bar(num_todo, num_skipped, out_dir):
    """Says what is to do and returns a `keras.utils.Progbar` over the clips."""
    import keras

    print(f"Extracting {num_todo} clips ({num_skipped} already done) into {out_dir}")
    return keras.utils.Progbar(num_todo, unit_name="clip", stateful_metrics=["clips/s"])


def _open_folder(out_dir, frame_cnn, num_frames, frame_size, dtype):
    """Checks `out_dir` against these settings, builds the extractor and
    writes a `"running"` manifest into a new folder.

    Returns:
        `(extractor model, feature shape, manifest dict)`.
    """
    import keras

    # Refuse a folder of other settings before building the CNN (cheap); the
    # weights and the output shape are checked once it is built.
    settings = {
        "frame_cnn": _frame_cnn_config(frame_cnn),
        "num_frames": num_frames,
        "frame_size": list(frame_size),
        "dtype": dtype.name,
    }
    _check_manifest(out_dir, settings)

    cnn_model = _extractor_model(frame_cnn, frame_size)
    per_frame_shape = tuple(
        frame_cnn.compute_output_shape((1, 1) + frame_size + (3,))[2:]
    )
    feature_shape = (num_frames,) + per_frame_shape

    manifest = {
        "format_version": FORMAT_VERSION,
        "keras_pvc_version": _version(),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "frame_cnn": settings["frame_cnn"],
        "weights_sha1": _weights_sha1(frame_cnn),
        "num_frames": num_frames,
        "frame_size": list(frame_size),
        "feature_shape": list(feature_shape),
        "dtype": dtype.name,
        "files": {
            "features": "<clip_id>" + FEATURES_SUFFIX,
            "frame_mask": "<clip_id>" + MASK_SUFFIX,
        },
    }
    _check_manifest(out_dir, manifest)
    _remove_stale_partials(out_dir)
    manifest_path = os.path.join(out_dir, MANIFEST_NAME)
    if not os.path.exists(manifest_path):
        _write_json(manifest_path, dict(manifest, status="running"))
    return cnn_model, feature_shape, manifest


def _plan_clips(clips, out_dir, feature_shape, dtype):
    """Which clips to do: `(seen ids, todo clips, skipped ids, failed dicts)`.

    Repeated ids count once; a clip whose files are complete is skipped; an
    id that would escape `out_dir`, or a clip without a video, fails.
    """
    seen = set()
    todo, skipped, failed = [], [], []
    for clip in clips:
        if clip.clip_id in seen:
            continue
        seen.add(clip.clip_id)
        id_problem = clip_id_problem(clip.clip_id, out_dir) or clip_id_problem(
            clip.clip_id + FEATURES_SUFFIX, out_dir
        )
        if id_problem is not None:
            failed.append(dict(clip_id=clip.clip_id, path=clip.video_path, reason=id_problem))
        elif feature_file_problem(
            features_path(out_dir, clip.clip_id), feature_shape, dtype, require_mask=True
        )[0] is None:
            skipped.append(clip.clip_id)
        elif clip.video_path is None:
            failed.append(
                dict(clip_id=clip.clip_id, path=None, reason="the clip has no video_path")
            )
        else:
            todo.append(clip)
    return seen, todo, skipped, failed


def _decode_clip(clip, num_frames, frame_size):
    """`(clip, real frames, frame_mask, failure reason or None, seconds)`;
    runs in a decoding thread."""
    start = time.perf_counter()
    try:
        frames, frame_mask = read_frames(
            clip.video_path, num_frames, size=frame_size, start=clip.start, end=clip.end
        )
        real = frames[frame_mask].astype("float32")
        return clip, real, frame_mask, None, time.perf_counter() - start
    except Exception as error:  # a bad video never stops the run
        reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
        return clip, None, None, reason, time.perf_counter() - start


def _clip_features(cnn_model, real, frame_mask, feature_shape, dtype, batch_size):
    """`(features, failure reason or None)`: the CNN over the real frames,
    `batch_size` at a time; padding frames stay zeros."""
    outputs = [
        np.asarray(cnn_model.predict_on_batch(real[None, first : first + batch_size]))[0]
        for first in range(0, len(real), batch_size)
    ]
    features = np.zeros(feature_shape, dtype)
    features[frame_mask] = np.concatenate(outputs).astype(dtype)
    if not np.isfinite(features).all():
        return features, (
            f"features are not finite in {dtype.name} (overflow?); "
            "extract with dtype='float32'"
        )
    return features, None


def _extract_clips(todo, out_dir, decode, compute, workers, failed, progbar, on_clip_written):
    """Decode (`workers` threads) -> CNN (this thread) -> write, clip by clip.

    `decode(clip)` is `_decode_clip`, `compute(real, frame_mask)`
    `_clip_features`. Failures are appended to `failed`.

    Returns:
        `(done clip ids, real frames computed, collections.Counter of seconds)`.
    """
    timings = collections.Counter()
    real_frames = 0
    done = []
    loop_started = time.perf_counter()
    max_pending = 2 * workers + 1  # the bounded queue of decoded clips
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="decode")
    try:
        pending = collections.deque()
        upcoming = iter(todo)
        for step in range(1, len(todo) + 1):
            while len(pending) < max_pending:
                clip = next(upcoming, None)
                if clip is None:
                    break
                pending.append(pool.submit(decode, clip))
            wait_start = time.perf_counter()
            clip, real, frame_mask, reason, decode_seconds = pending.popleft().result()
            timings["decode_wait"] += time.perf_counter() - wait_start
            if step == 1:  # nothing can overlap the first clip's decoding
                timings["decode_wait_first"] = time.perf_counter() - wait_start
            timings["decode"] += decode_seconds
            if reason is None:
                cnn_start = time.perf_counter()
                features, reason = compute(real, frame_mask)
                timings["cnn"] += time.perf_counter() - cnn_start
            if reason is not None:
                failed.append(dict(clip_id=clip.clip_id, path=clip.video_path, reason=reason))
            else:
                write_start = time.perf_counter()
                # The mask first: the features file marks the clip as done.
                _save_npy(mask_path(out_dir, clip.clip_id), frame_mask)
                _save_npy(features_path(out_dir, clip.clip_id), features)
                timings["write"] += time.perf_counter() - write_start
                done.append(clip.clip_id)
                real_frames += int(frame_mask.sum())
                if on_clip_written is not None:
                    on_clip_written(clip.clip_id)
            if progbar is not None:
                elapsed = time.perf_counter() - loop_started
                progbar.update(step, values=[("clips/s", step / elapsed)])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return done, real_frames, timings


def _loop_timings(counters, started, loop_started, num_done, real_frames):
    """`ExtractionReport.timings`: seconds, shares of the loop and speeds."""
    total = time.perf_counter() - started
    loop = time.perf_counter() - loop_started
    timings = {
        key: float(counters[key])
        for key in ("decode", "decode_wait", "decode_wait_first", "cnn", "write")
    }
    timings.update(
        total=total,
        setup=total - loop,
        loop=loop,
        decode_share=timings["decode"] / loop if loop else 0.0,
        decode_wait_share=timings["decode_wait"] / loop if loop else 0.0,
        cnn_share=timings["cnn"] / loop if loop else 0.0,
        clips_per_second=num_done / loop if loop else 0.0,
        frames_per_second=real_frames / loop if loop else 0.0,
        real_frames=real_frames,
    )
    return timings


def _finish_folder(out_dir, manifest, seen, report):
    """Writes the final `manifest.json` (status, counts, timings) and
    `extract_report.json`."""
    done, skipped, failed = report.done, report.skipped, report.failed
    complete = sum(
        1
        for clip_id in seen
        if clip_id_problem(clip_id, out_dir) is None
        and os.path.isfile(features_path(out_dir, clip_id))
    )
    manifest.update(
        status="complete" if not failed else "complete_with_failures",
        counts=dict(
            clips=len(seen),
            extracted=len(done),
            skipped_existing=len(skipped),
            failed=len(failed),
            with_features=complete,
        ),
        timings=report.timings,
    )
    _write_json(os.path.join(out_dir, MANIFEST_NAME), manifest)
    _write_json(
        os.path.join(out_dir, REPORT_NAME),
        dict(
            done=len(done),
            skipped_existing=len(skipped),
            failed=failed,
        ),
    )
