"""ROUGE-L exactly as coco-caption's `Rouge` scorer computes it."""

import numpy as np


def longest_common_subsequence(first, second):
    """Length of the longest common subsequence of two token lists.

    Args:
        first: list of str.
        second: list of str.

    Returns:
        int.

    Example:

    >>> longest_common_subsequence("a b c d".split(), "a c d e".split())
    3
    """
    if len(first) < len(second):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for column, other in enumerate(second):
            if token == other:
                current.append(previous[column] + 1)
            else:
                current.append(max(previous[column + 1], current[column]))
        previous = current
    return previous[-1]


def rouge_l_sentence(prediction, references, beta=1.2):
    """ROUGE-L F-score of one tokenized prediction against its references.

    As coco-caption: precision and recall are each maximised over the
    references, then combined with `beta` (1.2). Tokens are split on single
    spaces, as coco-caption splits them.

    Args:
        prediction: str. A tokenized caption.
        references: list of str. Tokenized references.
        beta: float. Weight of recall against precision.

    Returns:
        float.

    Example:

    >>> round(rouge_l_sentence("a man runs", ["a man is running"]), 4)
    0.5571
    """
    prediction_tokens = prediction.split(" ")
    best_precision = best_recall = 0.0
    for reference in references:
        reference_tokens = reference.split(" ")
        common = longest_common_subsequence(reference_tokens, prediction_tokens)
        best_precision = max(best_precision, common / float(len(prediction_tokens)))
        best_recall = max(best_recall, common / float(len(reference_tokens)))
    if best_precision == 0 or best_recall == 0:
        return 0.0
    return ((1 + beta**2) * best_precision * best_recall) / float(
        best_recall + beta**2 * best_precision
    )


def corpus_rouge_l(references, predictions, beta=1.2):
    """Mean ROUGE-L over clips and the per-clip scores, as coco-caption.

    Args:
        references: list of list of str. Tokenized references per clip.
        predictions: list of str. One tokenized prediction per clip.
        beta: float. Weight of recall against precision.

    Returns:
        A tuple `(mean_score, per_clip_scores)` (float, float64 array).

    Example:

    >>> corpus_rouge_l([["a dog"]], ["a dog"])[0]
    1.0
    """
    per_clip = np.array(
        [rouge_l_sentence(p, refs, beta) for p, refs in zip(predictions, references)],
        dtype=np.float64,
    )
    return float(np.mean(per_clip)), per_clip
