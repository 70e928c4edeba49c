"""Training and evaluation inputs from features cached on disk.

A features folder holds `<clip_id>.npy` (`(T, N, C)` regions or `(T, C)`
pooled, any float dtype) and, when `keras_pvc.training.extract.extract_features` made
it, `<clip_id>.mask.npy` (bool `(T,)`); a clip without a mask file (the seed
project's features) has every frame real.

- `features_dataset`: a `tf.data` pipeline for `VideoCaptioner.fit` that
  reads each batch's files when the batch is needed, so a folder larger than
  memory (MSVD's 1970 clips of 80 x 49 x 1280 float16 regions: ~20 GB)
  trains without loading it; small folders are read into memory once.
- `load_feature_arrays`: the clips' features in memory as a `ClipArrays`
  (for generation and evaluation on a split: `.subset("test")`).
- `StreamedFeatures`: the same clips with their features left on disk, and
  `feature_batches`, a `tf.data` stream of them in clip order, so
  evaluation and captioning hold a few batches, not a split (`keras-pvc
  train` on a feature preset; MSVD's 770 val+test clips are ~15 GB as
  float32).

Both give the same elements as `keras_pvc.datasets.pipeline.caption_dataset`:
`{"features": float32 (B, T, ...), "frame_mask": bool (B, T),
"caption_ids": int32 (B, L)}`, plus `"reference_ids"` `(B, R, L)` on request.
"""

import os
import warnings

import numpy as np

from keras_pvc.datasets.clip import DatasetError
from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.pipeline import ClipArrays
from keras_pvc.datasets.pipeline import caption_dataset
from keras_pvc.datasets.pipeline import caption_examples
from keras_pvc.datasets.feature_files import extract_failures
from keras_pvc.datasets.feature_files import feature_file_problem
from keras_pvc.datasets.feature_files import mask_path_for

# `features_dataset(in_memory="auto")` loads a folder whose clips take at most
# this many bytes (as stored) into memory, and reads larger ones per batch.
IN_MEMORY_MAX_BYTES = 2 * 1024**3


def _features_file(clip, features_dir):
    if features_dir is not None:
        return os.path.join(os.fspath(features_dir), clip.clip_id + ".npy")
    return clip.features_path


def _load_mask(features_file, num_frames):
    path = mask_path_for(features_file)
    if not os.path.exists(path):
        return np.ones(num_frames, bool)
    try:
        mask = np.load(path, allow_pickle=False)
    except Exception as error:  # truncated, not .npy, pickled objects
        raise ValueError(f"frame mask {path!r} cannot be loaded: {error}") from error
    if not isinstance(mask, np.ndarray) or mask.dtype.kind not in "biuf":
        raise ValueError(f"frame mask {path!r} is not an array of booleans")
    if mask.shape != (num_frames,):
        raise ValueError(
            f"Frame mask {path!r} has shape {mask.shape}; the features have "
            f"{num_frames} frames."
        )
    return mask.astype(bool)


