"""Reading captions back into attributes, and grading them per attribute.

The held-out renderers (`sprites`, `outlines`, `stage`) describe every clip with one
of two kinds of scene, stored in their `metadata.json`:

- `{"type": "single", "mover": {"color", "shape"}, "motion"}`: one named
  shape (plus unnamed distractors) that moves left/right/up/down, grows or
  shrinks;
- `{"type": "pair", "mover": {...}, "relation", "other": {...}}`: a shape
  that moves toward or away from another one.

`parse_attributes` reads a free caption back into colours, shapes and a
motion or relation. It is keyword-based, not template-based, so it accepts
every synonym the renderers use ("moves to the left", "travels left",
"heads leftwards", "a red ball", "the red disc") and anything a model makes
of them; `grade_captions` then gives per-attribute and all-attributes-right
accuracy for each kind of scene.

Example:

```python
parse_attributes("the red ball heads leftwards")
# {'objects': [('red', 'circle')], 'motion': 'left', 'relation': None}
```
"""

import re

COLORS = ("red", "green", "blue", "yellow")
# Every word a renderer uses for a shape, and the shape it names.
SHAPE_WORDS = {
    "circle": "circle",
    "ball": "circle",
    "disc": "circle",
    "disk": "circle",
    "ring": "circle",
    "dot": "circle",
    "sphere": "circle",
    "square": "square",
    "box": "square",
    "block": "square",
    "cube": "square",
    "triangle": "triangle",
    "wedge": "triangle",
    "pyramid": "triangle",
}
SHAPES = ("circle", "square", "triangle")
# Words that state a one-object motion.
MOTION_WORDS = {
    "left": "left",
    "leftward": "left",
    "leftwards": "left",
    "right": "right",
    "rightward": "right",
    "rightwards": "right",
    "up": "up",
    "upward": "up",
    "upwards": "up",
    "rises": "up",
    "climbs": "up",
    "ascends": "up",
    "ascending": "up",
    "down": "down",
    "downward": "down",
    "downwards": "down",
    "falls": "down",
    "sinks": "down",
    "drops": "down",
    "descends": "down",
    "descending": "down",
    "grows": "grow",
    "grow": "grow",
    "growing": "grow",
    "bigger": "grow",
    "larger": "grow",
    "expands": "grow",
    "expanding": "grow",
    "swells": "grow",
    "inflates": "grow",
    "enlarges": "grow",
    "balloons": "grow",
    "shrinks": "shrink",
    "shrink": "shrink",
    "shrinking": "shrink",
    "smaller": "shrink",
    "contracts": "shrink",
    "contracting": "shrink",
    "deflates": "shrink",
    "dwindles": "shrink",
    "diminishes": "shrink",
}
MOTIONS = ("left", "right", "up", "down", "grow", "shrink")
# Words that state the relation of a mover to another shape.
RELATION_WORDS = {
    "toward": "toward",
    "towards": "toward",
    "approaches": "toward",
    "approaching": "toward",
    "closer": "toward",
    "nears": "toward",
    "nearer": "toward",
    "converges": "toward",
    "away": "away",
    "apart": "away",
    "farther": "away",
    "further": "away",
    "retreats": "away",
    "recedes": "away",
    "leaves": "away",
    "withdraws": "away",
}
RELATIONS = ("toward", "away")
# How many words may sit between a colour and its shape ("red hollow box").
_NAME_GAP = 2

SINGLE_ATTRIBUTES = ("color", "shape", "motion")
PAIR_ATTRIBUTES = (
    "mover_color",
    "mover_shape",
    "relation",
    "other_color",
    "other_shape",
)


def _words(caption):
    return re.sub(r"[^a-z ]", " ", caption.lower()).split()


def _objects(words):
    """`(colour or None, shape or None)` per object, in order of mention."""
    objects, pending_color, gap = [], None, 0
    for word in words:
        if word in COLORS:
            if pending_color is not None:
                objects.append((pending_color, None))
            pending_color, gap = word, 0
        elif word in SHAPE_WORDS:
            objects.append((pending_color, SHAPE_WORDS[word]))
            pending_color = None
        elif pending_color is not None:
            gap += 1
            if gap > _NAME_GAP:
                objects.append((pending_color, None))
                pending_color = None
    if pending_color is not None:
        objects.append((pending_color, None))
    return objects


def _one_of(words, table):
    """The single value the words state, or None (none stated, or several)."""
    found = {table[word] for word in words if word in table}
    return found.pop() if len(found) == 1 else None


