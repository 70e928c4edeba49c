"""From `Clip`s to `tf.data` pipelines that `VideoCaptioner.fit` takes.

Videos (or cached features) are read once into arrays; each training example
is a `(clip index, tokenized caption)` pair, so an epoch sees every reference
of every clip (as the seed did: 64,639 MSVD pairs), and the hot path is a
`tf.gather` — no Python per example.
"""

import concurrent.futures
import dataclasses
import os

import numpy as np

from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.video import VideoReadError
from keras_pvc.video import read_frames


@dataclasses.dataclass
class ClipArrays:
    """Clips read into memory.

    Attributes:
        clips: list of `Clip` that were read (failures left out).
        videos: array `(num_clips, T, ...)`: uint8 frames or float features.
        frame_masks: bool array `(num_clips, T)`.
        failures: list of `(clip_id, reason)` for clips that could not be read.
    """

    clips: list
    videos: np.ndarray
    frame_masks: np.ndarray
    failures: list

    def subset(self, split):
        """The clips of one split (`"train"`, `"val"`, `"test"`)."""
        keep = [index for index, clip in enumerate(self.clips) if clip.split == split]
        return ClipArrays(
            [self.clips[index] for index in keep],
            self.videos[keep],
            self.frame_masks[keep],
            [],
        )

    def model_inputs(self, input_kind):
        """`{input_kind: videos, "frame_mask": masks}` for `generate`."""
        return {input_kind: self.videos, "frame_mask": self.frame_masks}


def _progress(total, verbose, name):
    import keras

    if not verbose:
        return None
    print(name)
    return keras.utils.Progbar(total, unit_name="clip")


def read_clip_videos(clips, num_frames, frame_size, workers=None, verbose=True):
    """Decodes every clip's video into memory with `read_frames`.

    Unreadable videos (missing, corrupt, empty, too small, too short or too
    dark: see `keras_pvc.video.read_frames`) and clips whose id is not a
    plain file name (`keras_pvc.datasets.clip.clip_id_problem`) are skipped
    and returned in `failures` with the reason; the rest are read in parallel threads (OpenCV
    releases the GIL while decoding).

    Args:
        clips: list of `Clip` with `video_path`.
        num_frames: int. Frames sampled per clip.
        frame_size: tuple `(height, width)`.
        workers: int or None. Decoding threads (default: CPU count).
        verbose: bool. Show a progress bar.

    Returns:
        `ClipArrays` with uint8 frames `(num_clips, num_frames, H, W, 3)`.
    """
    workers = workers or os.cpu_count() or 1
    progbar = _progress(len(clips), verbose, f"Reading {len(clips)} videos")
    videos = np.zeros((len(clips), num_frames) + tuple(frame_size) + (3,), "uint8")
    masks = np.zeros((len(clips), num_frames), bool)
    ok = np.zeros(len(clips), bool)
    failures = []

    def read(index):
        clip = clips[index]
        problem = clip_id_problem(clip.clip_id)
        if problem is not None:
            raise VideoReadError(clip.video_path, f"clip {clip.clip_id!r} skipped: {problem}")
        if clip.video_path is None:
            raise VideoReadError(clip.clip_id, "the clip has no video_path")
        return index, read_frames(
            clip.video_path, num_frames, size=frame_size, start=clip.start, end=clip.end
        )

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(read, index) for index in range(len(clips))]
        for index, future in enumerate(futures):
            try:
                _, (frames, mask) = future.result()
                videos[index], masks[index], ok[index] = frames, mask, True
            except VideoReadError as error:
                failures.append((clips[index].clip_id, str(error)))
            if progbar is not None:
                progbar.update(index + 1)
    keep = np.flatnonzero(ok)
    return ClipArrays([clips[i] for i in keep], videos[keep], masks[keep], failures)


def caption_pairs(clips, preprocessor, all_references=True):
    """Every (clip, reference) pair: clip indices and tokenized captions.

    Args:
        clips: list of `Clip`.
        preprocessor: `VideoCaptionerPreprocessor` with a vocabulary.
        all_references: bool. All references (training), or only each clip's
            first (a quick validation set).

    Returns:
        `(clip_index int32 (P,), caption_ids int32 (P, caption_length + 2))`.
    """
    indices, captions = [], []
    for index, clip in enumerate(clips):
        references = clip.references if all_references else clip.references[:1]
        indices.extend([index] * len(references))
        captions.extend(references)
    return np.asarray(indices, "int32"), preprocessor.tokenize(captions)


