"""The embedded default dataset: coloured shapes in spatial relations.

`generate_procedural_dataset` writes short videos of one or two coloured
shapes on a dark background, each clip with several paraphrased English
references, in the MSVD layout:

```
root/
    YouTubeClips/proc00000_0_2.avi    # MJPG in AVI, RGB content, 8 fps
    video_corpus.csv                  # MSVD's header, one row per reference
    split.tsv                         # clip_id<TAB>train|val|test, no header
    metadata.json                     # parameters, vocabulary, one scene per clip
```

Every caption names the relation between the shapes ("a red circle is to
the left of a blue square", "a red circle moves toward a blue square"), and
the same pair of shapes appears in clips with different relations, so a
model that only recognises which shapes are present cannot score full marks:
the spatial layout has to be read from the frames.

Everything is deterministic for a seed, and clip `i` depends only on
`(seed, i)`, so a dataset of 40 clips is the first 40 clips of one of 400.

Example:

```python
root = generate_procedural_dataset("/tmp/shapes", num_clips=400)
# A second call with the same arguments returns at once.
```
"""

import csv
import dataclasses
import glob
import json
import math
import os

import cv2
import numpy as np

from keras_pvc.datasets.msvd import CORPUS_HEADER

GENERATOR = "keras_pvc.procedural"
VERSION = 1
VIDEO_ID_PREFIX = "proc"  # VideoIDs are `proc00042`: no underscore inside.
FPS = 8

# RGB colours that stay clearly apart after MJPG's 4:2:0 chroma subsampling.
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 80, 240),
    "yellow": (230, 210, 30),
}
BACKGROUND = (20, 20, 24)
KINDS = ("circle", "square", "triangle")

STATIC_RELATIONS = ("left_of", "right_of", "above", "below")
MOTION_RELATIONS = ("toward", "away_from")
SINGLE_RELATIONS = ("moves_left", "moves_right", "moves_up", "moves_down")
RELATIONS = STATIC_RELATIONS + MOTION_RELATIONS + SINGLE_RELATIONS
# Half the clips show a static pair, 30% a pair with one mover, 20% one mover.
RELATION_WEIGHTS = (0.125,) * 4 + (0.15,) * 2 + (0.05,) * 4

# `{a}` is the subject ("red circle"), `{b}` the object. The first template of
# each relation is its canonical phrasing: it is always the first reference.
TEMPLATES = {
    "left_of": (
        "a {a} is to the left of a {b}",
        "a {b} is to the right of a {a}",
        "there is a {a} to the left of a {b}",
        "the {a} is left of the {b}",
        "the {a} sits left of the {b}",
        "a {a} is on the left side of a {b}",
        "the {b} is on the right of the {a}",
    ),
    "right_of": (
        "a {a} is to the right of a {b}",
        "a {b} is to the left of a {a}",
        "there is a {a} to the right of a {b}",
        "the {a} is right of the {b}",
        "the {a} sits right of the {b}",
        "a {a} is on the right side of a {b}",
        "the {b} is on the left of the {a}",
    ),
    "above": (
        "a {a} is above a {b}",
        "a {b} is below a {a}",
        "there is a {a} above a {b}",
        "the {a} sits above the {b}",
        "the {b} is under the {a}",
        "a {a} is over a {b}",
        "the {b} sits below the {a}",
    ),
    "below": (
        "a {a} is below a {b}",
        "a {b} is above a {a}",
        "there is a {a} below a {b}",
        "the {a} sits below the {b}",
        "the {a} is under the {b}",
        "a {b} is over a {a}",
        "the {b} sits above the {a}",
    ),
    "toward": (
        "a {a} moves toward a {b}",
        "a {a} approaches a {b}",
        "the {a} moves closer to the {b}",
        "a {a} is moving toward a {b}",
        "the {a} slides toward the {b}",
        "the {a} gets closer to the {b}",
    ),
    "away_from": (
        "a {a} moves away from a {b}",
        "a {a} is moving away from a {b}",
        "the {a} slides away from the {b}",
        "the {a} moves farther from the {b}",
        "the {a} gets farther from the {b}",
        "the {a} and the {b} move apart",
    ),
}
for _direction in ("left", "right", "up", "down"):
    _to = "to the " if _direction in ("left", "right") else ""
    TEMPLATES["moves_" + _direction] = (
        f"a {{a}} moves {_to}{_direction}",
        f"a {{a}} is moving {_direction}",
        f"the {{a}} slides {_to}{_direction}",
        f"there is a {{a}} moving {_to}{_direction}",
        f"a {{a}} goes {_direction}",
        f"the {{a}} travels {_direction}",
    )


