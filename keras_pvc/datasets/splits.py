"""Train/val/test split rules shared by the dataset loaders.

The rules, in order:

1. An explicit split file (TSV, `clip_id<TAB>train|val|test`) always wins.
   Clips it does not list are dropped (with a warning giving their count).
2. Otherwise, when the MSVD id mapping is known (`youtube_mapping.txt`,
   lines `<clip_id> vid<N>`), the standard MSVD split: `vid1`..`vid1200`
   train, `vid1201`..`vid1300` val, `vid1301`..`vid1970` test (1200/100/670,
   as in Venugopalan et al. and most MSVD papers since). Clips outside the
   mapping, or numbered past 1970, are dropped with a warning.
3. Otherwise a deterministic split by hashing: each clip id's CRC-32
   (`zlib.crc32` of its UTF-8 bytes, divided by 2**32) is a number `u` in
   [0, 1); `u < 1200/1970` is train, `u < 1300/1970` val, the rest test.
   A clip's split depends on its id only, so it is the same on every machine
   and run and does not move when clips are added or removed; the sizes
   follow the standard proportions (60.9% / 5.1% / 34.0%) only roughly, so a
   very small dataset may get an empty val split.

A dataset without a val split (YouCook2 without its validation subset, a
split file listing none) gets one carved from its training clips by
`carve_validation_split`: the `CARVED_VAL_FRACTION` (10%, at least 1) of the
training clips with the lowest CRC-32 of `"val:" + clip_id`, so the same
clips every run; with fewer than `MIN_CLIPS_TO_CARVE` (10) training clips
none is carved.
"""

import dataclasses
import os
import re
import warnings
import zlib

from keras_pvc.datasets.clip import SPLITS

# The standard MSVD split, in the 1-based vid<N> numbering of youtube_mapping.txt.
MSVD_TRAIN_END = 1200
MSVD_VAL_END = 1300
MSVD_TEST_END = 1970

# `carve_validation_split`: the share of training clips moved to val, and the
# fewest training clips from which one is carved.
CARVED_VAL_FRACTION = 0.1
MIN_CLIPS_TO_CARVE = 10

_VID_PATTERN = re.compile(r"^vid(\d+)$")


def read_split_file(path):
    """Reads a split file: one `clip_id<TAB>split` per line.

    `split` is one of `train`, `val`, `test`. Blank lines and lines starting
    with `#` are ignored; fields may also be separated by other whitespace
    (clip ids hold no spaces).

    Args:
        path: str or path-like. The TSV file.

    Returns:
        A dict mapping clip id to split, in file order.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line has other than two fields, an unknown split, or
            gives a clip a second, different split; the message names the
            file and the line number.

    Example:

    >>> read_split_file("split.tsv")  # doctest: +SKIP
    {'-4wsuPCjDBc_5_15': 'train', ...}
    """
    splits = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split("\t") if "\t" in text else text.split()
            fields = [field.strip() for field in fields]
            if len(fields) != 2 or not all(fields):
                raise ValueError(
                    f"{os.fspath(path)}, line {line_number}: expected "
                    f"'clip_id<TAB>train|val|test', got {text!r}."
                )
            clip_id, split = fields
            if split not in SPLITS:
                raise ValueError(
                    f"{os.fspath(path)}, line {line_number}: split must be one "
                    f"of {SPLITS}, got {split!r}."
                )
            if splits.get(clip_id, split) != split:
                raise ValueError(
                    f"{os.fspath(path)}, line {line_number}: clip {clip_id!r} "
                    f"is already in split {splits[clip_id]!r}."
                )
            splits[clip_id] = split
    return splits


def read_mapping_file(path):
    """Reads MSVD's `youtube_mapping.txt`: lines `<clip_id> vid<N>`.

    Args:
        path: str or path-like. The mapping file.

    Returns:
        A dict mapping clip id to its number N (int).

    Raises:
        ValueError: a line is not `<clip_id> vid<N>`, naming the file and
            the line number.
    """
    mapping = {}
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            match = _VID_PATTERN.match(fields[-1]) if len(fields) == 2 else None
            if match is None:
                raise ValueError(
                    f"{os.fspath(path)}, line {line_number}: expected "
                    f"'<clip_id> vid<N>', got {text!r}."
                )
            mapping[fields[0]] = int(match.group(1))
    return mapping


def standard_msvd_split(vid_number):
    """The standard MSVD split of `vid<N>`; None past vid1970."""
    if 1 <= vid_number <= MSVD_TRAIN_END:
        return "train"
    if vid_number <= MSVD_VAL_END:
        return "val"
    if vid_number <= MSVD_TEST_END:
        return "test"
    return None


def hash_split(clip_id):
    """The deterministic split of one clip id (rule 3 of the module docs)."""
    unit = zlib.crc32(clip_id.encode("utf-8")) / 2**32
    if unit < MSVD_TRAIN_END / MSVD_TEST_END:
        return "train"
    if unit < MSVD_VAL_END / MSVD_TEST_END:
        return "val"
    return "test"


