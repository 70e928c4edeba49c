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
from keras_pvc.datasets.clip import DatasetError
from keras_pvc.datasets.clip import DatasetWarning
from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.clip import report_skipped
from keras_pvc.datasets.splits import assign_splits

logger = logging.getLogger(__name__)

# MSVD's video_corpus.csv header row (the procedural and held-out datasets
# write it too).
CORPUS_HEADER = (
    "VideoID",
    "Start",
    "End",
    "WorkerID",
    "Source",
    "AnnotationTime",
    "Language",
    "Description",
)
# The columns `read_video_corpus` needs (the first four must be non-empty).
CORPUS_FIELDS = ("VideoID", "Start", "End", "Language", "Description")
# Tried in this order when looking for a clip's video file.
VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv")
# Files a features folder holds per clip (`keras_pvc.training.extract`).
FEATURE_SUFFIXES = (".npy", ".mask.npy")


def clip_id_of(video_id, start, end):
    """MSVD's clip id: `<VideoID>_<Start>_<End>`."""
    return f"{video_id}_{start}_{end}"


def _normalise(description):
    return " ".join(description.split()).lower()


def read_video_corpus(csv_path, language="English"):
    """Reads MSVD's `video_corpus.csv` into references per clip.

    Rows in other languages are skipped; so are rows missing VideoID, Start,
    End, Language or the Description field, empty descriptions, and
    descriptions that repeat an earlier one of the same clip after collapsing
    whitespace and lower-casing. Every skipped row is listed with its line
    number and reason in `counts["skipped"]`, and one `DatasetWarning` names
    the lines of each kind (languages other than the one kept are expected,
    so they are only counted in that warning when some row was skipped for
    another reason). Kept descriptions have their whitespace collapsed.

    Args:
        csv_path: str or path-like. The csv, with MSVD's header row (a UTF-8
            byte-order mark is accepted; undecodable bytes become U+FFFD).
        language: str or None. The `Language` to keep (case-insensitive);
            None keeps every language.

    Returns:
        A tuple `(references, counts)`: `references` maps clip id to its list
        of descriptions, in csv order; `counts` is a dict with the numbers of
        `rows`, `kept`, `other_language`, `missing_fields`, `empty` and
        `duplicate` rows, and `skipped`: a list of `(line, reason)` for every
        row left out (line 1 is the header).

    Raises:
        FileNotFoundError: the csv is missing.
        DatasetError: the csv lacks one of MSVD's columns or cannot be parsed
            (a field over the csv module's limit of 128 KiB); the message
            names the file and the line.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"MSVD csv {csv_path!r} not found.")
    references, seen = {}, {}
    counts = dict(
        rows=0, kept=0, other_language=0, missing_fields=0, empty=0, duplicate=0
    )
    skipped = []
    wanted_language = None if language is None else language.strip().lower()
    with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as file:
        reader = csv.DictReader(file)
        try:
            header = [str(name).strip() for name in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [name for name in CORPUS_FIELDS if name not in header]
            if missing:
                raise DatasetError(
                    csv_path,
                    f"not an MSVD video_corpus.csv, the header lacks {missing} "
                    f"(header: {header[:12]})",
                )
            for row in reader:
                counts["rows"] += 1
                kind, reason = _row_problem(row, wanted_language, seen, reader.line_num)
                if kind is not None:
                    counts[kind] += 1
                    skipped.append((kind, reader.line_num, reason))
                    continue
                clip_id, description = row["_clip_id"], row["_description"]
                references.setdefault(clip_id, []).append(description)
                counts["kept"] += 1
        except csv.Error as error:
            raise DatasetError(
                csv_path, f"cannot be parsed as csv after line {reader.line_num} ({error})"
            ) from error
    _warn_skipped_rows(csv_path, skipped, counts, language)
    counts["skipped"] = [(line, reason) for _, line, reason in skipped]
    logger.info("%s: %s", csv_path, {k: v for k, v in counts.items() if k != "skipped"})
    return references, counts


def _row_problem(row, wanted_language, seen, line):
    """`(counter name, reason)` for a row to skip, `(None, None)` to keep it.

    A kept row gets `_clip_id` and `_description`; `seen` maps each clip id
    to `{normalised description: first line}` to find duplicates.
    """
    if row.get(None) and row.get("Description") is not None:
        # An unquoted comma in the description (the last column).
        row["Description"] = ",".join([str(row["Description"])] + list(row[None]))
    fields = {name: str(row.get(name) or "").strip() for name in CORPUS_FIELDS}
    absent = [name for name in CORPUS_FIELDS[:4] if not fields[name]]
    if row.get("Description") is None:
        absent.append("Description")
    if absent:
        return "missing_fields", f"no {', '.join(absent)}"
    if wanted_language is not None and fields["Language"].lower() != wanted_language:
        return "other_language", f"language {fields['Language']!r}"
    description = " ".join(fields["Description"].split())
    if not description:
        return "empty", "empty Description"
    clip_id = clip_id_of(fields["VideoID"], fields["Start"], fields["End"])
    key = _normalise(description)
    first = seen.setdefault(clip_id, {}).get(key)
    if first is not None:
        return "duplicate", f"repeats line {first} of clip {clip_id!r}"
    seen[clip_id][key] = line
    row["_clip_id"], row["_description"] = clip_id, description
    return None, None


# What `_warn_skipped_rows` calls each kind of skipped row.
_SKIP_KINDS = (
    ("missing_fields", "missing a field"),
    ("empty", "with an empty Description"),
    ("duplicate", "repeating a description of the same clip"),
    ("other_language", "in another language"),
)


def _warn_skipped_rows(csv_path, skipped, counts, language, limit=10):
    problems = counts["missing_fields"] + counts["empty"] + counts["duplicate"]
    if not problems:
        return
    parts = []
    for kind, label in _SKIP_KINDS:
        rows = [(line, reason) for found, line, reason in skipped if found == kind]
        if not rows:
            continue
        shown = ", ".join(f"line {line} ({reason})" for line, reason in rows[:limit])
        if kind == "other_language":
            shown = "lines " + ", ".join(str(line) for line, _ in rows[:limit])
        more = f", and {len(rows) - limit} more" if len(rows) > limit else ""
        parts.append(f"{len(rows)} rows {label}: {shown}{more}")
    warnings.warn(
        f"{csv_path}: skipped {len(skipped)} of {counts['rows']} rows (kept "
        f"{language or 'every language'}): " + "; ".join(parts) + ".",
        DatasetWarning,
        stacklevel=3,
    )


def usable_clip_ids(references, folders, source):
    """The entries of `references` whose clip id can name a file in `folders`.

    Applies `keras_pvc.datasets.clip.clip_id_problem` to every id, and to the
    id with each suffix, against every folder; the ids it refuses
    (`../../escape`, an id with a `/`, one whose `<id>.avi` is a symbolic
    link out of the folder) are dropped and named with their reason in one
    `DatasetWarning` citing `source`.

    Args:
        references: dict `{clip_id: references}`.
        folders: dict `{folder: suffixes}`, e.g. `{video_dir: (".avi",)}`.
        source: str. The file the ids came from, for the warning.
    """
    kept, skipped = {}, []
    for clip_id, clip_references in references.items():
        problem = clip_id_problem(clip_id)
        for folder, suffixes in folders.items():
            for name in (clip_id,) + tuple(clip_id + suffix for suffix in suffixes):
                problem = problem or clip_id_problem(name, folder)
        if problem is None:
            kept[clip_id] = clip_references
        else:
            skipped.append((repr(clip_id), problem))
    report_skipped(source, skipped, "clip", stacklevel=4)
    return kept


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
    reports them); `missing_videos(clips)` lists them. Clips whose id cannot
    name a file inside the video (or features) folder (`../../escape`, see
    `keras_pvc.datasets.clip.clip_id_problem`) are left out, each named with
    its reason in a `DatasetWarning`.

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
    csv_path = os.path.join(root, "video_corpus.csv")
    references, _ = read_video_corpus(csv_path, language)
    video_dir = os.path.join(root, os.fspath(video_dir))
    folders = {video_dir: VIDEO_EXTENSIONS}
    if features_dir is not None:
        folders[os.fspath(features_dir)] = FEATURE_SUFFIXES
    references = usable_clip_ids(references, folders, csv_path)
    splits = _splits_for(list(references), root, split_file, mapping_file)
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
    references = usable_clip_ids(
        references, {features_dir: FEATURE_SUFFIXES}, os.fspath(csv_path)
    )
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
        DatasetError: (a `ValueError`) the file is not a readable `.npy`
            array, holds objects or non-numbers, or has the wrong rank; the
            message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Feature file {path!r} not found.")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:
        # Pickled objects ("Object arrays cannot be loaded when
        # allow_pickle=False"), truncated files, files that are not .npy.
        raise DatasetError(
            path, f"feature file cannot be loaded as a .npy array: {error}"
        ) from error
    if not isinstance(array, np.ndarray):
        if hasattr(array, "close"):  # an .npz archive
            array.close()
        raise DatasetError(path, f"feature file holds {type(array).__name__}, not one array")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DatasetError(path, f"feature file holds dtype {array.dtype}, not numbers")
    if array.ndim not in (2, 3):
        raise DatasetError(
            path,
            f"feature file has shape {array.shape}: expected (T, D) pooled "
            "features or (T, N, C) region grids",
        )
    return array.astype(np.float32, copy=False)