def reference_ids(clips, preprocessor, max_references=None):
    """All references of each clip as padded ids `(C, R, caption_length + 2)`.

    Rows past a clip's last reference are all `<pad>` (0). Rewards for
    self-critical training compare samples with these.
    """
    counts = [len(clip.references) for clip in clips]
    max_references = max_references or max(counts)
    ids = np.zeros((len(clips), max_references, preprocessor.sequence_length), "int32")
    for index, clip in enumerate(clips):
        references = clip.references[:max_references]
        ids[index, : len(references)] = preprocessor.tokenize(references)
    return ids


class EpochCounter:
    """Makes a run's randomness a function of (seed, epoch), so a run that
    resumes from a backup repeats an interrupted epoch exactly.

    Datasets given the counter draw their order and references from
    (seed, epoch). Its `callback` (pass it to `fit`) sets the epoch and
    rewinds every `keras.random.SeedGenerator` of the model (dropout, the
    self-critical sampler) to a position that depends on the epoch only:
    their state is not part of the weights `BackupAndRestore` saves.
    """

    # Random draws a generator may make in one epoch before positions of
    # consecutive epochs overlap (far more than any epoch makes).
    DRAWS_PER_EPOCH = 1 << 24

    def __init__(self):
        import keras
        import tensorflow as tf

        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        variable = self.variable
        draws = self.DRAWS_PER_EPOCH

        class _SetEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                variable.assign(epoch)
                for state in self.model.variables:
                    if state.name == "seed_generator_state":
                        seed = keras.ops.convert_to_numpy(state)[0]
                        state.assign(np.asarray([seed, epoch * draws], state.dtype))

        self.callback = _SetEpoch()


def caption_examples(
    clips, preprocessor, captions="all", shuffle=True, seed=0, epoch_counter=None
):
    """A dataset of `(clip index, caption ids)` examples, in training order.

    Args:
        clips: list of `Clip`.
        preprocessor: `VideoCaptionerPreprocessor` with a vocabulary.
        captions: str. `"all"`, `"random"` or `"first"` (see
            `caption_dataset`).
        shuffle: bool. A new order every epoch.
        seed: int.
        epoch_counter: `EpochCounter` or None. With it, the order and the
            random references are stateless functions of (seed, epoch);
            without it, tf.data's seeded reshuffling (not resumable).

    Returns:
        `(dataset, references)`: an unbatched `tf.data.Dataset` of
        `(int32, int32 (caption_length + 2,))` and the `(C, R, L)` reference
        ids of every clip (for `reference_ids`).
    """
    import tensorflow as tf

    if captions not in ("all", "random", "first"):
        raise ValueError(
            f"`captions` must be 'all', 'random' or 'first', got {captions!r}."
        )
    all_references = reference_ids(clips, preprocessor)
    if captions == "random":
        clip_index = np.arange(len(clips), dtype="int32")
        counts = np.asarray([len(clip.references) for clip in clips], "int32")
    else:
        clip_index, caption_ids = caption_pairs(
            clips, preprocessor, all_references=captions == "all"
        )
    if epoch_counter is None:
        if captions == "random":
            # `Dataset.random` draws anew every epoch; a random op inside
            # `map` would replay the same draws each epoch.
            draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            table, counts_tensor = tf.constant(all_references), tf.constant(counts)
            dataset = tf.data.Dataset.zip(
                (tf.data.Dataset.from_tensor_slices(clip_index), draws)
            ).map(
                lambda index, draw: (
                    index,
                    table[index][tf.cast(draw % tf.cast(counts_tensor[index], tf.int64), tf.int32)],
                )
            )
        else:
            dataset = tf.data.Dataset.from_tensor_slices((clip_index, caption_ids))
        if shuffle:
            dataset = dataset.shuffle(len(clip_index), seed=seed, reshuffle_each_iteration=True)
        return dataset, all_references

    table = tf.constant(all_references) if captions == "random" else None
    pairs = None if captions == "random" else tf.constant(caption_ids)
    variable = epoch_counter.variable

    def one_epoch(_):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), variable.read_value()])
        index = tf.constant(clip_index)
        if captions == "random":
            uniform = tf.random.stateless_uniform([len(clip_index)], seed=epoch_seed)
            choice = tf.cast(uniform * tf.constant(counts, tf.float32), tf.int32)
            ids = tf.gather_nd(table, tf.stack([index, choice], axis=1))
        else:
            ids = pairs
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(index)[0]), seed=epoch_seed + 1
            )
            index, ids = tf.gather(index, order), tf.gather(ids, order)
        return tf.data.Dataset.from_tensor_slices((index, ids))

    dataset = tf.data.Dataset.range(1).flat_map(one_epoch)
    # `flat_map` hides the size; stating it lets `fit` show the steps of the
    # first epoch and end each epoch without an "ran out of data" warning.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(clip_index)))
    return dataset, all_references


