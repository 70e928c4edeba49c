"""`sprites`: a held-out shapes set rendered unlike the embedded generator.

96x72 frames, 40 frames at 10 fps, on textured, noisy backgrounds with a
per-frame sensor noise and camera shake; shapes of varied sizes and
rotations, an unnamed grey distractor in most clips, and motions the
embedded generator never makes (growing, shrinking). The references use
synonyms ("moves to the left", "travels left", "heads leftwards"; "circle",
"ball", "disc"). Half the clips show one moving shape, half a shape moving
toward or away from another one. Written in the MSVD layout with an 80/20
train/test `split.tsv` and no val split, as a user's folder would be; every
clip's scene is in `metadata.json` for `attributes.grade_captions`.

Example:

```python
root = generate_sprites_dataset("/tmp/sprites", num_clips=250)
```
"""

import math

import cv2
import numpy as np

from keras_pvc.datasets.heldout import attributes
from keras_pvc.datasets.heldout.layout import scene_clips
from keras_pvc.datasets.heldout.layout import scene_references
from keras_pvc.datasets.heldout.layout import write_dataset

GENERATOR = "keras_pvc.heldout.sprites"
VERSION = 1
VIDEO_ID_PREFIX = "spr"
FPS = 10
WIDTH, HEIGHT = 96, 72
COLORS = {
    "red": (200, 40, 50),
    "green": (50, 170, 70),
    "blue": (50, 90, 210),
    "yellow": (225, 200, 60),
}
DISTRACTOR_COLOR = (150, 150, 150)
SHAPE_SYNONYMS = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
}
_DIRECTION_TEMPLATES = {
    "left": (
        "a {n} moves to the left",
        "a {n} travels left",
        "the {n} heads leftwards",
        "a {n} slides to the left",
        "the {n} drifts left",
        "a {n} is moving left",
    ),
    "up": (
        "a {n} moves up",
        "the {n} rises",
        "a {n} travels upwards",
        "the {n} heads up",
        "a {n} climbs",
        "the {n} drifts upward",
    ),
    "down": (
        "a {n} moves down",
        "the {n} falls",
        "a {n} travels downwards",
        "the {n} sinks",
        "the {n} heads down",
        "a {n} drops",
    ),
}
TEMPLATES = {
    **_DIRECTION_TEMPLATES,
    "right": tuple(
        t.replace("leftwards", "rightwards").replace("left", "right")
        for t in _DIRECTION_TEMPLATES["left"]
    ),
    "grow": (
        "a {n} grows",
        "the {n} gets bigger",
        "a {n} expands",
        "the {n} becomes larger",
        "a {n} is growing",
        "the {n} swells",
    ),
    "shrink": (
        "a {n} shrinks",
        "the {n} gets smaller",
        "a {n} contracts",
        "the {n} becomes smaller",
        "a {n} is shrinking",
        "the {n} shrinks away",
    ),
    "toward": (
        "a {a} moves toward a {b}",
        "the {a} approaches the {b}",
        "a {a} heads towards a {b}",
        "the {a} gets closer to the {b}",
        "a {a} drifts toward a {b}",
        "the {a} is approaching a {b}",
    ),
    "away": (
        "a {a} moves away from a {b}",
        "the {a} retreats from the {b}",
        "a {a} drifts away from a {b}",
        "the {a} gets farther from the {b}",
        "the {a} leaves the {b}",
        "a {a} is moving away from a {b}",
    ),
}
# "shrinks away" says "away", a relation word: harmless for one-shape clips,
# which are graded on their motion only.


def references(scene, rng):
    """Six references of a scene, each template once, synonyms drawn."""
    return scene_references(scene, rng, TEMPLATES, SHAPE_SYNONYMS)


def _inside(point, radius, margin=2.0):
    x, y = point
    return margin + radius <= x <= WIDTH - margin - radius and (
        margin + radius <= y <= HEIGHT - margin - radius
    )


