"""`stage`: a third held-out set, written after `regions` was chosen on the other two.

Nobody tuned on it: it was written from a description, not from model
results. It differs from the embedded generator, `sprites` and `outlines`:

- 120x80 frames (3:2) at 10 fps, clips of 30, 40 or 50 frames;
- a small stage: a wall with a vertical gradient above a perspective tiled
  floor, the horizon, tiles, tones and light side changing per clip;
- shaded solids (a lit sphere, a cube with its top and side faces, a
  two-faced pyramid) that cast soft shadows, at sizes from small to large
  and a little larger nearer the bottom of the frame (depth);
- one or two static distractors of unnamed colours (grey or white pillars
  and slabs) in most clips;
- a slow camera pan plus sub-pixel jitter, a mild blur, sensor noise and a
  real JPEG round trip of every frame at a per-clip quality;
- ease-out motion (fast, then settling), unlike `sprites` (linear) and
  `outlines` (smoothstep);
- eight references a clip, in words the other renderers do not use
  ("sphere", "cube", "pyramid", "ascends", "descends", "balloons",
  "dwindles", "withdraws from", "converges on").

Half the clips show one shape that moves left/right/up/down, grows or
shrinks; half a shape moving toward or away from another one. MSVD layout,
80/20 train/test `split.tsv`, no val, scenes in `metadata.json` for
`attributes.grade_captions`.

Example:

```python
root = generate_stage_dataset("/tmp/stage", num_clips=250)
```
"""

import math

import cv2
import numpy as np

from keras_pvc.datasets.heldout import attributes
from keras_pvc.datasets.heldout.layout import scene_clips
from keras_pvc.datasets.heldout.layout import scene_references
from keras_pvc.datasets.heldout.layout import write_dataset

GENERATOR = "keras_pvc.heldout.stage"
VERSION = 1
VIDEO_ID_PREFIX = "stg"
FPS = 10
WIDTH, HEIGHT = 120, 80
CLIP_LENGTHS = (30, 40, 50)  # whole seconds at 10 fps
# The camera's world is this many pixels larger on every side (for the pan).
MARGIN = 8
COLORS = {
    "red": (205, 45, 40),
    "green": (45, 165, 60),
    "blue": (45, 85, 210),
    "yellow": (230, 195, 40),
}
DISTRACTOR_COLORS = {"grey": (140, 140, 140), "white": (225, 225, 222)}
SHAPE_SYNONYMS = {
    "circle": ("sphere", "ball"),
    "square": ("cube", "block", "box"),
    "triangle": ("pyramid", "triangle"),
}


def _directional(word, adverb):
    return (
        f"a {{n}} slides {word} across the floor",
        f"the {{n}} scoots {adverb}",
        f"a {{n}} is carried {word}",
        f"the {{n}} edges {adverb}",
        f"on the stage a {{n}} moves {word}",
        f"a {{n}} crosses the floor {word}",
        f"we see a {{n}} going {word}",
        f"the {{n}} wanders {adverb}",
    )


def _vertical(word, adverb, verb, participle):
    return (
        f"a {{n}} {verb}",
        f"the {{n}} floats {word}",
        f"a {{n}} is carried {adverb}",
        f"the {{n}} edges {adverb}",
        f"on the stage a {{n}} moves {word}",
        f"a {{n}} goes {word} the screen",
        f"we see a {{n}} {participle}",
        f"the {{n}} slowly {verb}",
    )


TEMPLATES = {
    "left": _directional("to the left", "leftwards"),
    "right": _directional("to the right", "rightwards"),
    "up": _vertical("up", "upward", "ascends", "ascending"),
    "down": _vertical("down", "downward", "descends", "descending"),
    "grow": (
        "a {n} enlarges",
        "the {n} balloons",
        "a {n} gets larger and larger",
        "the {n} keeps growing",
        "on the stage a {n} grows",
        "a {n} expands steadily",
        "we see a {n} growing",
        "the {n} becomes bigger",
    ),
    "shrink": (
        "a {n} dwindles",
        "the {n} diminishes",
        "a {n} gets smaller and smaller",
        "the {n} keeps shrinking",
        "on the stage a {n} shrinks",
        "a {n} contracts steadily",
        "we see a {n} shrinking",
        "the {n} becomes smaller",
    ),
    "toward": (
        "a {a} converges on a {b}",
        "the {a} slides toward the {b}",
        "a {a} approaches the {b}",
        "the {a} drifts closer to a {b}",
        "on the stage a {a} heads towards a {b}",
        "the {a} nears a {b}",
        "a {a} travels toward the {b}",
        "we see a {a} approaching a {b}",
    ),
    "away": (
        "a {a} withdraws from a {b}",
        "the {a} slides away from the {b}",
        "a {a} retreats from the {b}",
        "the {a} drifts farther from a {b}",
        "on the stage a {a} heads away from a {b}",
        "the {a} backs away from the {b}",
        "a {a} travels away from the {b}",
        "we see a {a} moving away from a {b}",
    ),
}