def _vocabulary():
    words = set()
    for templates in TEMPLATES.values():
        for template in templates:
            words.update(template.format(a="", b="").split())
    words.update(COLORS)
    words.update(KINDS)
    return sorted(words)


VOCABULARY = _vocabulary()

# Geometry, in units of the frame side (so a scene renders at any size).
_RADIUS_RANGE = (0.10, 0.12)  # 6.4-7.7 px at 64x64
_BOUND = 1.3  # bounding radius / radius: covers the square and the triangle
_MARGIN = 0.02  # gap between a shape and the frame border
_GAP = 0.04  # least gap between the bounding circles of two shapes
_JITTER = 0.01  # per-frame jitter of static shapes (0.6 px at 64x64)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape of a scene, in units of the frame side (y grows downwards).

    Args:
        color: str. A key of `COLORS`.
        kind: str. One of `KINDS`.
        radius: float. Circle radius; squares and triangles are drawn at a
            comparable size, all within `1.3 * radius` of the centre.
        start: tuple of 2 floats. Centre `(x, y)` in the first frame.
        end: tuple of 2 floats. Centre `(x, y)` in the last frame; the centre
            moves linearly in between.
    """

    color: str
    kind: str
    radius: float
    start: tuple
    end: tuple

    @property
    def name(self):
        return f"{self.color} {self.kind}"

    @property
    def moves(self):
        return tuple(self.start) != tuple(self.end)


@dataclasses.dataclass(frozen=True)
class Scene:
    """A clip's content: its shapes and the relation its captions state.

    Args:
        shapes: tuple of `Shape`.
        relation: str. One of `RELATIONS`.
        subject: int. Index in `shapes` of the captions' subject `{a}`: for a
            static relation the shape first in (colour, kind) order, so the
            canonical caption is a function of the pixels; else the mover.
        object: int or None. Index of `{b}`; None for single-shape relations.
        jitter_seed: int. Seeds the per-frame jitter of static shapes.
    """

    shapes: tuple
    relation: str
    subject: int
    object: int = None
    jitter_seed: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config):
        config = dict(config)
        config["shapes"] = tuple(
            Shape(**{**s, "start": tuple(s["start"]), "end": tuple(s["end"])})
            for s in config["shapes"]
        )
        return cls(**config)


def _shape_order(color, kind):
    return (list(COLORS).index(color), KINDS.index(kind))


def _fits(point, bound):
    low, high = bound + _MARGIN, 1.0 - bound - _MARGIN
    return all(low <= c <= high for c in point)


def _place_static(rng, relation, bound_a, bound_b):
    """Centres of subject and object with the relation clearly true."""
    for _ in range(1000):
        along = rng.uniform(bound_a + bound_b + _GAP, 0.65)
        across = rng.uniform(-0.4, 0.4) * along  # |across| <= 0.4 |along|
        sign = 1.0 if relation in ("left_of", "above") else -1.0
        # Offset from subject to object: +x is "subject left of object".
        dx, dy = (sign * along, across)
        if relation in ("above", "below"):
            dx, dy = dy, dx
        a = (rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0))
        b = (a[0] + dx, a[1] + dy)
        if _fits(a, bound_a) and _fits(b, bound_b):
            return a, b
    raise RuntimeError(f"Could not place a {relation} scene.")  # pragma: no cover


def _place_motion(rng, relation, bound_mover, bound_other):
    """Mover's start and end, and the static shape's centre."""
    for _ in range(1000):
        other = (rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0))
        if not _fits(other, bound_other):
            continue
        angle = rng.uniform(0.0, 2.0 * math.pi)
        unit = (math.cos(angle), math.sin(angle))
        near = bound_mover + bound_other + _GAP + rng.uniform(0.0, 0.05)
        far = near + rng.uniform(0.22, 0.35)
        near_point = (other[0] + near * unit[0], other[1] + near * unit[1])
        far_point = (other[0] + far * unit[0], other[1] + far * unit[1])
        if _fits(near_point, bound_mover) and _fits(far_point, bound_mover):
            if relation == "toward":
                return far_point, near_point, other
            return near_point, far_point, other
    raise RuntimeError(f"Could not place a {relation} scene.")  # pragma: no cover


def _place_single(rng, relation, bound):
    low, high = bound + _MARGIN, 1.0 - bound - _MARGIN
    travel = rng.uniform(0.3, 0.5)
    fixed = rng.uniform(low, high)
    begin = rng.uniform(low, high - travel)
    finish = begin + travel
    if relation in ("moves_left", "moves_up"):
        begin, finish = finish, begin
    if relation in ("moves_left", "moves_right"):
        return (begin, fixed), (finish, fixed)
    return (fixed, begin), (fixed, finish)


def sample_scene(rng):
    """Samples a random scene.

    Args:
        rng: `np.random.Generator`.

    Returns:
        A `Scene` whose captions (`scene_captions`) are all true of its
        frames (`render_scene`).
    """
    relation = RELATIONS[rng.choice(len(RELATIONS), p=RELATION_WEIGHTS)]
    colors, kinds = list(COLORS), list(KINDS)
    radii = rng.uniform(*_RADIUS_RANGE, size=2)
    if relation in SINGLE_RELATIONS:
        color, kind = colors[rng.integers(len(colors))], kinds[rng.integers(3)]
        start, end = _place_single(rng, relation, _BOUND * radii[0])
        shapes = (Shape(color, kind, float(radii[0]), start, end),)
        return Scene(shapes, relation, 0, None, int(rng.integers(2**31)))

    # Two shapes that differ in colour or kind, so each one is nameable.
    num_types = len(colors) * len(kinds)
    first, second = rng.choice(num_types, size=2, replace=False)
    types = [divmod(int(first), 3), divmod(int(second), 3)]
    types = [(colors[c], kinds[k]) for c, k in types]
    if relation in STATIC_RELATIONS:
        # The subject is the shape first in (colour, kind) order.
        types.sort(key=lambda t: _shape_order(*t))
        a, b = _place_static(rng, relation, _BOUND * radii[0], _BOUND * radii[1])
        shapes = (
            Shape(*types[0], float(radii[0]), a, a),
            Shape(*types[1], float(radii[1]), b, b),
        )
    else:
        start, end, other = _place_motion(
            rng, relation, _BOUND * radii[0], _BOUND * radii[1]
        )
        shapes = (
            Shape(*types[0], float(radii[0]), start, end),
            Shape(*types[1], float(radii[1]), other, other),
        )
    return Scene(shapes, relation, 0, 1, int(rng.integers(2**31)))


def scene_captions(scene, rng=None):
    """The references of a scene: the canonical one first, then paraphrases.

    Args:
        scene: `Scene`.
        rng: `np.random.Generator` or None. Shuffles the paraphrases after
            the canonical caption; None keeps the template order.

    Returns:
        list of str, at least 5 distinct lower-case captions, all true.
    """
    a = scene.shapes[scene.subject].name
    b = scene.shapes[scene.object].name if scene.object is not None else ""
    captions = [t.format(a=a, b=b) for t in TEMPLATES[scene.relation]]
    paraphrases = captions[1:]
    if rng is not None:
        paraphrases = [paraphrases[i] for i in rng.permutation(len(paraphrases))]
    return [captions[0]] + paraphrases


def shape_centers(scene, num_frames):
    """Centres of every shape in every frame, in units of the frame side.

    Returns:
        float array `(num_shapes, num_frames, 2)` of `(x, y)`; static shapes
        include their jitter.
    """
    jitter_rng = np.random.default_rng(scene.jitter_seed)
    progress = np.linspace(0.0, 1.0, num_frames)[:, None]
    centers = []
    for shape in scene.shapes:
        start, end = np.asarray(shape.start), np.asarray(shape.end)
        path = start + progress * (end - start)
        jitter = jitter_rng.uniform(-_JITTER, _JITTER, size=path.shape)
        if not shape.moves:
            path = path + jitter
        centers.append(path)
    return np.stack(centers)


def _shape_polygon(kind, center, radius):
    x, y = center
    if kind == "square":
        h = 0.9 * radius
        corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
        return np.array([(x + dx, y + dy) for dx, dy in corners])
    # An upward triangle with its centroid at the centre.
    r = _BOUND * radius
    angles = np.deg2rad([-90.0, 30.0, 150.0])
    return np.stack([x + r * np.cos(angles), y + r * np.sin(angles)], axis=1)


def render_scene(scene, num_frames=16, frame_size=64):
    """Renders a scene.

    Args:
        scene: `Scene`.
        num_frames: int.
        frame_size: int. Frames are `frame_size` x `frame_size`.

    Returns:
        uint8 array `(num_frames, frame_size, frame_size, 3)`, RGB.
    """
    shift = 4  # sub-pixel precision for OpenCV's drawing: 1/16 px
    scale = frame_size * (1 << shift)
    centers = shape_centers(scene, num_frames)
    frames = np.empty((num_frames, frame_size, frame_size, 3), np.uint8)
    frames[...] = BACKGROUND
    for t in range(num_frames):
        frame = frames[t]
        for shape, path in zip(scene.shapes, centers):
            color = COLORS[shape.color]
            if shape.kind == "circle":
                center = tuple(int(round(c * scale)) for c in path[t])
                radius = int(round(shape.radius * scale))
                cv2.circle(frame, center, radius, color, -1, cv2.LINE_AA, shift)
            else:
                polygon = _shape_polygon(shape.kind, path[t], shape.radius)
                points = np.round(polygon * scale).astype(np.int32)
                cv2.fillPoly(frame, [points], color, cv2.LINE_AA, shift)
    return frames


def write_video(path, frames, fps=FPS):
    """Writes RGB frames `(T, H, W, 3)` to an MJPG `.avi` file."""
    height, width = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    # OpenCV's own MJPEG writer needs no FFmpeg; fall back to the default.
    writer = cv2.VideoWriter(path, cv2.CAP_OPENCV_MJPEG, fourcc, fps, (width, height))
    if writer.isOpened():
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    else:
        writer = cv2.VideoWriter(path, fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG video to {path!r}.")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def clip_id(index, num_frames, fps=FPS):
    """MSVD-style id `<VideoID>_<Start>_<End>` of clip `index`."""
    end = max(1, int(round(num_frames / fps)))
    return f"{VIDEO_ID_PREFIX}{index:05d}_0_{end}"


def _split_counts(num_clips, split_fractions):
    raw = [num_clips * f for f in split_fractions]
    counts = [int(math.floor(r)) for r in raw]
    by_remainder = sorted(range(3), key=lambda i: counts[i] - raw[i])
    for i in by_remainder[: num_clips - sum(counts)]:
        counts[i] += 1
    # Every split asked for gets at least one clip where there are enough.
    for i in range(3):
        if split_fractions[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _assign_splits(num_clips, split_fractions, seed):
    counts = _split_counts(num_clips, split_fractions)
    order = np.random.default_rng([seed, 2**32 - 1]).permutation(num_clips)
    splits = [None] * num_clips
    names = ["train"] * counts[0] + ["val"] * counts[1] + ["test"] * counts[2]
    for position, index in enumerate(order):
        splits[int(index)] = names[position]
    return splits


SPLITS = ("random", "compositional")
# Relations as `scene_meaning` states them (mirrored ones turned round).
CANONICAL_RELATIONS = ("left_of", "above") + MOTION_RELATIONS + SINGLE_RELATIONS
_HELD_OUT_PER_RELATION = 2  # of the 12 colour x shape types: 1 in 6


def held_out_combinations(seed):
    """The `(colour, kind, relation)` subjects a compositional split tests.

    Two of the 12 colour x shape types per canonical relation, drawn from
    `seed` so that the 16 combinations cover 16 different type slots (no
    type is held out of more than two relations, and every colour, shape
    and relation keeps most of its training clips).

    Returns:
        sorted list of `(colour, kind, relation)` tuples.
    """
    types = [(color, kind) for color in COLORS for kind in KINDS]
    order = np.random.default_rng([seed, 2**32 - 2]).permutation(len(types))
    combinations = []
    for index, relation in enumerate(CANONICAL_RELATIONS):
        for slot in range(_HELD_OUT_PER_RELATION):
            color, kind = types[order[(index * _HELD_OUT_PER_RELATION + slot) % len(types)]]
            combinations.append((color, kind, relation))
    return sorted(combinations)


def _compositional_splits(clip_ids, scenes, split_fractions, seed):
    held_out = set(held_out_combinations(seed))
    splits, rest = [], []
    for index, name in enumerate(clip_ids):
        relation, subject, _ = scene_meaning(Scene.from_dict(scenes[name]))
        color, kind = subject.split(" ")
        splits.append("test" if (color, kind, relation) in held_out else None)
        if splits[-1] is None:
            rest.append(index)
    train, val = split_fractions[:2]
    # The other clips: train and val in the asked ratio, at random.
    rest_splits = _assign_splits(len(rest), (train / (train + val), val / (train + val), 0.0), seed)
    for index, name in zip(rest, rest_splits):
        splits[index] = name
    return splits


def _write_atomically(path, write):
    temporary = path + ".tmp"
    with open(temporary, "w", newline="", encoding="utf-8") as f:
        write(f)
    os.replace(temporary, path)


def _write_json(path, data):
    _write_atomically(path, lambda f: json.dump(data, f, indent=1))


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _remove(paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def generate_procedural_dataset(
    root,
    num_clips=400,
    num_frames=16,
    frame_size=64,
    seed=0,
    split_fractions=(0.8, 0.05, 0.15),
    overwrite=False,
    split="random",
):
    """Writes the procedural shapes dataset in the MSVD layout.

    Idempotent and resumable: if `root` already holds a complete dataset with
    the same parameters it returns at once; an interrupted run resumes,
    keeping the videos it finished. `metadata.json` is written last, so it
    exists only for a complete dataset.

    Args:
        root: str or path-like. The dataset folder (created if missing).
        num_clips: int. Number of clips.
        num_frames: int. Frames per clip (8 fps).
        frame_size: int. Frames are `frame_size` x `frame_size`.
        seed: int. Everything written depends on it alone.
        split_fractions: 3 floats. Train, val, test fractions, summing to 1.
        overwrite: bool. Replace a dataset made with other parameters (or a
            foreign `video_corpus.csv`) instead of raising `ValueError`.
        split: str. `"random"`: clips go to train/val/test at random in
            `split_fractions` (most test scenes then also occur in
            training: the test measures re-rendering). `"compositional"`:
            the clips whose subject's colour x shape x relation is one of
            `held_out_combinations(seed)` (about 1 in 6) are the test split,
            so no test scene occurs in training although every colour,
            shape and relation does; the rest go to train and val in the
            ratio of `split_fractions`' first two. The videos and references
            are the same for both.

    Returns:
        str, `root`.
    """
    root = os.fspath(root)
    split_fractions = _checked_arguments(num_clips, num_frames, frame_size, split_fractions, split)
    params = {
        "generator": GENERATOR,
        "version": VERSION,
        "seed": int(seed),
        "num_clips": int(num_clips),
        "num_frames": int(num_frames),
        "frame_size": int(frame_size),
        "split_fractions": list(split_fractions),
    }
    if split != "random":  # the default's metadata stays as it was
        params["split"] = split
    paths = _dataset_paths(root)
    clip_ids = [clip_id(i, num_frames) for i in range(num_clips)]
    video_paths = [os.path.join(paths["videos"], c + ".avi") for c in clip_ids]

    state = _existing_state(root, params, paths, video_paths, overwrite)
    if state == "complete":
        return root
    os.makedirs(paths["videos"], exist_ok=True)
    _remove([paths["metadata"]])
    _remove(glob.glob(os.path.join(paths["videos"], VIDEO_ID_PREFIX + "*.tmp.avi")))
    if state != "resume":
        _remove(glob.glob(os.path.join(paths["videos"], VIDEO_ID_PREFIX + "*.avi")))
        _remove([paths["corpus"], paths["split"]])
    _write_json(paths["progress"], params)

    rows, scenes = _write_videos(clip_ids, video_paths, seed, num_frames, frame_size)
    if split == "compositional":
        splits = _compositional_splits(clip_ids, scenes, split_fractions, seed)
    else:
        splits = _assign_splits(num_clips, split_fractions, seed)
    _write_corpus_and_splits(paths, rows, clip_ids, splits)
    _write_json(paths["metadata"], _metadata(params, scenes, split, seed))
    _remove([paths["progress"]])
    return root


def _checked_arguments(num_clips, num_frames, frame_size, split_fractions, split):
    """`split_fractions` as floats, once every argument is checked."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")
    split_fractions = tuple(float(f) for f in split_fractions)
    if num_clips < 1 or num_frames < 2 or frame_size < 16:
        raise ValueError(
            "Need num_clips >= 1, num_frames >= 2 and frame_size >= 16; got "
            f"{num_clips}, {num_frames}, {frame_size}."
        )
    if (
        len(split_fractions) != 3
        or min(split_fractions) < 0
        or abs(sum(split_fractions) - 1.0) > 1e-6
        or split_fractions[0] == 0
    ):
        raise ValueError(
            "split_fractions must be 3 non-negative fractions (train, val, test) "
            f"summing to 1 with train > 0; got {split_fractions}."
        )
    return split_fractions