def caption_dataset(
    arrays,
    preprocessor,
    input_kind,
    batch_size,
    shuffle=True,
    seed=0,
    captions="all",
    references=False,
    epoch_counter=None,
    reversed_twins=False,
):
    """A `tf.data.Dataset` of model input dicts for `VideoCaptioner.fit`.

    Each element is `{input_kind: (B, T, ...), "frame_mask", "caption_ids"}`;
    the model's preprocessor turns `caption_ids` into inputs, labels and the
    padding mask inside `fit`. uint8 frames are cast to float32 per batch.

    Args:
        arrays: `ClipArrays`.
        preprocessor: `VideoCaptionerPreprocessor` with a vocabulary.
        input_kind: str. `"frames"` or `"features"`, the model's input.
        batch_size: int.
        shuffle: bool. Reshuffle pairs every epoch (seeded).
        seed: int.
        captions: str. `"all"`: one example per (clip, reference) pair, so
            an epoch sees every reference (the seed's way); `"random"`: one
            example per clip with a reference drawn at random each epoch,
            so an epoch reads every video once (cheaper when the frame CNN
            trains end to end); `"first"`: each clip's first reference.
        references: bool. Also add `reference_ids` `(B, R, L)`: every
            reference of each video in the batch (for rewards).
        epoch_counter: `EpochCounter` or None. Makes the order a function
            of (seed, epoch), so a resumed run repeats it exactly; pass its
            `callback` to `fit` too.
        reversed_twins: bool or a list of `[word, reverse]` pairs. Also
            train on each clip played backwards, its references with the
            motion words swapped (`keras_pvc.datasets.reverse`; pairs are
            added to its table, `twin_swaps`); the frames are reversed as
            each batch is gathered.
    """
    import tensorflow as tf

    clips, source, flipped = arrays.clips, None, None
    if reversed_twins:
        from keras_pvc.datasets.reverse import check_prefix_masks
        from keras_pvc.datasets.reverse import reversed_twins as make_twins
        from keras_pvc.datasets.reverse import twin_swaps

        check_prefix_masks(arrays.frame_masks)
        clips, source, flipped = make_twins(arrays.clips, twin_swaps(reversed_twins))
        source, flipped = tf.constant(source), tf.constant(flipped)
    dataset, all_references = caption_examples(
        clips, preprocessor, captions, shuffle, seed, epoch_counter
    )
    dataset = dataset.batch(batch_size)
    videos = tf.constant(arrays.videos)
    frame_masks = tf.constant(arrays.frame_masks)
    all_reference_ids = tf.constant(all_references) if references else None

    def to_inputs(index, ids):
        frames = index if source is None else tf.gather(source, index)
        video = tf.gather(videos, frames)
        frame_mask = tf.gather(frame_masks, frames)
        if source is not None:
            from keras_pvc.datasets.reverse import reverse_valid_frames

            video = reverse_valid_frames(video, frame_mask, tf.gather(flipped, index))
        if video.dtype != tf.float32:
            video = tf.cast(video, tf.float32)
        inputs = {
            input_kind: video,
            "frame_mask": frame_mask,
            "caption_ids": ids,
        }
        if references:
            inputs["reference_ids"] = tf.gather(all_reference_ids, index)
        return inputs

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
