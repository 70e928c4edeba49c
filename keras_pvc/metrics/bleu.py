"""BLEU-1..4 exactly as coco-caption's `BleuScorer` computes them."""

import collections

import numpy as np

# coco-caption's smoothing constants: `tiny` keeps a zero match count from
# giving log(0), `small` keeps an empty guess from dividing by zero.
_TINY = 1e-15
_SMALL = 1e-9


def ngram_counts(words, max_order=4):
    """Counts the n-grams of orders 1..`max_order` of a list of words.

    Args:
        words: list of str. The tokens of one caption.
        max_order: int. The longest n-gram.

    Returns:
        `collections.Counter` mapping n-gram tuples to counts.

    Example:

    >>> ngram_counts(["a", "a"], max_order=2)
    Counter({('a',): 2, ('a', 'a'): 1})
    """
    counts = collections.Counter()
    for order in range(1, max_order + 1):
        for start in range(len(words) - order + 1):
            counts[tuple(words[start : start + order])] += 1
    return counts


def _match_statistics(prediction, references, max_order):
    words = prediction.split()
    prediction_length = len(words)
    reference_lengths = []
    max_reference_counts = {}
    for reference in references:
        reference_words = reference.split()
        reference_lengths.append(len(reference_words))
        for ngram, count in ngram_counts(reference_words, max_order).items():
            max_reference_counts[ngram] = max(max_reference_counts.get(ngram, 0), count)
    # The closest reference length; ties go to the shorter reference.
    closest_length = min((abs(length - prediction_length), length) for length in reference_lengths)[1]
    correct = [0] * max_order
    for ngram, count in ngram_counts(words, max_order).items():
        correct[len(ngram) - 1] += min(max_reference_counts.get(ngram, 0), count)
    guess = [max(0, prediction_length - order + 1) for order in range(1, max_order + 1)]
    return prediction_length, closest_length, correct, guess


def _bleu_from_counts(correct, guess, prediction_length, reference_length):
    """BLEU-1..n along the last axis from match counts, coco-caption style."""
    precision = (correct + _TINY) / (guess + _SMALL)
    max_order = precision.shape[-1]
    cumulative = np.cumprod(precision, axis=-1)
    bleu = cumulative ** (1.0 / np.arange(1, max_order + 1))
    ratio = (prediction_length + _TINY) / (reference_length + _SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        brevity_penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return bleu * brevity_penalty[..., None]


def corpus_bleu(references, predictions, max_order=4):
    """Corpus BLEU-1..`max_order` and per-clip BLEU, as coco-caption computes them.

    Uses the closest reference length for the brevity penalty and
    coco-caption's smoothing (1e-15 on matches, 1e-9 on guesses). Captions
    must already be tokenized (space-separated tokens).

    Args:
        references: list of list of str. Tokenized references per clip.
        predictions: list of str. One tokenized prediction per clip.
        max_order: int. The longest n-gram (4 for BLEU-4).

    Returns:
        A tuple `(corpus_scores, per_clip_scores)`: a list of `max_order`
        floats, and a float64 array of shape `(num_clips, max_order)`.

    Example:

    >>> corpus_bleu([["a man is running"]], ["a man is running"])[0][3]
    0.99999...
    """
    if len(references) != len(predictions):
        raise ValueError("references and predictions must have the same length.")
    statistics = [
        _match_statistics(prediction, clip_references, max_order)
        for prediction, clip_references in zip(predictions, references)
    ]
    prediction_lengths = np.array([s[0] for s in statistics], dtype=np.float64)
    reference_lengths = np.array([s[1] for s in statistics], dtype=np.float64)
    correct = np.array([s[2] for s in statistics], dtype=np.float64).reshape(-1, max_order)
    guess = np.array([s[3] for s in statistics], dtype=np.float64).reshape(-1, max_order)
    per_clip = _bleu_from_counts(correct, guess, prediction_lengths, reference_lengths)
    corpus = _bleu_from_counts(
        correct.sum(axis=0), guess.sum(axis=0), prediction_lengths.sum(), reference_lengths.sum()
    )
    return [float(value) for value in corpus], per_clip