def scan_features(clips, features_dir=None):
    """Finds each clip's feature file and checks it from its header only.

    Args:
        clips: list of `Clip`.
        features_dir: str, path-like or None. The folder of
            `<clip_id>.npy`; None uses each clip's `features_path`.

    Returns:
        `(kept, paths, masks, feature_shape, dtype, failures)`: the clips
        whose features are readable and share the first readable clip's shape,
        their files, their frame masks (bool `(len(kept), T)`), that shape
        `(T, ...)`, the stored dtype, and `(clip_id, reason)` for the rest.
    """
    kept, paths, masks, failures = [], [], [], []
    feature_shape = dtype = None
    reported = {}  # folder -> extract_report.json's failures
    for clip in clips:
        problem = clip_id_problem(clip.clip_id, features_dir) or (
            features_dir is not None and clip_id_problem(clip.clip_id + ".npy", features_dir)
        )
        if problem is not None:
            failures.append((clip.clip_id, problem))
            continue
        path = _features_file(clip, features_dir)
        if path is None:
            failures.append((clip.clip_id, "the clip has no features_path"))
            continue
        # The check `keras-pvc extract` makes too; a clip it could not read
        # is reported with the reason in its extract_report.json.
        folder = os.fspath(features_dir) if features_dir is not None else os.path.dirname(path)
        if folder not in reported:
            reported[folder] = extract_failures(folder)
        problem, shape, file_dtype = feature_file_problem(
            path, feature_shape, failed_reason=reported[folder].get(clip.clip_id)
        )
        if problem is not None:
            failures.append((clip.clip_id, problem))
            continue
        try:
            mask = _load_mask(path, shape[0])
        except (OSError, ValueError) as error:
            failures.append((clip.clip_id, f"feature file {path!r}: {error}"))
            continue
        feature_shape = feature_shape or shape
        dtype = dtype or file_dtype
        kept.append(clip)
        paths.append(path)
        masks.append(mask)
    if failures:
        warnings.warn(
            f"{len(failures)} of {len(clips)} clips have no usable features and "
            f"are left out (first: {failures[0][0]}: {failures[0][1]}).",
            stacklevel=3,
        )
    if not kept:
        raise DatasetError(
            os.fspath(features_dir) if features_dir is not None else "features",
            f"none of the {len(clips)} clips has usable features"
            + (f" (first: {failures[0][0]}: {failures[0][1]})" if failures else ""),
        )
    masks = np.stack(masks) if masks else np.zeros((0, 0), bool)
    return kept, paths, masks, feature_shape, np.dtype(dtype), failures


def load_feature_arrays(clips, features_dir=None, dtype="float32"):
    """Reads the clips' cached features into memory.

    Clips whose features are missing or unreadable are left out and listed
    in `failures` (with a warning). Files are read with
    `np.load(allow_pickle=False)`.

    Args:
        clips: list of `Clip`.
        features_dir: str, path-like or None. The folder of `<clip_id>.npy`
            (and `<clip_id>.mask.npy`); None uses each clip's
            `features_path`.
        dtype: str or None. The arrays' dtype; None keeps the stored one
            (float16 from `extract_features`: half the memory).

    Returns:
        `ClipArrays` with `videos` `(num_clips, T, ...)` features.

    Example:

    >>> arrays = load_feature_arrays(clips, "/data/msvd/features")  # doctest: +SKIP
    >>> test = arrays.subset("test")  # doctest: +SKIP
    >>> model.generate(test.model_inputs("features"))  # doctest: +SKIP
    """
    kept, paths, masks, feature_shape, stored, failures = scan_features(
        clips, features_dir
    )
    dtype = stored if dtype is None else np.dtype(dtype)
    videos = np.empty((len(kept),) + feature_shape, dtype)
    for index, path in enumerate(paths):
        videos[index] = np.load(path, allow_pickle=False)
    return ClipArrays(kept, videos, masks, failures)


class StreamedFeatures:
    """Clips whose cached features are read batch by batch when used.

    The on-disk counterpart of `ClipArrays` for a features folder: `clips`,
    `failures` and `subset(split)` as there, and `batches(batch_size)`
    instead of the arrays.

    Args:
        clips: list of `Clip` with usable features (see `scan_features`).
        features_dir: str, path-like or None.
        failures: list of `(clip_id, reason)`.
    """

    def __init__(self, clips, features_dir, failures=()):
        self.clips = list(clips)
        self.features_dir = features_dir
        self.failures = list(failures)

    @classmethod
    def scan(cls, clips, features_dir=None):
        """The clips with usable features (`scan_features`), others in failures."""
        kept, _, _, _, _, failures = scan_features(clips, features_dir)
        return cls(kept, features_dir, failures)

    def subset(self, split):
        """The clips of one split (`"train"`, `"val"`, `"test"`)."""
        return StreamedFeatures(
            [clip for clip in self.clips if clip.split == split], self.features_dir
        )

    def batches(self, batch_size):
        """`feature_batches` of these clips: `{"features", "frame_mask"}`."""
        return feature_batches(self.clips, self.features_dir, batch_size)


