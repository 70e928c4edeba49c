"""Time-reversed twins of training clips (a data augmentation).

A captioner trained on a few hundred clips can fit its training captions
from what a clip looks like (its background, its objects) and never learn
which way things move (docs/heldout_results.md). A clip played backwards
looks the same but moves the other way, so its captions are the originals
with the motion words swapped ("moves left" -> "moves right", "grows" ->
"shrinks", "toward" -> "away from"); trained on both, appearance alone can
no longer tell the two captions apart.

`reversed_twins` makes the twins as clips (same video, references turned
round); `caption_dataset` and `features_dataset` take `reversed_twins=True`
(or a list of extra word pairs, `twin_swaps`) and reverse the twin's valid frames (or cached per-frame features, which is
exact) as each batch is gathered, so no second copy is stored. A clip none
of whose references has a motion word to swap gets no twin, and a
reference the table cannot turn round is left out of its clip's twin.
"""

import dataclasses
import re

import numpy as np

# Motion words and their reverses: a generic English table, written before
# looking at any held-out renderer's words, plus three from `sprites`'
# (benchmarks/heldout_eval.py). "left"/"right" are swapped only where they
# are a direction ("moves left", "to the left"), not a place ("left of").
MOTION_SWAPS = (
    ("leftward", "rightward"), ("leftwards", "rightwards"),
    ("upward", "downward"), ("upwards", "downwards"),
    ("up", "down"), ("rises", "falls"), ("rising", "falling"), ("rise", "fall"),
    ("ascends", "descends"), ("ascending", "descending"),
    ("climbs", "drops"), ("climbing", "dropping"),
    ("grows", "shrinks"), ("growing", "shrinking"), ("grow", "shrink"),
    ("expands", "contracts"), ("expanding", "contracting"),
    ("bigger", "smaller"), ("larger", "smaller"),
    ("enlarges", "shrinks"),
    ("approaches", "leaves"), ("approaching", "leaving"),
    ("nears", "leaves"),
    ("closer to", "farther from"),
    ("toward", "away from"), ("towards", "away from"),
    ("enters", "exits"), ("entering", "exiting"),
    ("retreats", "advances"), ("sinks", "rises"), ("swells", "shrinks"),
    # Phrasal verbs whose reverse is another verb, as real footage says them
    # (matched before a bare "up"/"down", the longer phrase first).
    ("picks up", "puts down"), ("picking up", "putting down"),
    ("pick up", "put down"), ("picked up", "put down"),
    ("sits down", "stands up"), ("sitting down", "standing up"),
    ("sit down", "stand up"), ("sat down", "stood up"),
    ("lies down", "gets up"), ("lying down", "getting up"),
)

# Verbs whose "up"/"down" (right after them or two words on) is not a
# direction ("cuts up an onion", "writes the note down", "slows down"): a
# reference with one cannot be turned round by swapping words, so it is left
# out of its clip's twin.
# The rule reads words, not grammar: a direction that follows such a verb
# within two words ("a turning top moves up") is left out too.
PARTICLE_VERBS = (
    "break", "breaks", "breaking", "broke", "calm", "calms", "calming",
    "chop", "chops", "chopping", "chopped", "clean", "cleans", "cleaning",
    "cut", "cuts", "cutting", "dress", "dresses", "dressing", "dressed",
    "fill", "fills", "filling", "give", "gives", "giving", "line", "lines",
    "lining", "mess", "messes", "messing", "mix", "mixes", "mixing", "open",
    "opens", "opening", "pick", "picks", "picking", "picked", "set", "sets",
    "setting", "show", "shows", "showing", "shut", "shuts", "shutting",
    "slice", "slices", "slicing", "slow", "slows", "slowing", "speed",
    "speeds", "speeding", "tear", "tears", "tearing", "tie", "ties", "tying",
    "turn", "turns", "turning", "wake", "wakes", "waking", "warm", "warms",
    "warming", "write", "writes", "writing", "wrote",
)

TWIN_SUFFIX = "~reversed"


def _swap_table(swaps):
    table = {}
    for a, b in swaps:
        table.setdefault(a, b)
        table.setdefault(b, a)
    return table


def _pattern(table):
    words = "|".join(sorted(map(re.escape, table), key=len, reverse=True))
    particles = "|".join(PARTICLE_VERBS)
    return re.compile(
        r"\b(" + words + r")\b|\b(left|right)\b(?!\s+of\b)"
        r"|\b((?:" + particles + r")\s+(?:\w+\s+){0,2}(?:up|down))\b"
    )


_DEFAULT_TABLE = _swap_table(MOTION_SWAPS)
_DEFAULT_PATTERN = _pattern(_DEFAULT_TABLE)