def _single_scene(rng, color, shape):
    motion = attributes.MOTIONS[rng.integers(len(attributes.MOTIONS))]
    if motion in ("grow", "shrink"):
        small, large = rng.uniform(5.0, 7.0), rng.uniform(12.0, 15.0)
        start_r, end_r = (small, large) if motion == "grow" else (large, small)
        bound = 1.3 * large
        center = (rng.uniform(bound + 2, WIDTH - bound - 2), rng.uniform(bound + 2, HEIGHT - bound - 2))
        return motion, center, center, start_r, end_r
    radius = rng.uniform(5.5, 10.0)
    bound = 1.3 * radius
    horizontal = motion in ("left", "right")
    side = WIDTH if horizontal else HEIGHT
    travel = rng.uniform(0.35, 0.55) * side
    begin = rng.uniform(bound + 2, side - bound - 2 - travel)
    finish = begin + travel
    if motion in ("left", "up"):
        begin, finish = finish, begin
    across = rng.uniform(bound + 2, (HEIGHT if horizontal else WIDTH) - bound - 2)
    if horizontal:
        return motion, (begin, across), (finish, across), radius, radius
    return motion, (across, begin), (across, finish), radius, radius


def _pair_scene(rng):
    relation = attributes.RELATIONS[rng.integers(2)]
    for _ in range(1000):
        r_mover, r_other = rng.uniform(5.5, 9.5, size=2)
        other = (rng.uniform(15, WIDTH - 15), rng.uniform(15, HEIGHT - 15))
        angle = rng.uniform(0, 2 * math.pi)
        unit = (math.cos(angle), math.sin(angle))
        near = 1.3 * (r_mover + r_other) + rng.uniform(3, 6)
        far = near + rng.uniform(24, 40)
        near_point = (other[0] + near * unit[0], other[1] + near * unit[1])
        far_point = (other[0] + far * unit[0], other[1] + far * unit[1])
        if all(_inside(p, 1.3 * r_mover) for p in (near_point, far_point)) and _inside(
            other, 1.3 * r_other
        ):
            start, end = (far_point, near_point) if relation == "toward" else (near_point, far_point)
            return relation, start, end, float(r_mover), other, float(r_other)
    raise RuntimeError("Could not place a pair scene.")  # pragma: no cover


def _distractor(rng, avoid):
    """A small grey cross away from the named shapes, or None (30%)."""
    if rng.uniform() < 0.3:
        return None
    for _ in range(200):
        point = (rng.uniform(6, WIDTH - 6), rng.uniform(6, HEIGHT - 6))
        if all(math.dist(point, a) > r + 9 for a, r in avoid):
            return {"center": list(point), "size": float(rng.uniform(3.0, 4.5))}
    return None


def sample_scene(rng):
    """A random scene dict (see `attributes` for its keys)."""
    colors, shapes = list(COLORS), list(SHAPE_SYNONYMS)
    rotation = float(rng.uniform(-25, 25))
    background = {
        "seed": int(rng.integers(2**31)),
        "tone": [float(v) for v in rng.uniform(35, 95, size=3)],
    }
    if rng.uniform() < 0.5:
        color, shape = colors[rng.integers(4)], shapes[rng.integers(3)]
        motion, start, end, start_r, end_r = _single_scene(rng, color, shape)
        mover = {"color": color, "shape": shape, "start": list(start), "end": list(end),
                 "radius": [float(start_r), float(end_r)], "rotation": rotation}
        avoid = [(start, 1.3 * max(start_r, end_r)), (end, 1.3 * max(start_r, end_r))]
        scene = {"type": "single", "mover": mover, "motion": motion}
    else:
        first, second = rng.choice(12, size=2, replace=False)
        (c1, s1), (c2, s2) = divmod(int(first), 3), divmod(int(second), 3)
        relation, start, end, r_mover, other, r_other = _pair_scene(rng)
        mover = {"color": colors[c1], "shape": shapes[s1], "start": list(start),
                 "end": list(end), "radius": [r_mover, r_mover], "rotation": rotation}
        other_shape = {"color": colors[c2], "shape": shapes[s2], "start": list(other),
                       "end": list(other), "radius": [r_other, r_other],
                       "rotation": float(rng.uniform(-25, 25))}
        avoid = [(start, 1.3 * r_mover), (end, 1.3 * r_mover), (other, 1.3 * r_other)]
        scene = {"type": "pair", "mover": mover, "relation": relation, "other": other_shape}
    scene["distractor"] = _distractor(rng, avoid)
    scene["background"] = background
    scene["noise_seed"] = int(rng.integers(2**31))
    return scene