def _dataset_paths(root):
    """The files and the video folder a procedural dataset has under `root`."""
    return {
        "videos": os.path.join(root, "YouTubeClips"),
        "corpus": os.path.join(root, "video_corpus.csv"),
        "split": os.path.join(root, "split.tsv"),
        "metadata": os.path.join(root, "metadata.json"),
        "progress": os.path.join(root, ".procedural_in_progress.json"),
    }


def _existing_state(root, params, paths, video_paths, overwrite):
    """What `root` holds: `"complete"` (this dataset, done), `"resume"` (this
    dataset, unfinished) or `"fresh"` (nothing to keep); raises `ValueError`
    for another dataset or a foreign corpus unless `overwrite`."""
    if os.path.exists(paths["metadata"]):
        metadata = _read_json(paths["metadata"])
        old = {k: (metadata or {}).get(k) for k in params}
        if old == params:
            complete = all(
                os.path.exists(p) for p in [paths["corpus"], paths["split"]] + video_paths
            )
            return "complete" if complete else "resume"
        if not overwrite:
            differing = {k: old[k] for k in params if old[k] != params[k]}
            raise ValueError(
                f"{root!r} holds a dataset made with other parameters "
                f"({differing}, asked {params}). Pass overwrite=True to replace "
                "it, or choose another root."
            )
        return "fresh"
    if os.path.exists(paths["progress"]):
        # Our own unfinished run: resume it if it asked for the same thing.
        return "resume" if _read_json(paths["progress"]) == params else "fresh"
    if os.path.exists(paths["corpus"]) and not overwrite:
        raise ValueError(
            f"{root!r} holds a video_corpus.csv that this generator did not "
            "write. Pass overwrite=True to replace it, or choose another root."
        )
    return "fresh"