def reverse_caption(caption, swaps=None):
    """`caption` as it reads for the clip played backwards.

    Args:
        caption: str.
        swaps: sequence of `(word, reverse)` pairs, or None for
            `MOTION_SWAPS`. Each pair swaps both ways; "left" and "right"
            are always swapped where they are a direction.

    Returns:
        The caption with its motion words swapped, or None if it has none
        (a still scene, or words the table lacks: no caption to train on)
        or if an "up"/"down" in it belongs to one of `PARTICLE_VERBS`
        ("cuts up", "writes it down"), which no word swap turns round.

    >>> reverse_caption("a red circle moves left toward a blue square")
    'a red circle moves right away from a blue square'
    >>> reverse_caption("a red circle is left of a blue square") is None
    True
    """
    if swaps is None:
        table, pattern = _DEFAULT_TABLE, _DEFAULT_PATTERN
    else:
        table = _swap_table(swaps)
        pattern = _pattern(table)
    changed = blocked = False

    def swap(match):
        nonlocal changed, blocked
        if match.group(3):
            blocked = True
            return match.group(3)
        changed = True
        if match.group(1):
            return table[match.group(1)]
        return "right" if match.group(2) == "left" else "left"

    out = pattern.sub(swap, caption)
    return out if changed and not blocked else None


def twin_swaps(option):
    """The swap table a `reversed_twins` option asks for: True gives
    `MOTION_SWAPS` (returned as None, `reverse_caption`'s default); a list of
    `[word, reverse]` pairs (a dataset's own motion words, e.g.
    `[["withdraws from", "converges on"]]`) is added to it."""
    if option is True:
        return None
    pairs = list(option) if isinstance(option, (list, tuple)) else None
    if not pairs or not all(
        isinstance(pair, (list, tuple)) and len(pair) == 2
        and all(isinstance(word, str) and word.strip() for word in pair)
        for pair in pairs
    ):
        raise ValueError(
            "`reversed_twins` must be True, False or a list of [word, reverse] "
            f"pairs of words to swap besides the built-in ones; got {option!r}."
        )
    return MOTION_SWAPS + tuple(tuple(pair) for pair in pairs)


def reversed_twins(clips, swaps=None):
    """The clips followed by a time-reversed twin of each clip that has one.

    Args:
        clips: list of `Clip`.
        swaps: see `reverse_caption`.

    Returns:
        `(clips + twins, source, flipped)`: `source[i]` is the index in
        `clips` whose frames example `i` uses, `flipped[i]` whether they are
        played backwards. A twin's id is the clip's plus `TWIN_SUFFIX`.
    """
    twins, source = [], []
    for index, clip in enumerate(clips):
        references = [reverse_caption(text, swaps) for text in clip.references]
        references = [text for text in references if text is not None]
        if references:
            twins.append(
                dataclasses.replace(
                    clip, clip_id=clip.clip_id + TWIN_SUFFIX, references=references
                )
            )
            source.append(index)
    source = np.concatenate([np.arange(len(clips)), np.asarray(source, int)]).astype("int32")
    flipped = np.arange(len(source)) >= len(clips)
    return list(clips) + twins, source, flipped


def check_prefix_masks(frame_masks, what="clips"):
    """Raises unless every mask is valid frames then padding (what the
    loaders write), the layout `reverse_valid_frames` reverses."""
    frame_masks = np.asarray(frame_masks, bool)
    counts = frame_masks.sum(axis=1)
    prefix = np.arange(frame_masks.shape[1])[None] < counts[:, None]
    bad = np.flatnonzero((prefix != frame_masks).any(axis=1))
    if bad.size:
        raise ValueError(
            f"Reversed twins need frame masks that are valid frames then padding; "
            f"{what} {bad[:5].tolist()} have gaps."
        )


def reverse_valid_frames(videos, frame_masks, flipped):
    """`videos` `(B, T, ...)` with the valid frames of rows where `flipped`
    is True in reverse order (padding stays where it is); TF ops, for
    `tf.data` maps. Masks must be prefix masks (`check_prefix_masks`)."""
    import tensorflow as tf

    steps = tf.shape(videos)[1]
    counts = tf.reduce_sum(tf.cast(frame_masks, tf.int32), axis=1, keepdims=True)
    time = tf.range(steps)[None]
    backwards = tf.where(time < counts, counts - 1 - time, time)
    order = tf.where(tf.reshape(flipped, (-1, 1)), backwards, tf.broadcast_to(time, tf.shape(backwards)))
    return tf.gather(videos, order, batch_dims=1)


def reverse_valid_frames_numpy(videos, frame_masks, flipped):
    """`reverse_valid_frames` on numpy arrays (a copy)."""
    videos = np.array(videos, copy=True)
    for row in np.flatnonzero(flipped):
        count = int(np.asarray(frame_masks[row]).sum())
        videos[row, :count] = videos[row, :count][::-1]
    return videos
