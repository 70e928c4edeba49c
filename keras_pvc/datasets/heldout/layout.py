"""Writing a held-out renderer's clips in the MSVD layout.

Shared by the held-out renderers (`sprites`, `outlines`, `stage`); written apart from
`keras_pvc.datasets.procedural` on purpose: these sets exist to measure what
the package does on folders it was not tuned on.

```
root/
    YouTubeClips/<id>_0_<seconds>.avi   # MJPG in AVI
    video_corpus.csv                    # MSVD's header, one row per reference
    split.tsv                           # clip_id<TAB>train|test (80/20, no val)
    metadata.json                       # generator, parameters, one scene per clip
```
"""

import csv
import json
import os

import cv2
import numpy as np

from keras_pvc.datasets.msvd import CORPUS_HEADER


def scene_references(scene, rng, templates, shape_synonyms):
    """A scene's references: each of its templates once, shape synonyms drawn.

    `templates` maps a motion (one-object scenes) or a relation (two-object
    scenes) to format strings with `{a}` (the mover; also `{n}`) and `{b}`
    (the other object); `shape_synonyms` maps a shape to its words.
    """

    def name(color, shape):
        synonyms = shape_synonyms[shape]
        return f"{color} {synonyms[rng.integers(len(synonyms))]}"

    key = scene["motion"] if scene["type"] == "single" else scene["relation"]
    mover = scene["mover"]
    captions = []
    for template in templates[key]:
        a = name(mover["color"], mover["shape"])
        b = name(scene["other"]["color"], scene["other"]["shape"]) if "other" in scene else ""
        captions.append(template.format(n=a, a=a, b=b))
    return [captions[i] for i in rng.permutation(len(captions))]


def write_avi(path, frames, fps):
    """Writes RGB uint8 frames `(T, H, W, 3)` to an MJPG `.avi` file."""
    height, width = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    writer = cv2.VideoWriter(path, cv2.CAP_OPENCV_MJPEG, fourcc, fps, (width, height))
    if not writer.isOpened():
        writer = cv2.VideoWriter(path, fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video to {path!r}.")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def train_test_splits(num_clips, seed, test_fraction=0.2):
    """`"train"`/`"test"` per clip index: a seeded 80/20 split, no val."""
    num_test = max(1, int(round(num_clips * test_fraction))) if num_clips > 1 else 0
    order = np.random.default_rng([seed, 7919]).permutation(num_clips)
    splits = ["train"] * num_clips
    for index in order[:num_test]:
        splits[int(index)] = "test"
    return splits


def scene_clips(num_clips, seed, salt, sample_scene, references, render, fps, prefix, seconds=None):
    """The `clips` list of `write_dataset` for a renderer's module functions.

    Clip `i` draws its scene and then its references from
    `np.random.default_rng([seed, i, salt])` (`salt` keeps the renderers'
    scenes apart for one seed); its frames are `render(scene)`, drawn when
    written. Its id is `<prefix><i:05d>_0_<seconds>`, `seconds` given or
    the scene's `num_frames // fps`.
    """
    clips = []
    for index in range(num_clips):
        rng = np.random.default_rng([seed, index, salt])
        scene = sample_scene(rng)
        clip_seconds = scene["num_frames"] // fps if seconds is None else seconds
        clips.append((
            f"{prefix}{index:05d}_0_{clip_seconds}",
            fps,
            lambda scene=scene: render(scene),
            references(scene, rng),
            scene,
        ))
    return clips


def write_dataset(root, clips, params, extra_metadata=None, overwrite=False):
    """Writes clips (rendered lazily) and the annotation files.

    Args:
        root: str. The dataset folder.
        clips: list of `(clip_id, fps, render, references, scene)`: `render()`
            returns the clip's RGB frames, `scene` is a JSON-able dict.
        params: dict. The generator's parameters; a folder already written
            with the same parameters is returned at once.
        extra_metadata: dict or None. More keys for `metadata.json`.
        overwrite: bool. Replace a folder written with other parameters.

    Returns:
        str, `root`.
    """
    root = os.fspath(root)
    metadata_path = os.path.join(root, "metadata.json")
    if os.path.exists(metadata_path):
        with open(metadata_path, encoding="utf-8") as handle:
            old = json.load(handle)
        if {key: old.get(key) for key in params} == params:
            return root
        if not overwrite:
            raise ValueError(
                f"{root!r} holds a dataset made with other parameters; pass "
                "overwrite=True or choose another root."
            )
        os.remove(metadata_path)
    video_dir = os.path.join(root, "YouTubeClips")
    os.makedirs(video_dir, exist_ok=True)
    rows, scenes, split_lines = [], {}, []
    splits = train_test_splits(len(clips), params.get("seed", 0))
    for (clip_id, fps, render, references, scene), split in zip(clips, splits):
        write_avi(os.path.join(video_dir, clip_id + ".avi"), render(), fps)
        video_id, start, end = clip_id.rsplit("_", 2)
        for worker, caption in enumerate(references):
            rows.append((video_id, start, end, worker, "clean", 0, "English", caption))
        scenes[clip_id] = scene
        split_lines.append(f"{clip_id}\t{split}\n")
    with open(os.path.join(root, "video_corpus.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CORPUS_HEADER)
        writer.writerows(rows)
    with open(os.path.join(root, "split.tsv"), "w", encoding="utf-8") as f:
        f.writelines(split_lines)
    metadata = dict(params)
    metadata.update(extra_metadata or {})
    metadata["scenes"] = scenes
    # Written last: it marks the folder complete.
    temporary = metadata_path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=1)
    os.replace(temporary, metadata_path)
    return root
