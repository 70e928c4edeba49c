"""Time-reversed twins (`keras_pvc.datasets.reverse`): captions turned round
by hand-checked cases, frames reversed within their valid prefix in both the
in-memory and the streamed datasets, and `train --set reversed_twins=true`."""

import os

import numpy as np
import pytest

from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.pipeline import ClipArrays
from keras_pvc.datasets.reverse import check_prefix_masks
from keras_pvc.datasets.reverse import reverse_caption
from keras_pvc.datasets.reverse import reversed_twins


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a red circle moves left", "a red circle moves right"),
        ("a red circle moves to the right", "a red circle moves to the left"),
        ("a blue square moves toward a green star", "a blue square moves away from a green star"),
        ("a blue square moves away from a green star", "a blue square moves toward a green star"),
        ("the ball grows and then rises", "the ball shrinks and then falls"),
        # "left of" is a place, not a direction: it stays, "up" still swaps.
        ("a circle left of a square moves up", "a circle left of a square moves down"),
        ("a circle is left of a square", None),
        ("a red circle sits still", None),
        # Real footage's phrasal verbs: reversed, picking up is putting down.
        ("a man picks up a ball", "a man puts down a ball"),
        ("a man is putting down a box", "a man is picking up a box"),
        ("a woman sits down on a bench", "a woman stands up on a bench"),
        ("a dog lies down", "a dog gets up"),
        # ... and particles no swap turns round: the reference is left out.
        ("a woman is cutting up an onion", None),
        ("a man writes the number down", None),
        ("a man picks the ball up", None),
        ("the car slows down and moves left", None),
        ("a cat jumps down", "a cat jumps up"),
    ],
)
def test_reverse_caption_swaps_motion_words_only(caption, expected):
    assert reverse_caption(caption) == expected


def test_reverse_caption_takes_its_own_table():
    assert reverse_caption("a dog spins clockwise") is None
    swaps = [("clockwise", "anticlockwise")]
    assert reverse_caption("a dog spins clockwise", swaps) == "a dog spins anticlockwise"
    assert reverse_caption("a dog spins anticlockwise", swaps) == "a dog spins clockwise"


def test_twin_swaps_add_a_datasets_own_words():
    from keras_pvc.datasets.reverse import twin_swaps

    assert twin_swaps(True) is None
    clips = [Clip("a_0_1", ["a dog spins clockwise", "a dog moves left"], "train")]
    assert len(reversed_twins(clips)[0][1:]) == 1
    twin = reversed_twins(clips, twin_swaps([["clockwise", "anticlockwise"]]))[0][1]
    assert twin.references == ["a dog spins anticlockwise", "a dog moves right"]
    for bad in ("yes", [], [["clockwise"]], [["clockwise", ""]], [[1, 2]]):
        with pytest.raises(ValueError, match="reversed_twins"):
            twin_swaps(bad)


def _clips():
    return [
        Clip("a_0_1", ["a circle moves left", "a circle is still"], "train"),
        Clip("b_0_1", ["a square sits still"], "train"),
        Clip("c_0_1", ["a star moves toward a square"], "train"),
    ]


def test_twins_follow_the_clips_that_can_be_reversed():
    clips, source, flipped = reversed_twins(_clips())
    assert [clip.clip_id for clip in clips] == [
        "a_0_1", "b_0_1", "c_0_1", "a_0_1~reversed", "c_0_1~reversed",
    ]
    # A reference without a motion word is left out of the twin.
    assert clips[3].references == ["a circle moves right"]
    assert clips[4].references == ["a star moves away from a square"]
    assert source.tolist() == [0, 1, 2, 0, 2]
    assert flipped.tolist() == [False, False, False, True, True]


def test_masks_with_gaps_are_refused():
    check_prefix_masks(np.array([[1, 1, 0], [1, 0, 0]], bool))
    with pytest.raises(ValueError, match=r"\[1\] have gaps"):
        check_prefix_masks(np.array([[1, 1, 0], [1, 0, 1]], bool))


def _videos():
    """(3 clips, 4 frames, 2 features): frame t of clip c holds 10 c + t;
    clip 0 has 3 valid frames, clip 2 two."""
    videos = (10 * np.arange(3)[:, None] + np.arange(4)[None]).astype("float32")
    videos = np.repeat(videos[..., None], 2, axis=-1)
    masks = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], bool)
    return videos, masks