def _polygon(shape, center, radius, rotation):
    if shape == "square":
        angles = np.deg2rad(rotation + np.array([45.0, 135.0, 225.0, 315.0]))
        reach = 0.9 * radius * math.sqrt(2)
    else:
        angles = np.deg2rad(rotation + np.array([-90.0, 30.0, 150.0]))
        reach = 1.3 * radius
    return np.stack([center[0] + reach * np.cos(angles), center[1] + reach * np.sin(angles)], 1)


def _draw(frame, shape, center, radius, rotation, color):
    shift = 4
    scale = 1 << shift
    if shape == "circle":
        c = (int(round(center[0] * scale)), int(round(center[1] * scale)))
        cv2.circle(frame, c, int(round(radius * scale)), color, -1, cv2.LINE_AA, shift)
        return
    points = np.round(_polygon(shape, center, radius, rotation) * scale).astype(np.int32)
    cv2.fillPoly(frame, [points], color, cv2.LINE_AA, shift)


def _background(scene):
    rng = np.random.default_rng(scene["background"]["seed"])
    coarse = rng.normal(0, 1, size=(6, 8, 3)).astype(np.float32)
    texture = cv2.resize(coarse, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC) * 18.0
    grain = rng.normal(0, 7, size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    return np.asarray(scene["background"]["tone"], np.float32) + texture + grain


def render(scene, num_frames=40):
    """RGB uint8 frames `(num_frames, HEIGHT, WIDTH, 3)` of a scene dict."""
    base = _background(scene)
    noise_rng = np.random.default_rng(scene["noise_seed"])
    named = [scene["mover"]] + ([scene["other"]] if "other" in scene else [])
    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    for t, progress in enumerate(np.linspace(0.0, 1.0, num_frames)):
        canvas = np.clip(base, 0, 255).astype(np.uint8)
        distractor = scene["distractor"]
        if distractor is not None:
            x, y = distractor["center"]
            s = distractor["size"]
            for dx, dy in ((s, 0), (0, s)):
                cv2.line(canvas, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)),
                         DISTRACTOR_COLOR, 2, cv2.LINE_AA)
        for shape in named:
            start, end = np.asarray(shape["start"]), np.asarray(shape["end"])
            center = start + progress * (end - start)
            r0, r1 = shape["radius"]
            _draw(canvas, shape["shape"], center, r0 + progress * (r1 - r0),
                  shape["rotation"], COLORS[shape["color"]])
        # Camera shake (up to 1 px) and sensor noise, fresh every frame.
        dx, dy = noise_rng.integers(-1, 2, size=2)
        canvas = np.roll(canvas, (int(dy), int(dx)), axis=(0, 1)).astype(np.float32)
        canvas += noise_rng.normal(0, 5, size=canvas.shape)
        frames[t] = np.clip(canvas, 0, 255).astype(np.uint8)
    return frames


def generate_sprites_dataset(root, num_clips=250, num_frames=40, seed=0, overwrite=False):
    """Writes the `sprites` set in the MSVD layout (80/20 train/test).

    Args:
        root: str or path-like. The dataset folder (created if missing).
        num_clips: int.
        num_frames: int. Frames per clip, at 10 fps.
        seed: int. Clip `i` depends only on `(seed, i)`.
        overwrite: bool. Replace a folder made with other parameters.

    Returns:
        str, `root`.
    """
    params = {"generator": GENERATOR, "version": VERSION, "seed": int(seed),
              "num_clips": int(num_clips), "num_frames": int(num_frames)}
    seconds = max(1, int(round(num_frames / FPS)))
    clips = scene_clips(
        num_clips, seed, 11, sample_scene, references,
        lambda scene: render(scene, num_frames), FPS, VIDEO_ID_PREFIX, seconds=seconds,
    )
    extra = {"fps": FPS, "width": WIDTH, "height": HEIGHT,
             "colors": {k: list(v) for k, v in COLORS.items()},
             "shape_synonyms": {k: list(v) for k, v in SHAPE_SYNONYMS.items()}}
    return write_dataset(root, clips, params, extra, overwrite)
