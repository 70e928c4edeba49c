"""`outlines`: a second held-out set, unlike the embedded generator and `sprites`.

128x96 frames at 8 fps in clips of 24, 32, 40 or 48 frames; shapes drawn as
outlines or hatched in lighter shades, over a striped background that
scrolls and changes tone, with eased (not linear) motion and a blur over
every frame; a hollow grey diamond as distractor in half the clips. Its
references use other words again ("shifts to the left", "glides leftward",
"inflates", "closes in on" is avoided as it names no direction — every
reference reads back with `attributes`). Half the clips show one shape that
moves or changes size, half a shape moving toward or away from another.
MSVD layout, 80/20 train/test `split.tsv`, scenes in `metadata.json`.

Example:

```python
root = generate_outlines_dataset("/tmp/outlines", num_clips=250)
```
"""

import math

import cv2
import numpy as np

from keras_pvc.datasets.heldout import attributes
from keras_pvc.datasets.heldout.layout import scene_clips
from keras_pvc.datasets.heldout.layout import scene_references
from keras_pvc.datasets.heldout.layout import write_dataset

GENERATOR = "keras_pvc.heldout.outlines"
VERSION = 1
VIDEO_ID_PREFIX = "out"
FPS = 8
WIDTH, HEIGHT = 128, 96
CLIP_LENGTHS = (24, 32, 40, 48)  # whole seconds at 8 fps
COLORS = {
    "red": (255, 110, 100),
    "green": (110, 235, 120),
    "blue": (100, 140, 255),
    "yellow": (250, 235, 110),
}
DISTRACTOR_COLOR = (170, 170, 170)
SHAPE_SYNONYMS = {
    "circle": ("circle", "ring"),
    "square": ("square", "block"),
    "triangle": ("triangle", "wedge"),
}


def _directional(word, adverb):
    return (
        f"the {{n}} shifts {word}",
        f"a {{n}} goes {word}",
        f"an outlined {{n}} moves {word}",
        f"the {{n}} makes its way {word}",
        f"a {{n}} is heading {word}",
        f"the {{n}} glides {adverb}",
    )


TEMPLATES = {
    "left": _directional("to the left", "leftward"),
    "right": _directional("to the right", "rightward"),
    "up": _directional("up", "upwards"),
    "down": _directional("down", "downwards"),
    "grow": (
        "the {n} gets larger",
        "a {n} inflates",
        "an outlined {n} grows",
        "the {n} is expanding",
        "a {n} grows in size",
        "the {n} becomes bigger",
    ),
    "shrink": (
        "the {n} gets smaller",
        "a {n} deflates",
        "an outlined {n} shrinks",
        "the {n} is contracting",
        "a {n} shrinks in size",
        "the {n} becomes smaller",
    ),
    "toward": (
        "the {a} moves nearer to the {b}",
        "a {a} approaches a {b}",
        "an outlined {a} heads toward a {b}",
        "the {a} comes closer to the {b}",
        "the {a} nears the {b}",
        "a {a} glides towards a {b}",
    ),
    "away": (
        "the {a} moves farther from the {b}",
        "a {a} recedes from a {b}",
        "an outlined {a} heads away from a {b}",
        "the {a} pulls away from the {b}",
        "the {a} and the {b} drift apart",
        "a {a} glides away from a {b}",
    ),
}


def references(scene, rng):
    """Six references, each template once, shape synonyms drawn."""
    return scene_references(scene, rng, TEMPLATES, SHAPE_SYNONYMS)


def _fits(point, reach, margin=3.0):
    return margin + reach <= point[0] <= WIDTH - margin - reach and (
        margin + reach <= point[1] <= HEIGHT - margin - reach
    )


def _shape(rng, color, shape, start, end, radius):
    return {
        "color": color,
        "shape": shape,
        "start": [float(v) for v in start],
        "end": [float(v) for v in end],
        "radius": [float(r) for r in radius],
        "style": "hatched" if rng.uniform() < 0.5 else "outline",
    }


