"""MSR-VTT loader: `videodatainfo.json` and its train/val and test parts.

The 2016 release ships `train_val_videodatainfo.json` (videos 0-6512) and
`test_videodatainfo.json` (6513-9999), or all in one `videodatainfo.json`:

```json
{"videos": [{"video_id": "video0", "category": 9, "url": "...",
             "start time": 137.72, "end time": 149.44, "split": "train", "id": 0}],
 "sentences": [{"caption": "...", "video_id": "video0", "sen_id": 0}]}
```

The distributed `<video_id>.mp4` files are already cut from the YouTube
video, so `"start time"`/`"end time"` (times in the YouTube source) are not
applied: clips have `start = end = None`.
"""

import json
import os
import warnings

from keras_pvc.datasets.clip import Clip

JSON_NAMES = (
    "videodatainfo.json",
    "train_val_videodatainfo.json",
    "test_videodatainfo.json",
)
# Where the videos usually sit, relative to the json's folder.
VIDEO_DIR_NAMES = ("videos", "TrainValVideo", "TestVideo", os.path.join("videos", "all"), "")
SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


def _json_paths(root_or_json):
    path = os.fspath(root_or_json)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"MSR-VTT annotations {path!r} not found.")
    found = [os.path.join(path, name) for name in JSON_NAMES]
    found = [name for name in found if os.path.isfile(name)]
    if os.path.join(path, JSON_NAMES[0]) in found:
        found = found[:1]  # the whole set; the parts would repeat it
    if not found:
        raise FileNotFoundError(f"{path!r} holds none of {JSON_NAMES}.")
    return found


def _video_path(video_id, video_dir, search_dirs):
    if video_dir is not None:
        return os.path.join(os.fspath(video_dir), video_id + ".mp4")
    for directory in search_dirs:
        path = os.path.join(directory, video_id + ".mp4")
        if os.path.isfile(path):
            return path
    return None


def load_msrvtt(root_or_json, video_dir=None):
    """Loads MSR-VTT as a list of `Clip`s.

    Args:
        root_or_json: str or path-like. A `videodatainfo.json` (or
            `train_val_videodatainfo.json`, `test_videodatainfo.json`), or a
            folder holding `videodatainfo.json` or the two parts (both read).
        video_dir: str, path-like or None. The folder of `<video_id>.mp4`;
            every clip's `video_path` points there, present or not. None:
            look beside the json in `videos/`, `TrainValVideo/`, `TestVideo/`,
            `videos/all/` and the json's own folder, and leave `video_path`
            None where no file is found.

    Returns:
        A list of `Clip` in the json's video order, with clip id the
        `video_id` (`"video0"`), split `train`/`val`/`test` (`"validate"` is
        `val`) and the captions, stripped, empty ones dropped, in `sen_id`
        order. Videos with no caption (an unlabelled test set) keep an empty
        reference list. Videos with an unknown split are skipped with a
        warning.

    Example:

    >>> clips = load_msrvtt("/data/msrvtt/train_val_videodatainfo.json")  # doctest: +SKIP
    >>> clips[0].clip_id, clips[0].split  # doctest: +SKIP
    ('video0', 'train')
    """
    clips = []
    seen = set()
    unknown_splits = 0
    for json_path in _json_paths(root_or_json):
        with open(json_path, encoding="utf-8") as file:
            try:
                data = json.load(file)
            except json.JSONDecodeError as error:
                raise ValueError(f"{json_path}: not valid JSON ({error}).") from error
        if not isinstance(data, dict) or "videos" not in data:
            raise ValueError(f"{json_path}: not an MSR-VTT file (no 'videos' list).")
        captions = {}
        for sentence in sorted(
            data.get("sentences", []), key=lambda sentence: sentence.get("sen_id", 0)
        ):
            caption = " ".join(str(sentence.get("caption", "")).split())
            if caption and "video_id" in sentence:
                captions.setdefault(sentence["video_id"], []).append(caption)
        base = os.path.dirname(os.path.abspath(json_path))
        search_dirs = [os.path.join(base, name) for name in VIDEO_DIR_NAMES]
        for video in data["videos"]:
            video_id = video["video_id"]
            split = SPLIT_NAMES.get(str(video.get("split", "")).lower())
            if split is None:
                unknown_splits += 1
                continue
            if video_id in seen:
                continue
            seen.add(video_id)
            clips.append(
                Clip(
                    clip_id=video_id,
                    references=captions.get(video_id, []),
                    split=split,
                    video_path=_video_path(video_id, video_dir, search_dirs),
                )
            )
    if unknown_splits:
        warnings.warn(
            f"{unknown_splits} MSR-VTT videos with a split other than "
            "train/validate/test: skipped.",
            stacklevel=2,
        )
    return clips