def feature_batches(clips, features_dir, batch_size, prefetch=1):
    """A `tf.data.Dataset` of `{"features", "frame_mask"}` batches in clip order.

    Each batch's files are read when the batch is needed (float32, as the
    model takes them), so memory holds `prefetch + 1` batches whatever the
    number of clips. Clips without usable features must be left out first
    (`scan_features`); a missing file here is an error.

    Args:
        clips: list of `Clip`.
        features_dir: str, path-like or None (each clip's `features_path`).
        batch_size: int.
        prefetch: int. Batches read ahead.

    Returns:
        A `tf.data.Dataset`; iterate with `.as_numpy_iterator()` and pass each
        element to `VideoCaptioner.generate`.

    Example:

    >>> for inputs in feature_batches(test_clips, "features", 20).as_numpy_iterator():
    ...     captions += model.generate(inputs)  # doctest: +SKIP
    """
    import tensorflow as tf

    kept, paths, masks, feature_shape, _, failures = scan_features(clips, features_dir)
    if failures:
        raise DatasetError(
            os.fspath(features_dir) if features_dir is not None else "features",
            f"{failures[0][0]}: {failures[0][1]}",
        )
    paths = np.asarray(paths)
    frame_masks = tf.constant(masks)

    def read_batch(indices):
        return np.stack([np.load(paths[i], allow_pickle=False) for i in indices]).astype(
            np.float32, copy=False
        )

    def to_inputs(indices):
        features = tf.numpy_function(read_batch, [indices], tf.float32, stateful=False)
        features.set_shape((None,) + feature_shape)
        return {"features": features, "frame_mask": tf.gather(frame_masks, indices)}

    dataset = tf.data.Dataset.range(len(kept)).batch(batch_size)
    # One reader: batches stay in order and at most `prefetch + 1` are held.
    return dataset.map(to_inputs).prefetch(prefetch)


def features_dataset(
    clips,
    features_dir,
    preprocessor,
    batch_size,
    captions="all",
    shuffle=True,
    seed=0,
    references=False,
    in_memory="auto",
    epoch_counter=None,
    parallel_reads=None,
    reversed_twins=False,
):
    """A `tf.data.Dataset` of model inputs from cached features, for `fit`.

    The elements are those of `keras_pvc.datasets.pipeline.caption_dataset`
    with `input_kind="features"`: `{"features": float32 (B, T, ...),
    "frame_mask": bool (B, T), "caption_ids": int32 (B, caption_length + 2)}`
    and, with `references=True`, `"reference_ids"` `(B, R, L)`. Captions are
    tokenized once with `preprocessor.tokenize`.

    With `in_memory=False` only the frame masks and captions live in memory:
    the examples (clip index, caption) are shuffled, batched, and each
    batch's feature files are read then (`np.load` in `tf.numpy_function`,
    batches read in parallel and prefetched), so memory stays at a few
    batches whatever the folder's size. Clips with missing or unreadable
    features are left out with a warning.

    Args:
        clips: list of `Clip` (one split, e.g. the train clips).
        features_dir: str, path-like or None. The folder of `<clip_id>.npy`;
            None uses each clip's `features_path`.
        preprocessor: `VideoCaptionerPreprocessor` with a vocabulary.
        batch_size: int.
        captions: str. `"all"` (every reference once per epoch), `"random"`
            (one reference per clip, drawn anew each epoch) or `"first"`;
            see `caption_dataset`.
        shuffle: bool. Reshuffle the examples every epoch (seeded).
        seed: int.
        references: bool. Add `reference_ids`: every reference of each clip.
        in_memory: `"auto"`, True or False. Read every clip into memory once
            (then `caption_dataset` gathers batches from it) or read per
            batch; `"auto"` reads into memory when the stored features take
            at most `IN_MEMORY_MAX_BYTES` (2 GiB).
        epoch_counter: `EpochCounter` or None; see `caption_dataset`.
        parallel_reads: int or None. With `in_memory=False`, batches read at
            once and read ahead (None: `tf.data.AUTOTUNE`, fastest; 1 holds
            about two batches, as validation in `keras-pvc train` does).
        reversed_twins: bool or a list of `[word, reverse]` pairs. Also
            train on each clip's features in reverse frame order with its
            motion words swapped; see `caption_dataset`.

    Returns:
        A batched, prefetched `tf.data.Dataset`.

    Example:

    >>> train = [clip for clip in clips if clip.split == "train"]  # doctest: +SKIP
    >>> dataset = features_dataset(train, "/data/msvd/features",
    ...                            model.preprocessor, batch_size=20)  # doctest: +SKIP
    >>> model.fit(dataset, epochs=50)  # doctest: +SKIP
    """
    import tensorflow as tf

    if captions not in ("all", "random", "first"):
        raise ValueError(
            f"`captions` must be 'all', 'random' or 'first', got {captions!r}."
        )
    if in_memory not in ("auto", True, False):
        raise ValueError(f"`in_memory` must be 'auto', True or False, got {in_memory!r}.")
    kept, paths, masks, feature_shape, stored, _ = scan_features(clips, features_dir)
    if in_memory == "auto":
        size = len(kept) * int(np.prod(feature_shape, dtype=np.int64)) * stored.itemsize
        in_memory = size <= IN_MEMORY_MAX_BYTES
    if in_memory:
        videos = np.empty((len(kept),) + feature_shape, stored)
        for index, path in enumerate(paths):
            videos[index] = np.load(path, allow_pickle=False)
        return caption_dataset(
            ClipArrays(kept, videos, masks, []),
            preprocessor,
            "features",
            batch_size,
            shuffle=shuffle,
            seed=seed,
            captions=captions,
            references=references,
            epoch_counter=epoch_counter,
            reversed_twins=reversed_twins,
        )
    return _streamed_features_dataset(
        kept, paths, masks, feature_shape, preprocessor, batch_size, captions, shuffle,
        seed, references, epoch_counter, parallel_reads, reversed_twins,
    )