def _write_videos(clip_ids, video_paths, seed, num_frames, frame_size):
    """Renders every clip whose video is missing; returns `(rows, scenes)`:
    the corpus rows of every clip's captions and `{clip_id: scene dict}`."""
    rows, scenes = [], {}
    for index, (name, path) in enumerate(zip(clip_ids, video_paths)):
        rng = np.random.default_rng([seed, index])
        scene = sample_scene(rng)
        scenes[name] = scene.to_dict()
        if not os.path.exists(path):
            temporary = path[: -len(".avi")] + ".tmp.avi"
            write_video(temporary, render_scene(scene, num_frames, frame_size))
            os.replace(temporary, path)
        video_id, start, end = name.rsplit("_", 2)
        for worker, caption in enumerate(scene_captions(scene, rng)):
            rows.append(
                (video_id, start, end, worker, "clean", 0, "English", caption)
            )
    return rows, scenes


def _write_corpus_and_splits(paths, rows, clip_ids, splits):
    def write_corpus(f):
        writer = csv.writer(f)
        writer.writerow(CORPUS_HEADER)
        writer.writerows(rows)

    _write_atomically(paths["corpus"], write_corpus)
    _write_atomically(
        paths["split"],
        lambda f: f.writelines(f"{c}\t{s}\n" for c, s in zip(clip_ids, splits)),
    )