def assign_splits(clip_ids, split_file=None, standard=None):
    """Assigns each clip id to `train`, `val` or `test`.

    The rules, in order (see the module docstring): an explicit split file
    wins and drops the clips it does not list; else the standard MSVD
    1200/100/670 split by the `vid<N>` numbering of `youtube_mapping.txt`,
    dropping clips it does not number 1..1970; else each clip's CRC-32 hash
    cut at the standard proportions 1200/1970 and 1300/1970.

    Args:
        clip_ids: iterable of str.
        split_file: str, path-like, dict or None. A TSV split file (see
            `read_split_file`) or an already-read `{clip_id: split}` dict.
        standard: str, path-like, dict or None. The MSVD id mapping: a
            `youtube_mapping.txt` path, or a `{clip_id: N}` dict of `vid<N>`
            numbers. Ignored when `split_file` is given.

    Returns:
        A dict mapping each kept clip id to its split, in the order of
        `clip_ids`. Dropped clips are left out, with a `UserWarning` giving
        how many.

    Example:

    >>> assign_splits(["a_1_2", "b_3_4"], split_file={"a_1_2": "val"})  # doctest: +SKIP
    {'a_1_2': 'val'}   # and a warning: 1 clip not in the split file dropped
    """
    clip_ids = list(clip_ids)
    if split_file is not None:
        table = split_file if isinstance(split_file, dict) else read_split_file(split_file)
        for clip_id, split in table.items():
            if split not in SPLITS:
                raise ValueError(f"Clip {clip_id!r}: unknown split {split!r}.")
        assigned = {clip_id: table[clip_id] for clip_id in clip_ids if clip_id in table}
        _warn_dropped(len(clip_ids) - len(assigned), "not listed in the split file")
        return assigned
    if standard is not None:
        numbers = standard if isinstance(standard, dict) else read_mapping_file(standard)
        assigned = {}
        for clip_id in clip_ids:
            split = standard_msvd_split(numbers[clip_id]) if clip_id in numbers else None
            if split is not None:
                assigned[clip_id] = split
        _warn_dropped(
            len(clip_ids) - len(assigned), "not numbered vid1..vid1970 in the MSVD mapping"
        )
        return assigned
    # Per-id hashing needs no sorting: the result is independent of order.
    return {clip_id: hash_split(clip_id) for clip_id in clip_ids}


def read_split_table(split_file):
    """`{clip_id: split}` from a TSV split file or an already-read dict."""
    table = split_file if isinstance(split_file, dict) else read_split_file(split_file)
    for clip_id, split in table.items():
        if split not in SPLITS:
            raise ValueError(f"Clip {clip_id!r}: unknown split {split!r}.")
    return table


def warn_unlisted(count, split_file):
    """The warning of clips a split file does not list (they are dropped)."""
    where = "" if isinstance(split_file, dict) else f" {os.fspath(split_file)}"
    _warn_dropped(count, f"not listed in the split file{where}")


def _warn_dropped(count, why):
    if count:
        warnings.warn(
            f"{count} clip{'s' if count != 1 else ''} {why}: dropped.", stacklevel=3
        )


def carve_validation_split(
    clips, fraction=CARVED_VAL_FRACTION, min_train_clips=MIN_CLIPS_TO_CARVE
):
    """Moves a deterministic share of training clips to val, when none is.

    The clips moved are the `round(fraction * num_train)` (at least 1)
    training clips with the lowest CRC-32 of `"val:" + clip_id`: a function
    of the ids alone, so a rerun (or `--resume`) carves the same clips.

    Args:
        clips: list of `Clip`.
        fraction: float. Share of the training clips to move.
        min_train_clips: int. Carve nothing from fewer training clips.

    Returns:
        `(clips, carved_ids)`: the clips (new `Clip`s for the moved ones;
        the input is not changed) and the sorted ids moved. Nothing is moved
        (`carved_ids == []`) when a clip already has split `val` or there
        are fewer than `min_train_clips` training clips.

    Example:

    >>> clips, carved = carve_validation_split(clips)  # doctest: +SKIP
    """
    train = [clip.clip_id for clip in clips if clip.split == "train"]
    if any(clip.split == "val" for clip in clips) or len(train) < min_train_clips:
        return list(clips), []
    count = max(1, int(round(fraction * len(train))))
    ranked = sorted(train, key=lambda clip_id: (zlib.crc32(f"val:{clip_id}".encode("utf-8")), clip_id))
    carved = set(ranked[:count])
    moved = [
        dataclasses.replace(clip, split="val")
        if clip.split == "train" and clip.clip_id in carved
        else clip
        for clip in clips
    ]
    return moved, sorted(carved)
