"""CIDEr-D as coco-caption computes it, in evaluation or reward mode."""

import collections
import math

import numpy as np

from keras_pvc.metrics.bleu import ngram_counts


def document_frequency(references, max_order=4):
    """Counts, for every n-gram, the clips whose references contain it.

    Args:
        references: list of list of str. Tokenized references per clip
            (for a reward: the whole training set).
        max_order: int. The longest n-gram.

    Returns:
        A tuple `(frequency, num_documents)`: a dict from n-gram tuples to
        the number of clips, and the number of clips.

    Example:

    >>> frequency, num_documents = document_frequency([["a dog"], ["a cat"]])
    >>> frequency[("a",)], num_documents
    (2, 2)
    """
    frequency = collections.Counter()
    for clip_references in references:
        ngrams = set()
        for reference in clip_references:
            ngrams.update(ngram_counts(reference.split(), max_order))
        frequency.update(ngrams)
    return dict(frequency), len(references)


class CiderD:
    """CIDEr-D scorer (coco-caption's `Cider`): sigma 6, clipped counts, ×10.

    In evaluation mode (no `frequency` given) the document frequencies come
    from the references being scored, as coco-caption does. In reward mode
    they come from a training corpus, as self-critical training does.

    Args:
        frequency: dict or None. n-gram tuple → number of clips, e.g. from
            `document_frequency(train_references)`.
        num_documents: int or None. The number of clips `frequency` counts.
        sigma: float. Width of the Gaussian length penalty.
        max_order: int. The longest n-gram.

    Example:

    >>> scorer = CiderD()
    >>> mean, per_clip = scorer.score([["a dog runs"], ["a cat sits"]],
    ...                               ["a dog runs", "a cat"])
    """

    def __init__(self, frequency=None, num_documents=None, sigma=6.0, max_order=4):
        if (frequency is None) != (num_documents is None):
            raise ValueError("Give both `frequency` and `num_documents`, or neither.")
        self.frequency = frequency
        self.num_documents = num_documents
        self.sigma = sigma
        self.max_order = max_order

    @classmethod
    def from_corpus(cls, references, **kwargs):
        """Builds a reward-mode scorer from training references (list of list of str)."""
        frequency, num_documents = document_frequency(references, kwargs.get("max_order", 4))
        return cls(frequency, num_documents, **kwargs)

    def _vector(self, counts, frequency, log_num_documents):
        vector = [dict() for _ in range(self.max_order)]
        norm = [0.0] * self.max_order
        for ngram, term_frequency in counts.items():
            idf = log_num_documents - np.log(max(1.0, frequency.get(ngram, 0.0)))
            order = len(ngram) - 1
            vector[order][ngram] = float(term_frequency) * idf
            norm[order] += vector[order][ngram] ** 2
        # coco-caption's "length" counts bigrams (its `n == 1` test), and the
        # length penalty uses it: reproduced here to match its numbers.
        length = sum(count for ngram, count in counts.items() if len(ngram) == 2)
        return vector, [math.sqrt(value) for value in norm], length

    def _similarity(self, prediction, reference):
        vector, norm, length = prediction
        reference_vector, reference_norm, reference_length = reference
        delta = float(length - reference_length)
        values = np.zeros(self.max_order)
        for order in range(self.max_order):
            for ngram, value in vector[order].items():
                reference_value = reference_vector[order].get(ngram, 0.0)
                values[order] += min(value, reference_value) * reference_value
            if norm[order] != 0 and reference_norm[order] != 0:
                values[order] /= norm[order] * reference_norm[order]
            values[order] *= np.e ** (-(delta**2) / (2 * self.sigma**2))
        return values

    def score(self, references, predictions):
        """Scores tokenized predictions against tokenized references.

        Args:
            references: list of list of str. Tokenized references per clip.
            predictions: list of str. One tokenized prediction per clip.

        Returns:
            A tuple `(mean_score, per_clip_scores)` (float, float64 array).
        """
        if len(references) != len(predictions):
            raise ValueError("references and predictions must have the same length.")
        frequency, num_documents = self.frequency, self.num_documents
        if frequency is None:
            frequency, num_documents = document_frequency(references, self.max_order)
        log_num_documents = np.log(float(num_documents))
        per_clip = []
        for prediction, clip_references in zip(predictions, references):
            prediction_vector = self._vector(
                ngram_counts(prediction.split(), self.max_order), frequency, log_num_documents
            )
            total = np.zeros(self.max_order)
            for reference in clip_references:
                reference_vector = self._vector(
                    ngram_counts(reference.split(), self.max_order), frequency, log_num_documents
                )
                total += self._similarity(prediction_vector, reference_vector)
            per_clip.append(np.mean(total) / len(clip_references) * 10.0)
        per_clip = np.array(per_clip, dtype=np.float64)
        return float(np.mean(per_clip)), per_clip