def _metadata(params, scenes, split, seed):
    """`metadata.json`: the parameters, the generator's constants and the scenes."""
    metadata = dict(params)
    metadata.update(
        {
            "fps": FPS,
            "codec": "MJPG",
            "colors": {k: list(v) for k, v in COLORS.items()},
            "background": list(BACKGROUND),
            "kinds": list(KINDS),
            "relations": list(RELATIONS),
            "canonical_templates": {r: t[0] for r, t in TEMPLATES.items()},
            "vocabulary": VOCABULARY,
            "scenes": scenes,
        }
    )
    if split == "compositional":
        metadata["held_out_combinations"] = [list(c) for c in held_out_combinations(seed)]
    return metadata


# --- Reading captions back into scenes ---------------------------------------
# The procedural captions come from a closed set of templates, so a caption can
# be parsed back into what it claims and checked against the scene: a direct
# measure of "is this caption right", which n-gram metrics only approximate.

# A relation and its mirror image: `right_of(a, b)` is `left_of(b, a)`.
_MIRRORED = {"right_of": "left_of", "below": "above"}
_NAME = "[a-z]+ [a-z]+"


def _template_patterns():
    import re

    patterns = []
    for relation, templates in TEMPLATES.items():
        for template in templates:
            pattern = re.escape(template)
            pattern = pattern.replace(re.escape("{a}"), f"(?P<a>{_NAME})")
            pattern = pattern.replace(re.escape("{b}"), f"(?P<b>{_NAME})")
            patterns.append((relation, "move apart" in template, re.compile(pattern)))
    return patterns