def references(scene, rng):
    """Eight references, each template once, shape synonyms drawn."""
    return scene_references(scene, rng, TEMPLATES, SHAPE_SYNONYMS)


def depth_scale(y):
    """How much larger a shape is drawn at frame row `y` (nearer: lower)."""
    return 0.85 + 0.3 * y / HEIGHT


def _fits(point, reach, margin=7.0):
    return margin + reach <= point[0] <= WIDTH - margin - reach and (
        margin + reach <= point[1] <= HEIGHT - margin - reach
    )


def _shape(color, shape, start, end, radius):
    return {
        "color": color,
        "shape": shape,
        "start": [float(v) for v in start],
        "end": [float(v) for v in end],
        "radius": [float(r) for r in radius],
    }


def _single(rng, color, shape):
    motion = attributes.MOTIONS[rng.integers(len(attributes.MOTIONS))]
    if motion in ("grow", "shrink"):
        small, large = rng.uniform(4.0, 6.0), rng.uniform(12.0, 16.0)
        radius = (small, large) if motion == "grow" else (large, small)
        reach = 1.4 * large
        center = (rng.uniform(reach + 7, WIDTH - reach - 7), rng.uniform(reach + 7, HEIGHT - reach - 7))
        return motion, _shape(color, shape, center, center, radius)
    # Several scales: small, medium or large for the whole clip.
    radius = float(rng.choice([rng.uniform(4.0, 6.0), rng.uniform(6.0, 9.0), rng.uniform(9.0, 12.0)]))
    reach = 1.4 * radius * depth_scale(HEIGHT)
    horizontal = motion in ("left", "right")
    side, across_side = (WIDTH, HEIGHT) if horizontal else (HEIGHT, WIDTH)
    # Large shapes travel less far (down to a third of the frame's height).
    travel = min(rng.uniform(0.35, 0.5) * side, side - 2 * (reach + 7) - 1)
    begin = rng.uniform(reach + 7, side - reach - 7 - travel)
    finish = begin + travel
    if motion in ("left", "up"):
        begin, finish = finish, begin
    across = rng.uniform(reach + 7, across_side - reach - 7)
    start, end = ((begin, across), (finish, across)) if horizontal else ((across, begin), (across, finish))
    return motion, _shape(color, shape, start, end, (radius, radius))


def _pair(rng, mover_type, other_type):
    relation = attributes.RELATIONS[rng.integers(2)]
    for _ in range(2000):
        r_mover, r_other = rng.uniform(4.5, 9.0, size=2)
        other = (rng.uniform(15, WIDTH - 15), rng.uniform(15, HEIGHT - 15))
        angle = rng.uniform(0, 2 * math.pi)
        near = 1.5 * (r_mover + r_other) + rng.uniform(3, 6)
        far = near + rng.uniform(28, 45)
        points = [(other[0] + d * math.cos(angle), other[1] + d * math.sin(angle)) for d in (near, far)]
        if all(_fits(p, 1.6 * r_mover) for p in points) and _fits(other, 1.6 * r_other):
            start, end = (points[1], points[0]) if relation == "toward" else points
            mover = _shape(*mover_type, start, end, (r_mover, r_mover))
            fixed = _shape(*other_type, other, other, (r_other, r_other))
            return relation, mover, fixed
    raise RuntimeError("Could not place a pair scene.")  # pragma: no cover


def _distractors(rng, named):
    """Zero (15%), one (50%) or two static grey/white pillars or slabs."""
    count = int(rng.choice(3, p=[0.15, 0.5, 0.35]))
    path = [
        (np.asarray(s["start"]) + f * (np.asarray(s["end"]) - np.asarray(s["start"])), 1.6 * max(s["radius"]))
        for s in named
        for f in np.linspace(0, 1, 9)
    ]
    placed = []
    for _ in range(count):
        for _ in range(300):
            kind = "pillar" if rng.uniform() < 0.5 else "slab"
            size = (rng.uniform(2.5, 4.0), rng.uniform(6.0, 10.0))
            if kind == "slab":
                size = size[::-1]
            point = (rng.uniform(8, WIDTH - 8), rng.uniform(8, HEIGHT - 8))
            reach = max(size) + 4
            if all(math.dist(point, p) > r + reach for p, r in path) and all(
                math.dist(point, d["center"]) > reach + max(d["size"]) for d in placed
            ):
                placed.append({
                    "kind": kind,
                    "color": str(rng.choice(list(DISTRACTOR_COLORS))),
                    "center": [float(v) for v in point],
                    "size": [float(v) for v in size],
                })
                break
    return placed