def _single(rng, color, shape):
    motion = attributes.MOTIONS[rng.integers(len(attributes.MOTIONS))]
    if motion in ("grow", "shrink"):
        small, large = rng.uniform(6, 9), rng.uniform(16, 21)
        radius = (small, large) if motion == "grow" else (large, small)
        reach = 1.3 * large
        center = (rng.uniform(reach + 3, WIDTH - reach - 3), rng.uniform(reach + 3, HEIGHT - reach - 3))
        return motion, _shape(rng, color, shape, center, center, radius)
    radius = rng.uniform(7, 13)
    reach = 1.3 * radius
    horizontal = motion in ("left", "right")
    side, across_side = (WIDTH, HEIGHT) if horizontal else (HEIGHT, WIDTH)
    travel = rng.uniform(0.35, 0.55) * side
    begin = rng.uniform(reach + 3, side - reach - 3 - travel)
    finish = begin + travel
    if motion in ("left", "up"):
        begin, finish = finish, begin
    across = rng.uniform(reach + 3, across_side - reach - 3)
    start, end = ((begin, across), (finish, across)) if horizontal else ((across, begin), (across, finish))
    return motion, _shape(rng, color, shape, start, end, (radius, radius))


def _pair(rng, mover_type, other_type):
    relation = attributes.RELATIONS[rng.integers(2)]
    for _ in range(1000):
        r_mover, r_other = rng.uniform(7, 12, size=2)
        other = (rng.uniform(20, WIDTH - 20), rng.uniform(20, HEIGHT - 20))
        angle = rng.uniform(0, 2 * math.pi)
        near = 1.3 * (r_mover + r_other) + rng.uniform(4, 8)
        far = near + rng.uniform(32, 52)
        points = [(other[0] + d * math.cos(angle), other[1] + d * math.sin(angle)) for d in (near, far)]
        if all(_fits(p, 1.3 * r_mover) for p in points) and _fits(other, 1.3 * r_other):
            start, end = (points[1], points[0]) if relation == "toward" else points
            mover = _shape(rng, *mover_type, start, end, (r_mover, r_mover))
            fixed = _shape(rng, *other_type, other, other, (r_other, r_other))
            return relation, mover, fixed
    raise RuntimeError("Could not place a pair scene.")  # pragma: no cover


def sample_scene(rng):
    """A random scene dict (see `attributes` for its keys)."""
    colors, shapes = list(COLORS), list(SHAPE_SYNONYMS)
    if rng.uniform() < 0.5:
        motion, mover = _single(rng, colors[rng.integers(4)], shapes[rng.integers(3)])
        scene = {"type": "single", "mover": mover, "motion": motion}
        named = [mover]
    else:
        first, second = rng.choice(12, size=2, replace=False)
        (c1, s1), (c2, s2) = divmod(int(first), 3), divmod(int(second), 3)
        relation, mover, other = _pair(rng, (colors[c1], shapes[s1]), (colors[c2], shapes[s2]))
        scene = {"type": "pair", "mover": mover, "relation": relation, "other": other}
        named = [mover, other]
    scene["num_frames"] = int(CLIP_LENGTHS[rng.integers(len(CLIP_LENGTHS))])
    scene["distractor"] = None
    if rng.uniform() < 0.5:
        for _ in range(200):
            point = (rng.uniform(8, WIDTH - 8), rng.uniform(8, HEIGHT - 8))
            if all(
                math.dist(point, s[key]) > 1.3 * max(s["radius"]) + 10
                for s in named
                for key in ("start", "end")
            ):
                scene["distractor"] = {"center": list(point), "size": float(rng.uniform(4, 6))}
                break
    scene["background"] = {
        "tones": [[float(v) for v in rng.uniform(25, 80, size=3)] for _ in range(2)],
        "period": float(rng.uniform(8, 16)),
        "angle": float(rng.uniform(0, math.pi)),
        "speed": float(rng.uniform(0.5, 1.5)),
    }
    return scene