def _preprocessor(clips):
    from keras_pvc.models import VideoCaptionerPreprocessor

    words = [text for clip in clips for text in clip.references]
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        words + [reverse_caption(text) or "" for text in words]
    )
    return VideoCaptionerPreprocessor(vocabulary=vocabulary, caption_length=8)


def _check_batch(batch, preprocessor, videos, masks):
    features = np.asarray(batch["features"])
    frame_mask = np.asarray(batch["frame_mask"])
    # Examples in order: the three clips' first references, then two twins.
    np.testing.assert_array_equal(features[:3], videos)
    np.testing.assert_array_equal(features[3, :, 0], [2, 1, 0, 3])  # padding stays
    np.testing.assert_array_equal(features[4, :, 0], [21, 20, 22, 23])
    np.testing.assert_array_equal(frame_mask, masks[[0, 1, 2, 0, 2]])
    expected = preprocessor.tokenize(["a circle moves right", "a star moves away from a square"])
    np.testing.assert_array_equal(np.asarray(batch["caption_ids"])[3:], expected)


def test_caption_dataset_reverses_the_twins_frames():
    from keras_pvc.datasets.pipeline import caption_dataset

    videos, masks = _videos()
    preprocessor = _preprocessor(_clips())
    arrays = ClipArrays(_clips(), videos, masks, [])
    dataset = caption_dataset(
        arrays, preprocessor, "features", batch_size=8, shuffle=False,
        captions="first", reversed_twins=True,
    )
    batches = list(dataset)
    assert len(batches) == 1
    _check_batch(batches[0], preprocessor, videos, masks)


def test_streamed_features_reverse_the_twins_frames(tmp_path):
    from keras_pvc.datasets.features import features_dataset
    from keras_pvc.datasets.features import mask_path_for

    videos, masks = _videos()
    for clip, video, mask in zip(_clips(), videos, masks):
        path = os.path.join(tmp_path, clip.clip_id + ".npy")
        np.save(path, video)
        np.save(mask_path_for(path), mask)
    preprocessor = _preprocessor(_clips())
    for in_memory in (False, True):
        dataset = features_dataset(
            _clips(), tmp_path, preprocessor, batch_size=8, captions="first",
            shuffle=False, in_memory=in_memory, reversed_twins=True,
        )
        batches = list(dataset)
        assert len(batches) == 1
        _check_batch(batches[0], preprocessor, videos, masks)


@pytest.mark.slow
def test_train_run_with_reversed_twins(tmp_path, capsys):
    """A run with the knob on trains (cross-entropy and self-critical, whose
    rewards use the twins' own references) and says how many twins it made."""
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.datasets.procedural import generate_procedural_dataset
    from keras_pvc.training.runs import train_run

    root = str(tmp_path / "data")
    generate_procedural_dataset(root, num_clips=16, num_frames=4, seed=3)
    clips = load_msvd(root)
    overrides = {
        "hidden_dim": 16, "embedding_dim": 8, "graph": None, "batch_size": 8,
        "num_frames": 4, "reversed_twins": [["clockwise", "anticlockwise"]],
    }
    summary = train_run(clips, str(tmp_path / "run"), overrides=overrides, epochs=1,
                        rl_epochs=1, verbose=1)
    output = capsys.readouterr().out
    train = [clip for clip in clips if clip.split == "train"]
    twins = len(reversed_twins(train)[0]) - len(train)
    assert twins > len(train) // 2  # most procedural scenes move
    assert f"Reversed twins: {twins} of {len(train)} training clips" in output
    assert summary["overrides"]["reversed_twins"] == overrides["reversed_twins"]
    from keras_pvc.models import VideoCaptioner

    model = VideoCaptioner.from_preset(str(tmp_path / "run" / "model"))
    vocabulary = set(model.preprocessor.vocabulary)
    twins_text = [text for clip in reversed_twins(train)[0] for text in clip.references]
    twin_words = {word for text in twins_text for word in text.split()}
    assert twin_words <= vocabulary, twin_words - vocabulary
