"""YouCook2 loader: one clip per annotated segment of a cooking video.

`youcookii_annotations.json` (YouCook2 v1.1):

```json
{"database": {"<youtube_id>": {
    "duration": 241.62, "subset": "training", "recipe_type": "113",
    "video_url": "...",
    "annotations": [{"segment": [90, 102], "id": 0,
                     "sentence": "spread margarine on two slices of white bread"}]}}}
```

Each segment becomes a `Clip` with id `<youtube_id>_<start>_<end>`, its
`start`/`end` in seconds within the whole video, and its one sentence as the
reference. The raw videos are usually laid out as
`raw_videos/<subset>/<recipe_type>/<youtube_id>.<ext>`; the loader finds a
video at `<video_dir>/<youtube_id>.*`, `<video_dir>/<recipe_type>/<youtube_id>.*`,
`<video_dir>/<subset>/<recipe_type>/<youtube_id>.*`, or anywhere below
`video_dir`, with any video extension.
"""

import math
import os
import warnings

from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.clip import DatasetError
from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.clip import report_skipped
from keras_pvc.datasets.msrvtt import read_json
from keras_pvc.datasets.splits import read_split_table
from keras_pvc.datasets.splits import warn_unlisted

SUBSETS = {"training": "train", "validation": "val", "testing": "test"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".flv", ".m4v", ".mpg", ".mpeg")


def _seconds_text(value):
    """`90` -> `"90"`, `90.0` -> `"90"`, `90.5` -> `"90.5"`."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _segment(annotation):
    """`(sentence, start, end)` of a valid annotation, else None."""
    if not isinstance(annotation, dict):
        return None
    sentence = annotation.get("sentence", "")
    sentence = " ".join(sentence.split()) if isinstance(sentence, str) else ""
    try:
        start, end = (float(value) for value in annotation.get("segment"))
    except (TypeError, ValueError, OverflowError):
        return None
    if not sentence or not math.isfinite(end) or not end > start >= 0:
        return None
    return sentence, start, end


def index_videos(video_dir):
    """Maps each video's name (no extension) below `video_dir` to its path.

    Where a name occurs more than once, the shallowest file wins (then the
    first in sorted order), so `<video_dir>/<id>.mp4` beats
    `<video_dir>/<recipe_type>/<id>.mp4`.
    """
    found = {}
    video_dir = os.fspath(video_dir)
    for directory, subdirectories, names in os.walk(video_dir):
        subdirectories.sort()
        depth = os.path.relpath(directory, video_dir).count(os.sep)
        depth = 0 if directory == video_dir else depth + 1
        for name in sorted(names):
            stem, extension = os.path.splitext(name)
            if extension.lower() not in VIDEO_EXTENSIONS:
                continue
            if stem not in found or depth < found[stem][0]:
                found[stem] = (depth, os.path.join(directory, name))
    return {stem: path for stem, (_, path) in found.items()}


def load_youcook2(annotations_json, video_dir=None, split_file=None):
    """Loads YouCook2's annotated segments as a list of `Clip`s.

    Args:
        annotations_json: str or path-like. `youcookii_annotations.json`
            (the trainval file, or one with the test subset).
        video_dir: str, path-like or None. The raw videos' folder, searched
            as the module docstring says. None: no `video_path`.
        split_file: str, path-like, dict or None. A TSV split file (see
            `keras_pvc.datasets.splits.read_split_file`) that wins over the
            json's subsets. A line names a segment (`GLd3aX16zBg_90_102`) or
            a whole video (`GLd3aX16zBg`: all its segments; the segment's
            line wins). Segments it does not list are dropped (with a
            warning giving their count).

    Returns:
        A list of `Clip`, video by video in the json's order and segment by
        segment within a video, with split `train`/`val`/`test` from the
        subset `training`/`validation`/`testing`. `video_path` is the whole
        video (None where not found); `start`/`end` cut the segment.
        Videos with an unknown subset and segments without a sentence or
        with a malformed segment are skipped, with a warning giving counts.

    Example:

    >>> clips = load_youcook2("youcookii_annotations.json", "raw_videos")  # doctest: +SKIP
    >>> clips[0].clip_id, clips[0].start, clips[0].end  # doctest: +SKIP
    ('GLd3aX16zBg_90_102', 90.0, 102.0)
    """
    path = os.fspath(annotations_json)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"YouCook2 annotations {path!r} not found.")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DatasetError(path, "not a YouCook2 annotation file (no 'database' object)")
    videos = index_videos(video_dir) if video_dir is not None else {}

    table = read_split_table(split_file) if split_file is not None else None
    unlisted = 0
    clips = []
    skipped_videos = 0
    skipped_segments = 0
    bad_ids = []
    for youtube_id, entry in data["database"].items():
        problem = clip_id_problem(youtube_id)
        if problem is not None:
            bad_ids.append((repr(youtube_id), problem))
            continue
        split = (
            SUBSETS.get(str(entry.get("subset", "")).lower())
            if isinstance(entry, dict)
            else None
        )
        if split is None and table is None:
            skipped_videos += 1
            continue
        video_path = videos.get(youtube_id)
        annotations = entry.get("annotations") or []
        for annotation in annotations if isinstance(annotations, list) else []:
            segment = _segment(annotation)
            if segment is None:
                skipped_segments += 1
                continue
            sentence, start, end = segment
            clip_id = f"{youtube_id}_{_seconds_text(start)}_{_seconds_text(end)}"
            clip_split = split
            if table is not None:
                clip_split = table.get(clip_id, table.get(youtube_id))
                if clip_split is None:
                    unlisted += 1
                    continue
            clips.append(
                Clip(
                    clip_id=clip_id,
                    references=[sentence],
                    split=clip_split,
                    video_path=video_path,
                    start=start,
                    end=end,
                )
            )
    report_skipped(path, bad_ids, "video", stacklevel=3)
    if table is not None:
        warn_unlisted(unlisted, split_file)
    if skipped_videos or skipped_segments:
        warnings.warn(
            f"{path}: skipped {skipped_videos} videos with an unknown subset and "
            f"{skipped_segments} segments without a sentence or a valid [start, end].",
            stacklevel=2,
        )
    return clips