def _background(scene, t):
    spec = scene["background"]
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    along = x * math.cos(spec["angle"]) + y * math.sin(spec["angle"]) + spec["speed"] * t
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * along / spec["period"])
    drift = 0.5 - 0.5 * math.cos(t / 9.0)  # the tones slowly trade places
    low, high = np.asarray(spec["tones"][0]), np.asarray(spec["tones"][1])
    a, b = low + drift * (high - low), high + drift * (low - high)
    return (a + stripes[..., None] * (b - a)).astype(np.uint8)


def _outline_points(shape, center, radius):
    if shape == "square":
        h = 0.9 * radius
        corners = [(-h, -h), (h, -h), (h, h), (-h, h)]
    else:
        r = 1.3 * radius
        corners = [(r * math.cos(a), r * math.sin(a)) for a in np.deg2rad([-90.0, 30.0, 150.0])]
    return np.array([(center[0] + dx, center[1] + dy) for dx, dy in corners])


def _draw(canvas, spec, center, radius, hatch):
    color = COLORS[spec["color"]]
    shift, scale = 3, 8
    c = (int(round(center[0] * scale)), int(round(center[1] * scale)))
    points = None
    if spec["shape"] != "circle":
        points = [np.round(_outline_points(spec["shape"], center, radius) * scale).astype(np.int32)]
    if spec["style"] == "hatched":
        mask = np.zeros(canvas.shape[:2], np.uint8)
        if points is None:
            cv2.circle(mask, c, int(radius * scale), 255, -1, cv2.LINE_8, shift)
        else:
            cv2.fillPoly(mask, points, 255, cv2.LINE_8, shift)
        canvas[(mask > 0) & hatch] = color
        thickness = 1
    else:
        thickness = 2
    if points is None:
        cv2.circle(canvas, c, int(radius * scale), color, thickness, cv2.LINE_AA, shift)
    else:
        cv2.polylines(canvas, points, True, color, thickness, cv2.LINE_AA, shift)


def render(scene):
    """RGB uint8 frames `(scene["num_frames"], HEIGHT, WIDTH, 3)`."""
    num_frames = scene["num_frames"]
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    hatch = (x + y) % 4 < 2
    named = [scene["mover"]] + ([scene["other"]] if "other" in scene else [])
    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(num_frames):
        linear = t / (num_frames - 1)
        eased = linear * linear * (3 - 2 * linear)  # smoothstep
        canvas = _background(scene, t)
        if scene["distractor"] is not None:
            cx, cy = scene["distractor"]["center"]
            s = scene["distractor"]["size"]
            diamond = np.array([(cx, cy - s), (cx + s, cy), (cx, cy + s), (cx - s, cy)], np.int32)
            cv2.polylines(canvas, [diamond], True, DISTRACTOR_COLOR, 1, cv2.LINE_AA)
        for spec in named:
            start, end = np.asarray(spec["start"]), np.asarray(spec["end"])
            r0, r1 = spec["radius"]
            _draw(canvas, spec, start + eased * (end - start), r0 + eased * (r1 - r0), hatch)
        frames[t] = cv2.GaussianBlur(canvas, (5, 5), 1.0)
    return frames


def generate_outlines_dataset(root, num_clips=250, seed=0, overwrite=False):
    """Writes the `outlines` set in the MSVD layout (80/20 train/test).

    Args:
        root: str or path-like. The dataset folder (created if missing).
        num_clips: int.
        seed: int. Clip `i` depends only on `(seed, i)`.
        overwrite: bool. Replace a folder made with other parameters.

    Returns:
        str, `root`.
    """
    params = {"generator": GENERATOR, "version": VERSION, "seed": int(seed),
              "num_clips": int(num_clips)}
    clips = scene_clips(
        num_clips, seed, 23, sample_scene, references, render, FPS, VIDEO_ID_PREFIX
    )
    extra = {"fps": FPS, "width": WIDTH, "height": HEIGHT, "clip_lengths": list(CLIP_LENGTHS),
             "colors": {k: list(v) for k, v in COLORS.items()},
             "shape_synonyms": {k: list(v) for k, v in SHAPE_SYNONYMS.items()}}
    return write_dataset(root, clips, params, extra, overwrite)
