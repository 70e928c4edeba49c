"""MSVD (Microsoft Research Video Description Corpus) loaders.

MSVD's layout:

```
root/
    video_corpus.csv        # VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description
    YouTubeClips/<VideoID>_<Start>_<End>.avi
    split.tsv               # optional: clip_id<TAB>train|val|test
    youtube_mapping.txt     # optional: <clip_id> vid<N>, for the standard split
```

A clip id is `<VideoID>_<Start>_<End>` (YouTube VideoIDs can themselves hold
`_` and `-`, e.g. `-_hbPLsZvvo_18_25`), with Start and End written as in the
csv. The seed project's layout keeps one `<clip_id>.npy` of features per clip
instead of the videos (`load_feature_clips`).
"""

import csv
import logging
import os
import warnings

import numpy as np

from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.splits import assign_splits

logger = logging.getLogger(__name__)

CORPUS_FIELDS = ("VideoID", "Start", "End", "Language", "Description")
# Tried in this order when looking for a clip's video file.
VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv")


def clip_id_of(video_id, start, end):
    """MSVD's clip id: `<VideoID>_<Start>_<End>`."""
    return f"{video_id}_{start}_{end}"


def _normalise(description):
    return " ".join(description.split()).lower()


def read_video_corpus(csv_path, language="English"):
    """Reads MSVD's `video_corpus.csv` into references per clip.

    Rows in other languages are skipped; so are rows missing VideoID, Start,
    End or Language (counted), empty descriptions (counted) and descriptions
    that repeat an earlier one of the same clip after collapsing whitespace
    and lower-casing (counted). Kept descriptions have their whitespace
    collapsed.

    Args:
        csv_path: str or path-like. The csv, with MSVD's header row.
        language: str or None. The `Language` to keep (case-insensitive);
            None keeps every language.

    Returns:
        A tuple `(references, counts)`: `references` maps clip id to its list
        of descriptions, in csv order; `counts` is a dict with the numbers of
        `rows`, `kept`, `other_language`, `missing_fields`, `empty` and
        `duplicate` rows.

    Raises:
        ValueError: the csv lacks one of MSVD's columns.
    """
    references = {}
    seen = {}
    counts = dict(
        rows=0, kept=0, other_language=0, missing_fields=0, empty=0, duplicate=0
    )
    wanted_language = None if language is None else language.strip().lower()
    with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as file:
        reader = csv.DictReader(file)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [name for name in CORPUS_FIELDS if name not in header]
        if missing:
            raise ValueError(
                f"{os.fspath(csv_path)}: not an MSVD video_corpus.csv, the "
                f"header lacks {missing} (header: {header})."
            )
        for row in reader:
            counts["rows"] += 1
            if row.get(None) and row.get("Description") is not None:
                # An unquoted comma in the description (the last column).
                row["Description"] = ",".join([row["Description"]] + row[None])
            fields = {name: (row.get(name) or "").strip() for name in CORPUS_FIELDS}
            if not all(fields[name] for name in ("VideoID", "Start", "End", "Language")) or (
                row.get("Description") is None
            ):
                counts["missing_fields"] += 1
                continue
            if wanted_language is not None and fields["Language"].lower() != wanted_language:
                counts["other_language"] += 1
                continue
            description = " ".join(fields["Description"].split())
            if not description:
                counts["empty"] += 1
                continue
            clip_id = clip_id_of(fields["VideoID"], fields["Start"], fields["End"])
            key = _normalise(description)
            if key in seen.setdefault(clip_id, set()):
                counts["duplicate"] += 1
                continue
            seen[clip_id].add(key)
            references.setdefault(clip_id, []).append(description)
            counts["kept"] += 1
    if counts["missing_fields"]:
        warnings.warn(
            f"{os.fspath(csv_path)}: skipped {counts['missing_fields']} rows "
            "missing VideoID, Start, End, Language or Description.",
            stacklevel=2,
        )
    logger.info("%s: %s", os.fspath(csv_path), counts)
    return references, counts


def find_video(video_dir, clip_id):
    """The clip's video in `video_dir`: `<clip_id>.avi`, else .mp4/.webm/.mkv.

    Returns the `.avi` path when none exists (the extractor reports it).
    """
    for extension in VIDEO_EXTENSIONS:
        path = os.path.join(video_dir, clip_id + extension)
        if os.path.isfile(path):
            return path
    return os.path.join(video_dir, clip_id + VIDEO_EXTENSIONS[0])


def _splits_for(clip_ids, root, split_file, mapping_file):
    if split_file is None and root is not None:
        default = os.path.join(root, "split.tsv")
        split_file = default if os.path.isfile(default) else None
    if mapping_file is None and root is not None:
        default = os.path.join(root, "youtube_mapping.txt")
        mapping_file = default if os.path.isfile(default) else None
    return assign_splits(clip_ids, split_file=split_file, standard=mapping_file)