_PATTERNS = _template_patterns()


def _canonical(relation, a, b):
    """`(relation, subject, object)` with mirrored relations turned round."""
    if relation in _MIRRORED:
        return (_MIRRORED[relation], b, a)
    return (relation, a, b)


def _valid_name(name):
    color, _, kind = name.partition(" ")
    return color in COLORS and kind in KINDS


def parse_caption(caption):
    """What a procedural caption claims, or None if it fits no template.

    Args:
        caption: str. A caption in the dataset's language (case and
            punctuation are ignored).

    Returns:
        A set of meanings `(relation, subject, object)` (object None for
        one-shape relations) with mirrored relations turned round
        (`right_of(a, b)` is `left_of(b, a)`, `below` is `above` turned), or
        None. Usually one meaning; "the A and the B move apart" does not say
        which one moves, so it gives both orders.
    """
    import re

    text = " ".join(re.sub(r"[^a-z ]", " ", caption.lower()).split())
    meanings = set()
    for relation, symmetric, pattern in _PATTERNS:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        a = match.group("a")
        b = match.groupdict().get("b")
        if not _valid_name(a) or (b is not None and not _valid_name(b)):
            continue
        meanings.add(_canonical(relation, a, b))
        if symmetric:
            meanings.add(_canonical(relation, b, a))
    return meanings or None