def _muted(rng, low, high):
    """An RGB tone of little saturation: a grey plus a small tint."""
    grey = rng.uniform(low, high)
    return [float(grey + v) for v in rng.uniform(-7, 7, size=3)]


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
    scene["distractors"] = _distractors(rng, named)
    scene["stage"] = {
        "horizon": float(rng.uniform(0.25, 0.5) * HEIGHT),
        "wall": [_muted(rng, 120, 190), _muted(rng, 70, 120)],
        "floor": [_muted(rng, 85, 140), _muted(rng, 70, 115)],
        "tile": float(rng.uniform(6, 14)),
        "texture_seed": int(rng.integers(2**31)),
        "light": float(rng.choice([-1.0, 1.0])),  # light from the left (-1) or right
    }
    scene["camera"] = {
        "pan_start": [float(v) for v in rng.uniform(-5, 5, size=2)],
        "pan_end": [float(v) for v in rng.uniform(-5, 5, size=2)],
        "blur": float(rng.uniform(0.5, 0.9)),
        "jpeg_quality": int(rng.integers(30, 61)),
        "noise_seed": int(rng.integers(2**31)),
    }
    return scene


def _stage(scene):
    """The clip's static world (wall and floor), float RGB, MARGIN-padded."""
    spec = scene["stage"]
    height, width = HEIGHT + 2 * MARGIN, WIDTH + 2 * MARGIN
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = spec["horizon"] + MARGIN
    top, bottom = (np.asarray(c, np.float32) for c in spec["wall"])
    wall = top + (y / horizon)[..., None].clip(0, 1) * (bottom - top)
    below = np.maximum(y - horizon, 0.5)
    depth = 40.0 / below  # a pinhole camera over a flat floor
    along = (x - width / 2) * depth
    checker = (np.floor(along / spec["tile"]) + np.floor(depth * 30.0 / spec["tile"])) % 2
    light, dark = (np.asarray(c, np.float32) for c in spec["floor"])
    floor = dark + checker[..., None] * (light - dark)
    # Far tiles fade into one tone, as a real floor's do.
    fade = np.exp(-depth / 3.0)[..., None]
    floor = fade * floor + (1 - fade) * (light + dark) / 2
    world = np.where((y > horizon)[..., None], floor, wall)
    rng = np.random.default_rng(spec["texture_seed"])
    coarse = rng.normal(0, 1, size=(5, 7, 1)).astype(np.float32)
    blotches = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return world + 8.0 * blotches[..., None]


def _shadow(mask, center, reach, light):
    cx, cy = center[0] + MARGIN - 0.4 * light * reach, center[1] + MARGIN + 0.85 * reach
    axes = (max(1, int(round(1.1 * reach))), max(1, int(round(0.35 * reach))))
    cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)


def _sphere(world, center, radius, color, light):
    cx, cy = center[0] + MARGIN, center[1] + MARGIN
    x0, x1 = int(cx - radius - 2), int(cx + radius + 3)
    y0, y1 = int(cy - radius - 2), int(cy + radius + 3)
    y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (x - cx) / radius, (y - cy) / radius
    distance = np.sqrt(dx * dx + dy * dy)
    coverage = np.clip((1.0 - distance) * radius + 0.5, 0, 1)[..., None]
    nz = np.sqrt(np.clip(1 - distance * distance, 0, 1))
    lx, ly, lz = 0.55 * light, -0.55, 0.63
    diffuse = np.clip(dx * lx + dy * ly + nz * lz, 0, 1)
    shade = (0.35 + 0.75 * diffuse)[..., None]
    highlight = (np.clip(diffuse - 0.92, 0, 1) * 6.0)[..., None]
    rgb = np.asarray(color, np.float32) * shade + 255.0 * highlight
    patch = world[y0:y1, x0:x1]
    world[y0:y1, x0:x1] = patch * (1 - coverage) + rgb * coverage


def _faces(shape, center, radius, light):
    """`[(polygon, brightness)]` of a cube or pyramid, back faces first."""
    cx, cy = center[0] + MARGIN, center[1] + MARGIN
    if shape == "square":
        h, depth = 0.85 * radius, 0.45 * radius
        front = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
        side_x = cx + h if light < 0 else cx - h
        shift = depth if light < 0 else -depth
        top = [(cx - h, cy - h), (cx + h, cy - h), (cx + h + shift, cy - h - depth),
               (cx - h + shift, cy - h - depth)]
        side = [(side_x, cy - h), (side_x + shift, cy - h - depth), (side_x + shift, cy + h - depth),
                (side_x, cy + h)]
        return [(top, 1.25), (side, 0.6), (front, 0.9)]
    r = 1.3 * radius
    apex, base = (cx, cy - r), cy + 0.6 * r
    left, right, ridge = (cx - 0.95 * r, base), (cx + 0.95 * r, base), (cx + 0.2 * light * r, base)
    lit, unlit = (1.15, 0.6) if light > 0 else (0.6, 1.15)
    return [([apex, left, ridge], unlit), ([apex, ridge, right], lit)]