def load_msvd(
    root,
    split_file=None,
    mapping_file=None,
    video_dir="YouTubeClips",
    features_dir=None,
    language="English",
):
    """Loads MSVD as a list of `Clip`s.

    References come from `root/video_corpus.csv` (see `read_video_corpus`:
    one language, empty and duplicate descriptions dropped). Splits follow
    `keras_pvc.datasets.splits.assign_splits`: `split_file` if given, else
    `root/split.tsv` if it exists; else the standard 1200/100/670 split from
    `mapping_file`, else `root/youtube_mapping.txt` if it exists; else the
    deterministic hash split. Clips the split rule drops are left out.

    Clips whose video file is missing are still returned (the extractor
    reports them); `missing_videos(clips)` lists them.

    Args:
        root: str or path-like. The MSVD folder.
        split_file: str, path-like or None. A TSV split file.
        mapping_file: str, path-like or None. MSVD's `youtube_mapping.txt`.
        video_dir: str. The video folder, relative to `root` (or absolute).
        features_dir: str, path-like or None. A folder of `<clip_id>.npy`
            features; sets each clip's `features_path` (present or not).
        language: str or None. The descriptions' language to keep.

    Returns:
        A list of `Clip`, in csv order, with `video_path` set to
        `root/video_dir/<clip_id>.avi` (or the .mp4/.webm/.mkv present).

    Example:

    >>> clips = load_msvd("/data/msvd")  # doctest: +SKIP
    >>> clips[0].clip_id, clips[0].split, clips[0].references[:1]  # doctest: +SKIP
    ('-4wsuPCjDBc_5_15', 'train', ['a squirrel is eating a peanut in its shell'])
    """
    root = os.fspath(root)
    references, _ = read_video_corpus(os.path.join(root, "video_corpus.csv"), language)
    splits = _splits_for(list(references), root, split_file, mapping_file)
    video_dir = os.path.join(root, os.fspath(video_dir))
    clips = []
    for clip_id, clip_references in references.items():
        if clip_id not in splits:
            continue
        clips.append(
            Clip(
                clip_id=clip_id,
                references=clip_references,
                split=splits[clip_id],
                video_path=find_video(video_dir, clip_id),
                features_path=(
                    None
                    if features_dir is None
                    else os.path.join(os.fspath(features_dir), clip_id + ".npy")
                ),
            )
        )
    return clips


def missing_videos(clips):
    """The clips whose `video_path` is None or names no file."""
    return [
        clip
        for clip in clips
        if clip.video_path is None or not os.path.isfile(clip.video_path)
    ]


def load_feature_clips(
    features_dir,
    csv_path,
    split_file=None,
    mapping_file=None,
    language="English",
    drop_missing=True,
):
    """Loads the seed project's layout: per-clip features and MSVD's csv.

    `features_dir` holds `<clip_id>.npy` files: pooled features of shape
    `(T, D)` (the seed's `(80, 4096)` VGG16 fc7) or region grids `(T, N, C)`.
    References come from `csv_path` as in `load_msvd`; splits follow
    `assign_splits` (a `split.tsv` / `youtube_mapping.txt` beside the csv is
    used when none is given).

    Args:
        features_dir: str or path-like. The folder of `.npy` files.
        csv_path: str or path-like. MSVD's `video_corpus.csv`.
        split_file: str, path-like or None. A TSV split file.
        mapping_file: str, path-like or None. MSVD's `youtube_mapping.txt`.
        language: str or None. The descriptions' language to keep.
        drop_missing: bool. Leave out clips with no `.npy` file (with a
            warning giving their count); False keeps them.

    Returns:
        A list of `Clip` with `features_path` set and `video_path` None.
    """
    features_dir = os.fspath(features_dir)
    references, _ = read_video_corpus(csv_path, language)
    clip_ids = list(references)
    if drop_missing:
        present = [
            clip_id
            for clip_id in clip_ids
            if os.path.isfile(os.path.join(features_dir, clip_id + ".npy"))
        ]
        if len(present) < len(clip_ids):
            warnings.warn(
                f"{len(clip_ids) - len(present)} clips of {os.fspath(csv_path)} "
                f"have no features in {features_dir}: dropped.",
                stacklevel=2,
            )
        clip_ids = present
    root = os.path.dirname(os.path.abspath(os.fspath(csv_path)))
    splits = _splits_for(clip_ids, root, split_file, mapping_file)
    return [
        Clip(
            clip_id=clip_id,
            references=references[clip_id],
            split=splits[clip_id],
            features_path=os.path.join(features_dir, clip_id + ".npy"),
        )
        for clip_id in clip_ids
        if clip_id in splits
    ]


def load_features(path):
    """Loads one clip's features as float32: `(T, D)` or `(T, N, C)`.

    Arrays are read with `np.load(path, allow_pickle=False)`: a file of
    pickled objects is refused.

    Args:
        path: str or path-like. A `.npy` file.

    Returns:
        A float32 `np.ndarray` of rank 2 or 3.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a readable `.npy` array, holds objects
            or non-numbers, or has the wrong rank; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Feature file {path!r} not found.")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:
        # Pickled objects ("Object arrays cannot be loaded when
        # allow_pickle=False"), truncated files, files that are not .npy.
        raise ValueError(
            f"Feature file {path!r} cannot be loaded as a .npy array: {error}"
        ) from error
    if not isinstance(array, np.ndarray):
        if hasattr(array, "close"):  # an .npz archive
            array.close()
        raise ValueError(
            f"Feature file {path!r} holds {type(array).__name__}, not one array."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(
            f"Feature file {path!r} holds dtype {array.dtype}, not numbers."
        )
    if array.ndim not in (2, 3):
        raise ValueError(
            f"Feature file {path!r} has shape {array.shape}: expected (T, D) "
            "pooled features or (T, N, C) region grids."
        )
    return array.astype(np.float32, copy=False)
