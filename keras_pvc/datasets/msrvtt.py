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
from keras_pvc.datasets.clip import DatasetError
from keras_pvc.datasets.clip import clip_id_problem
from keras_pvc.datasets.clip import report_skipped
from keras_pvc.datasets.splits import read_split_table
from keras_pvc.datasets.splits import warn_unlisted

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


def read_json(path):
    """A JSON file's content; `DatasetError` naming the file if it is not JSON.

    A UTF-8 byte-order mark is accepted.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as file:
            return json.load(file)
    except UnicodeDecodeError as error:
        raise DatasetError(path, f"not UTF-8 text ({error})") from error
    except json.JSONDecodeError as error:
        raise DatasetError(path, f"not valid JSON ({error})") from error
    except RecursionError as error:
        raise DatasetError(path, "JSON nested too deeply") from error


def _sentence_order(sentence):
    number = sentence.get("sen_id", 0)
    return number if isinstance(number, (int, float)) and number == number else 0


def _captions_by_video(json_path, sentences):
    if not isinstance(sentences, list):
        raise DatasetError(json_path, "'sentences' is not a list")
    sentences = [sentence for sentence in sentences if isinstance(sentence, dict)]
    captions = {}
    for sentence in sorted(sentences, key=_sentence_order):
        caption = sentence.get("caption", "")
        caption = " ".join(caption.split()) if isinstance(caption, str) else ""
        video_id = sentence.get("video_id")
        if caption and isinstance(video_id, str):
            captions.setdefault(video_id, []).append(caption)
    return captions


def load_msrvtt(root_or_json, video_dir=None, split_file=None):
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
        split_file: str, path-like, dict or None. A TSV split file
            (`video_id<TAB>train|val|test`, see
            `keras_pvc.datasets.splits.read_split_file`) that wins over the
            json's `"split"`; videos it does not list are dropped (with a
            warning giving their count).

    Returns:
        A list of `Clip` in the json's video order, with clip id the
        `video_id` (`"video0"`), split `train`/`val`/`test` from the split
        file, else from the json (`"validate"` is `val`), and the captions, stripped, empty ones dropped, in `sen_id`
        order. Videos with no caption (an unlabelled test set) keep an empty
        reference list. Videos with an unknown split are skipped with a
        warning; so are videos without a `video_id` string and ids that
        cannot name a file in the video folder (`clip_id_problem`), each
        named with its reason.

    Raises:
        FileNotFoundError: no annotation file.
        DatasetError: a file is not UTF-8 JSON or not MSR-VTT's layout; the
            message names the file.

    Example:

    >>> clips = load_msrvtt("/data/msrvtt/train_val_videodatainfo.json")  # doctest: +SKIP
    >>> clips[0].clip_id, clips[0].split  # doctest: +SKIP
    ('video0', 'train')
    """
    table = read_split_table(split_file) if split_file is not None else None
    unlisted = set()
    clips = []
    seen = set()
    unknown_splits = 0
    skipped = []
    for json_path in _json_paths(root_or_json):
        data = read_json(json_path)
        if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
            raise DatasetError(json_path, "not an MSR-VTT file (no 'videos' list)")
        captions = _captions_by_video(json_path, data.get("sentences", []))
        base = os.path.dirname(os.path.abspath(json_path))
        search_dirs = [os.path.join(base, name) for name in VIDEO_DIR_NAMES]
        for number, video in enumerate(data["videos"]):
            video_id = video.get("video_id") if isinstance(video, dict) else None
            if not isinstance(video_id, str):
                skipped.append((f"videos[{number}]", "no 'video_id' string"))
                continue
            if table is not None:
                split = table.get(video_id)
                if split is None:
                    unlisted.add(video_id)
                    continue
            else:
                split = SPLIT_NAMES.get(str(video.get("split", "")).lower())
            if split is None:
                unknown_splits += 1
                continue
            folders = [video_dir] if video_dir is not None else search_dirs
            problem = next(
                (
                    p
                    for f in folders
                    for p in (clip_id_problem(video_id, f), clip_id_problem(video_id + ".mp4", f))
                    if p
                ),
                None,
            )
            if problem is not None:
                skipped.append((repr(video_id), problem))
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
    report_skipped(os.fspath(root_or_json), skipped, "video", stacklevel=3)
    if table is not None:
        warn_unlisted(len(unlisted), split_file)
    return clips