def _solid(world, spec, center, radius, light):
    color = COLORS[spec["color"]] if "kind" not in spec else DISTRACTOR_COLORS[spec["color"]]
    if spec.get("shape") == "circle":
        _sphere(world, center, radius, color, light)
        return
    if "kind" in spec:  # a distractor: a box of its own width and height
        w, h = spec["size"]
        cx, cy = center[0] + MARGIN, center[1] + MARGIN
        faces = [([(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)], 0.95),
                 ([(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy - h + 1.5),
                   (cx - w, cy - h + 1.5)], 1.1)]
    else:
        faces = _faces(spec["shape"], center, radius, light)
    scale = 16
    for polygon, brightness in faces:
        points = np.round(np.asarray(polygon) * scale).astype(np.int32)
        shade = tuple(float(min(255.0, c * brightness)) for c in color)
        cv2.fillPoly(world, [points], shade, cv2.LINE_AA, 4)


def _objects(scene, progress):
    """`(spec, center, radius)` of every solid at a clip fraction."""
    eased = 1 - (1 - progress) ** 2  # ease-out
    solids = []
    for spec in scene["distractors"]:
        solids.append((spec, spec["center"], max(spec["size"])))
    for spec in [scene["mover"]] + ([scene["other"]] if "other" in scene else []):
        start, end = np.asarray(spec["start"]), np.asarray(spec["end"])
        center = start + eased * (end - start)
        r0, r1 = spec["radius"]
        solids.append((spec, center, (r0 + eased * (r1 - r0)) * depth_scale(center[1])))
    # Drawn far (top) to near (bottom), as a painter would.
    return sorted(solids, key=lambda solid: solid[1][1])


def _camera(frame_world, scene, progress, noise_rng):
    spec = scene["camera"]
    pan = np.asarray(spec["pan_start"]) + progress * (
        np.asarray(spec["pan_end"]) - np.asarray(spec["pan_start"])
    )
    ox, oy = MARGIN + pan + noise_rng.uniform(-0.5, 0.5, size=2)
    view = cv2.warpAffine(
        frame_world, np.float32([[1, 0, -ox], [0, 1, -oy]]), (WIDTH, HEIGHT),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT,
    )
    view = cv2.GaussianBlur(view, (0, 0), spec["blur"])
    view = view + noise_rng.normal(0, 3.0, size=view.shape).astype(np.float32)
    rgb = np.clip(view, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, spec["jpeg_quality"]])
    if not ok:  # pragma: no cover
        raise RuntimeError("OpenCV could not JPEG-encode a frame.")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]


def render(scene):
    """RGB uint8 frames `(scene["num_frames"], HEIGHT, WIDTH, 3)`."""
    num_frames = scene["num_frames"]
    base = _stage(scene).astype(np.float32)
    light = scene["stage"]["light"]
    noise_rng = np.random.default_rng(scene["camera"]["noise_seed"])
    frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(num_frames):
        progress = t / (num_frames - 1)
        solids = _objects(scene, progress)
        shadows = np.zeros(base.shape[:2], np.float32)
        for spec, center, radius in solids:
            _shadow(shadows, center, radius, light)
        shadows = cv2.GaussianBlur(shadows, (0, 0), 2.0)
        world = base * (1 - 0.45 * shadows[..., None])
        for spec, center, radius in solids:
            _solid(world, spec, center, radius, light)
        frames[t] = _camera(world, scene, progress, noise_rng)
    return frames


def generate_stage_dataset(root, num_clips=250, seed=0, overwrite=False):
    """Writes the `stage` set in the MSVD layout (80/20 train/test).

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
        num_clips, seed, 37, sample_scene, references, render, FPS, VIDEO_ID_PREFIX
    )
    extra = {"fps": FPS, "width": WIDTH, "height": HEIGHT, "clip_lengths": list(CLIP_LENGTHS),
             "colors": {k: list(v) for k, v in COLORS.items()},
             "distractor_colors": {k: list(v) for k, v in DISTRACTOR_COLORS.items()},
             "shape_synonyms": {k: list(v) for k, v in SHAPE_SYNONYMS.items()}}
    return write_dataset(root, clips, params, extra, overwrite)