def parse_attributes(caption):
    """What a caption says, as attributes.

    Args:
        caption: str. Any caption; case and punctuation are ignored.

    Returns:
        dict: `objects` (list of `(colour, shape)` in order of mention, either
        None where the caption does not say it), `motion` (one of `MOTIONS`
        or None: none stated, or contradictory ones) and `relation` (one of
        `RELATIONS` or None, likewise).
    """
    words = _words(caption)
    return {
        "objects": _objects(words),
        "motion": _one_of(words, MOTION_WORDS),
        "relation": _one_of(words, RELATION_WORDS),
    }


def caption_attributes(caption, scene_type):
    """A caption's attributes in the grader's terms for one kind of scene.

    Args:
        caption: str.
        scene_type: str. `"single"` or `"pair"`.

    Returns:
        dict over `SINGLE_ATTRIBUTES` or `PAIR_ATTRIBUTES`, None where the
        caption does not state one. For pairs the mover is the first object
        named and the other the second (the renderers' references and the
        captions trained on them name the mover first).
    """
    parsed = parse_attributes(caption)
    objects = parsed["objects"] + [(None, None)] * 2
    if scene_type == "single":
        return {
            "color": objects[0][0],
            "shape": objects[0][1],
            "motion": parsed["motion"],
        }
    if scene_type != "pair":
        raise ValueError(f"Unknown scene type {scene_type!r}: 'single' or 'pair'.")
    return {
        "mover_color": objects[0][0],
        "mover_shape": objects[0][1],
        "relation": parsed["relation"],
        "other_color": objects[1][0],
        "other_shape": objects[1][1],
    }


def scene_attributes(scene):
    """A scene dict's true attributes, keyed as `caption_attributes`."""
    mover = scene["mover"]
    if scene["type"] == "single":
        return {"color": mover["color"], "shape": mover["shape"], "motion": scene["motion"]}
    other = scene["other"]
    return {
        "mover_color": mover["color"],
        "mover_shape": mover["shape"],
        "relation": scene["relation"],
        "other_color": other["color"],
        "other_shape": other["shape"],
    }


def grade_captions(scenes, predictions):
    """Per-attribute accuracy of captions against their scenes.

    Args:
        scenes: dict `{clip_id: scene dict}` (a held-out `metadata.json`'s
            `"scenes"`).
        predictions: dict `{clip_id: caption}`; clips without a scene are
            ignored.

    Returns:
        dict with `"single"` and `"pair"` (each: `num_clips`, the fraction
        right of every attribute, `mover`/`other` for both of an object's
        attributes right (pairs), and `all`: every attribute right) and
        `per_clip` (`{clip_id: {"type", "truth", "said", "all"}}`).
    """
    groups = {"single": SINGLE_ATTRIBUTES, "pair": PAIR_ATTRIBUTES}
    counts = {name: {} for name in groups}
    per_clip = {}
    for clip_id, caption in predictions.items():
        scene = scenes.get(clip_id)
        if scene is None:
            continue
        kind = scene["type"]
        truth = scene_attributes(scene)
        said = caption_attributes(caption, kind)
        right = {key: said[key] == truth[key] for key in groups[kind]}
        if kind == "pair":
            right["mover"] = right["mover_color"] and right["mover_shape"]
            right["other"] = right["other_color"] and right["other_shape"]
        right["all"] = all(right[key] for key in groups[kind])
        group = counts[kind]
        group["num_clips"] = group.get("num_clips", 0) + 1
        for key, value in right.items():
            group[key] = group.get(key, 0) + int(value)
        per_clip[clip_id] = {"type": kind, "truth": truth, "said": said, "all": right["all"]}
    result = {}
    for kind, group in counts.items():
        total = group.pop("num_clips", 0)
        result[kind] = {"num_clips": total}
        result[kind].update({key: value / total for key, value in group.items()})
    result["per_clip"] = per_clip
    return result


def format_grades(grades):
    """A text table (percentages) of `grade_captions`' result."""
    lines = []
    for kind, keys in (
        ("single", SINGLE_ATTRIBUTES + ("all",)),
        ("pair", PAIR_ATTRIBUTES + ("mover", "other", "all")),
    ):
        group = grades.get(kind, {})
        if not group.get("num_clips"):
            continue
        header = f"{kind + ' (' + str(group['num_clips']) + ')':<12}"
        lines.append(header + "".join(f"{key:>13}" for key in keys))
        lines.append(" " * 12 + "".join(f"{100 * group[key]:12.0f}%" for key in keys))
    return "\n".join(lines)