def _streamed_features_dataset(
    kept, paths, masks, feature_shape, preprocessor, batch_size, captions, shuffle,
    seed, references, epoch_counter, parallel_reads, reversed_twins,
):
    """`features_dataset` with `in_memory=False`: each batch's files are read
    as it is made (the reversed twins' features turned round then)."""
    import tensorflow as tf

    examples = kept
    source, flipped = np.arange(len(kept), dtype="int32"), np.zeros(len(kept), bool)
    if reversed_twins:
        from keras_pvc.datasets.reverse import check_prefix_masks
        from keras_pvc.datasets.reverse import reversed_twins as make_twins
        from keras_pvc.datasets.reverse import twin_swaps

        check_prefix_masks(masks)
        examples, source, flipped = make_twins(kept, twin_swaps(reversed_twins))
    dataset, all_references = caption_examples(
        examples, preprocessor, captions, shuffle, seed, epoch_counter
    )
    dataset = dataset.batch(batch_size)
    frame_masks = tf.constant(np.asarray(masks)[source])
    all_reference_ids = tf.constant(all_references) if references else None

    paths = np.asarray(paths)

    def read_batch(indices):
        from keras_pvc.datasets.reverse import reverse_valid_frames_numpy

        # Each file once per batch (a clip can appear with several captions).
        files = source[indices]
        unique, inverse = np.unique(files, return_inverse=True)
        arrays = np.stack([np.load(paths[index], allow_pickle=False) for index in unique])
        arrays = arrays.astype(np.float32, copy=False)[inverse]
        if flipped[indices].any():
            arrays = reverse_valid_frames_numpy(
                arrays, np.asarray(masks)[files], flipped[indices]
            )
        return arrays

    def to_inputs(index, ids):
        features = tf.numpy_function(read_batch, [index], tf.float32, stateful=False)
        features.set_shape((None,) + feature_shape)
        inputs = {
            "features": features,
            "frame_mask": tf.gather(frame_masks, index),
            "caption_ids": ids,
        }
        if references:
            inputs["reference_ids"] = tf.gather(all_reference_ids, index)
        return inputs

    parallel = tf.data.AUTOTUNE if parallel_reads is None else parallel_reads
    return dataset.map(to_inputs, num_parallel_calls=parallel).prefetch(parallel)