def scene_meaning(scene):
    """The scene's `(relation, subject, object)`, as `parse_caption` gives it."""
    a = scene.shapes[scene.subject].name
    b = scene.shapes[scene.object].name if scene.object is not None else None
    return _canonical(scene.relation, a, b)


def scene_accuracy(scenes, predictions):
    """How many captions state their scene exactly, and what they get wrong.

    Args:
        scenes: dict `{clip_id: Scene or scene dict}` (`metadata.json`'s
            `"scenes"`).
        predictions: dict `{clip_id: caption}`; clips without a scene are
            ignored.

    Returns:
        dict: `exact` (the fraction of captions whose meaning is the
        scene's: the right shapes, in the right roles, in the right
        relation), `shapes` (the caption names exactly the scene's shapes),
        `relation` (the caption states the scene's kind of relation, e.g.
        "left of" for a left/right scene whichever way round), `parsed` (the
        caption fits a template at all), `num_clips`, `per_clip`
        (`{clip_id: bool}` for `exact`), and `attributes`: the fraction of
        captions right about each attribute of the scene's meaning
        (`subject_color`, `subject_kind`, `relation`, and over the clips
        with two shapes `object_color`, `object_kind`; `subject`/`object`
        for colour and kind both right), read from the caption's meaning
        that matches the scene best; `num_clips` and `num_pair_clips` are
        their denominators.
    """
    counts = {"exact": 0, "shapes": 0, "relation": 0, "parsed": 0}
    attribute_counts = dict.fromkeys(ATTRIBUTES, 0)
    num_pairs = 0
    per_clip = {}
    for clip_id, caption in predictions.items():
        scene = scenes.get(clip_id)
        if scene is None:
            continue
        if isinstance(scene, dict):
            scene = Scene.from_dict(scene)
        truth = scene_meaning(scene)
        meanings = parse_caption(caption) or set()
        exact = truth in meanings
        per_clip[clip_id] = exact
        counts["exact"] += exact
        counts["parsed"] += bool(meanings)
        counts["shapes"] += any(
            {m[1], m[2]} - {None} == {truth[1], truth[2]} - {None} for m in meanings
        )
        # Meanings are canonical (mirrors turned round): kinds compare as is.
        counts["relation"] += any(m[0] == truth[0] for m in meanings)
        right = _attributes_right(truth, meanings)
        num_pairs += truth[2] is not None
        for key, value in right.items():
            attribute_counts[key] += value
    total = len(per_clip)
    result = {key: value / total if total else 0.0 for key, value in counts.items()}
    attributes = {}
    for key, value in attribute_counts.items():
        denominator = num_pairs if key.startswith("object") else total
        attributes[key] = value / denominator if denominator else 0.0
    attributes.update({"num_clips": total, "num_pair_clips": num_pairs})
    result.update({"num_clips": total, "per_clip": per_clip, "attributes": attributes})
    return result


ATTRIBUTES = (
    "subject_color",
    "subject_kind",
    "subject",
    "relation",
    "object_color",
    "object_kind",
    "object",
)


def _attributes_right(truth, meanings):
    """`{attribute: bool}` for the meaning that gets most of them right
    (object attributes only for a two-shape truth)."""

    def split(name):
        return tuple(name.split(" ")) if name else (None, None)

    relation, (color, kind) = truth[0], split(truth[1])
    object_color, object_kind = split(truth[2])
    best = dict.fromkeys(ATTRIBUTES if truth[2] else ATTRIBUTES[:4], False)
    for meaning in meanings:
        said_color, said_kind = split(meaning[1])
        said_object = split(meaning[2])
        right = {
            "subject_color": said_color == color,
            "subject_kind": said_kind == kind,
            "relation": meaning[0] == relation,
        }
        right["subject"] = right["subject_color"] and right["subject_kind"]
        if truth[2]:
            right["object_color"] = said_object[0] == object_color
            right["object_kind"] = said_object[1] == object_kind
            right["object"] = right["object_color"] and right["object_kind"]
        if sum(right.values()) > sum(best.values()):
            best = right
    return best
