"""CIDEr-D of sampled token ids, inside the TensorFlow graph."""

import numpy as np
import tensorflow as tf

from keras_pvc.rewards.token_ids import BOS_ID
from keras_pvc.rewards.token_ids import EOS_ID
from keras_pvc.rewards.token_ids import PAD_ID
from keras_pvc.rewards.token_ids import check_vocabulary_size
from keras_pvc.rewards.token_ids import clean_token_ids
from keras_pvc.rewards.token_ids import ngram_codes
from keras_pvc.rewards.token_ids import reference_rows


def cider_d_document_frequency(
    train_reference_ids, vocabulary_size, max_order=4, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID
):
    """Document frequencies of the n-grams of training references, as n-gram codes.

    Args:
        train_reference_ids: the training references as token ids: a padded
            int array `(num_clips, max_refs, length)` (all-pad rows are
            missing references), or a list (clips) of lists of id sequences.
        vocabulary_size: int. Token ids are below it.
        max_order: int. The longest n-gram.
        pad_id: int.
        bos_id: int.
        eos_id: int.

    Returns:
        A tuple `(codes, counts, num_documents)`: sorted int64 n-gram codes,
        int64 numbers of clips whose references hold each, and the number of
        clips.

    Example:

    >>> codes, counts, n = cider_d_document_frequency([[[2, 5, 6, 3]], [[5, 0]]], 10)
    >>> n, dict(zip(codes.tolist(), counts.tolist()))
    (2, {5: 2, 6: 1, 56: 1})
    """
    check_vocabulary_size(vocabulary_size, max_order)
    per_clip_codes = []
    for clip_reference_ids in train_reference_ids:
        clip_codes = [
            ngram_codes(clean_token_ids(row, pad_id, bos_id, eos_id), vocabulary_size, max_order)
            for row in reference_rows(clip_reference_ids, pad_id)
        ]
        if clip_codes:
            per_clip_codes.append(np.unique(np.concatenate(clip_codes)))
        else:
            per_clip_codes.append(np.zeros(0, dtype=np.int64))
    if not per_clip_codes:
        raise ValueError("train_reference_ids holds no clips.")
    codes, counts = np.unique(np.concatenate(per_clip_codes), return_counts=True)
    return codes.astype(np.int64), counts.astype(np.int64), len(per_clip_codes)


def _lower_triangle(size, dtype):
    """`mask[i, j] = 1` where `j < i`."""
    ones = tf.ones((size, size), dtype)
    return tf.linalg.band_part(ones, -1, 0) - tf.linalg.band_part(ones, 0, 0)


class CiderDReward:
    """CIDEr-D of token-id captions, computed in the TensorFlow graph.

    The same numbers as coco-caption's CIDEr-D (sigma 6, clipped counts, ×10,
    n = 1..4, its bigram-count "length" in the Gaussian penalty) with
    document frequencies from training references, as self-critical
    sequence training uses it. n-grams are coded exactly as int64 numbers in
    base `vocabulary_size` (no hashing, no collisions) and their document
    frequencies looked up by binary search in a sorted table, so the reward
    runs under `tf.function`, in a Keras `train_step`, and with XLA.

    Token ids: `pad_id` (0) pads, `bos_id` (2) is ignored, a caption ends
    at its first `eos_id` (3) or pad; every other id (`<unk>` included) is a
    word. A reference row with no non-pad token is a missing reference.

    Args:
        document_frequency_codes: int64 array. Sorted n-gram codes.
        document_frequency_counts: int array. Clips holding each n-gram.
        num_documents: int. The number of training clips.
        vocabulary_size: int. Token ids are below it (at most 55108).
        sigma: float. Width of the Gaussian length penalty.
        max_order: int. The longest n-gram.
        pad_id: int.
        bos_id: int.
        eos_id: int.
        dtype: str. Float type of the arithmetic.
        xla_compatible: bool. Look document frequencies up with a fixed-depth
            binary search that XLA compiles (for `jit_compile=True`), instead
            of `tf.unique` + `tf.searchsorted`, which are faster without XLA.

    Call arguments:
        candidate_ids: int tensor `(num_candidates, length)`, e.g. K sampled
            captions per video, video-major (`b * K + k`).
        reference_ids: int tensor `(batch_size, max_refs, ref_length)`.
        video_index: optional int tensor `(num_candidates,)`: the video
            (row of `reference_ids`) of each candidate. Defaults to
            `num_candidates // batch_size` consecutive candidates per video.

    Returns:
        A float tensor `(num_candidates,)`: one reward per candidate.

    Example:

    >>> train_refs = [[[2, 5, 6, 7, 3], [5, 6, 8]], [[9, 10, 3], [9, 11, 3]]]
    >>> reward_fn = CiderDReward.from_references(train_refs, vocabulary_size=12)
    >>> sampled = tf.constant([[2, 5, 6, 7, 3], [9, 3, 0, 0, 0]])
    >>> references = tf.constant([[[5, 6, 7, 3], [5, 6, 8, 0]]])
    >>> reward_fn(sampled, references).shape
    TensorShape([2])
    """

    def __init__(
        self,
        document_frequency_codes,
        document_frequency_counts,
        num_documents,
        vocabulary_size,
        sigma=6.0,
        max_order=4,
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        dtype="float32",
        xla_compatible=False,
    ):
        check_vocabulary_size(vocabulary_size, max_order)
        codes = np.asarray(document_frequency_codes, dtype=np.int64).reshape(-1)
        counts = np.asarray(document_frequency_counts, dtype=np.float64).reshape(-1)
        if codes.shape != counts.shape:
            raise ValueError("document_frequency_codes and _counts differ in length.")
        if codes.size and np.any(np.diff(codes) <= 0):
            raise ValueError("document_frequency_codes must be sorted and unique.")
        if int(num_documents) < 1:
            raise ValueError("num_documents must be at least 1.")
        self.vocabulary_size = int(vocabulary_size)
        self.num_documents = int(num_documents)
        self.sigma = float(sigma)
        self.max_order = int(max_order)
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.dtype = tf.as_dtype(dtype)
        self.xla_compatible = bool(xla_compatible)
        # The table is padded to a power of two with a sentinel above every
        # code, so a branchless binary search of fixed depth always lands in it.
        # (tf.searchsorted would do, but XLA lowers it to a dense comparison.)
        table_size = 1 << int(codes.size).bit_length()
        padding = table_size - codes.size
        self._search_depth = table_size.bit_length() - 1
        self._codes = tf.constant(np.append(codes, np.full(padding, np.iinfo(np.int64).max)))
        self._log_frequency = tf.constant(
            np.append(np.log(np.maximum(1.0, counts)), np.zeros(padding)), dtype=self.dtype
        )
        self._log_num_documents = tf.constant(np.log(float(num_documents)), dtype=self.dtype)

    @classmethod
    def from_references(cls, train_reference_ids, vocabulary_size, **kwargs):
        """Builds the reward from training references given as token ids.

        Args:
            train_reference_ids: see `cider_d_document_frequency`.
            vocabulary_size: int.
            **kwargs: other `CiderDReward` arguments.
        """
        codes, counts, num_documents = cider_d_document_frequency(
            train_reference_ids,
            vocabulary_size,
            max_order=kwargs.get("max_order", 4),
            pad_id=kwargs.get("pad_id", PAD_ID),
            bos_id=kwargs.get("bos_id", BOS_ID),
            eos_id=kwargs.get("eos_id", EOS_ID),
        )
        return cls(codes, counts, num_documents, vocabulary_size, **kwargs)

    # --- graph pieces -------------------------------------------------------

    def _compact(self, token_ids):
        """Word ids moved to the front (pad after), and the caption lengths."""
        token_ids = tf.cast(token_ids, tf.int64)
        is_end = tf.logical_or(
            tf.equal(token_ids, self.pad_id), tf.equal(token_ids, self.eos_id)
        )
        before_end = tf.equal(tf.cumsum(tf.cast(is_end, tf.int32), axis=-1), 0)
        keep = tf.logical_and(before_end, tf.not_equal(token_ids, self.bos_id))
        order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=-1, stable=True)
        compact = tf.gather(token_ids, order, batch_dims=1)
        lengths = tf.reduce_sum(tf.cast(keep, tf.int32), axis=-1)
        positions = tf.range(tf.shape(token_ids)[-1])
        compact = tf.where(positions[None, :] < lengths[:, None], compact, 0)
        return compact, lengths

    def _ngrams(self, compact, lengths, order):
        """Codes `(N, L - order + 1)` of the n-grams of one order, and their validity."""
        length = tf.shape(compact)[-1]
        count = tf.maximum(length - order + 1, 0)
        codes = tf.zeros([tf.shape(compact)[0], count], tf.int64)
        for offset in range(order):
            codes = codes * self.vocabulary_size + compact[:, offset : offset + count]
        valid = tf.range(count)[None, :] + order <= lengths[:, None]
        return codes, valid

    def _log_frequency_of(self, codes):
        """log(max(1, document frequency)) of 1-D int64 codes (0 when unseen)."""
        if self.xla_compatible:
            position = tf.zeros_like(codes, dtype=tf.int32)
            for depth in reversed(range(self._search_depth)):
                step = 1 << depth
                below = tf.less(tf.gather(self._codes, position + step - 1), codes)
                position = tf.where(below, position + step, position)
            found = tf.equal(tf.gather(self._codes, position), codes)
            return tf.where(found, tf.gather(self._log_frequency, position), 0.0)
        # Captions of a batch share most n-grams: look each distinct one up once.
        unique_codes, inverse = tf.unique(codes, out_idx=tf.int32)
        position = tf.searchsorted(self._codes, unique_codes, side="left", out_type=tf.int32)
        found = tf.equal(tf.gather(self._codes, position), unique_codes)
        log_frequency = tf.where(found, tf.gather(self._log_frequency, position), 0.0)
        return tf.gather(log_frequency, inverse)

    def _idf(self, code_tensors):
        """The idf weights of several code tensors, in one lookup."""
        flat = tf.concat([tf.reshape(codes, [-1]) for codes in code_tensors], axis=0)
        weights = self._log_num_documents - self._log_frequency_of(flat)
        sizes = [tf.size(codes) for codes in code_tensors]
        return [
            tf.reshape(part, tf.shape(codes))
            for part, codes in zip(tf.split(weights, sizes), code_tensors)
        ]

    def _self_statistics(self, codes, valid, weights):
        """Term frequencies, first-occurrence masks and tf-idf norms of captions."""
        size = tf.shape(codes)[-1]
        same = tf.logical_and(
            tf.equal(codes[:, :, None], codes[:, None, :]),
            tf.logical_and(valid[:, :, None], valid[:, None, :]),
        )
        same = tf.cast(same, self.dtype)
        term_frequency = tf.reduce_sum(same, axis=-1)
        earlier = tf.reduce_sum(same * _lower_triangle(size, self.dtype)[None], axis=-1)
        first = tf.cast(tf.logical_and(valid, tf.equal(earlier, 0.0)), self.dtype)
        norm = tf.sqrt(tf.reduce_sum(first * tf.square(term_frequency * weights), axis=-1))
        return term_frequency, first, norm

    def __call__(self, candidate_ids, reference_ids, video_index=None):
        candidate_ids = tf.convert_to_tensor(candidate_ids)
        reference_ids = tf.convert_to_tensor(reference_ids)
        if candidate_ids.shape.rank != 2:
            raise ValueError(f"candidate_ids must be (num_candidates, length), got {candidate_ids.shape}.")
        if reference_ids.shape.rank != 3:
            raise ValueError(f"reference_ids must be (batch, max_refs, length), got {reference_ids.shape}.")
        if not candidate_ids.dtype.is_integer or not reference_ids.dtype.is_integer:
            raise ValueError("candidate_ids and reference_ids must be integer token ids.")
        num_candidates = tf.shape(candidate_ids)[0]
        batch_size, max_refs = tf.shape(reference_ids)[0], tf.shape(reference_ids)[1]
        if video_index is None:
            tf.debugging.assert_equal(
                num_candidates % batch_size, 0,
                message="num_candidates must be a multiple of the batch size without video_index.",
            )
            video_index = tf.repeat(tf.range(batch_size), num_candidates // batch_size)
        video_index = tf.cast(video_index, tf.int32)
        for ids in (candidate_ids, reference_ids):
            tf.debugging.assert_less(
                tf.cast(ids, tf.int64), tf.constant(self.vocabulary_size, tf.int64),
                message="token id >= vocabulary_size",
            )
            tf.debugging.assert_non_negative(ids, message="negative token id")

        flat_references = tf.reshape(reference_ids, [batch_size * max_refs, -1])
        present = tf.cast(tf.reduce_any(tf.not_equal(flat_references, self.pad_id), -1), self.dtype)
        present = tf.reshape(present, [batch_size, max_refs])
        candidates, candidate_lengths = self._compact(candidate_ids)
        references, reference_lengths = self._compact(flat_references)
        # coco-caption's "length" is the number of bigrams.
        candidate_bigrams = tf.cast(tf.maximum(candidate_lengths - 1, 0), self.dtype)
        reference_bigrams = tf.cast(tf.maximum(reference_lengths - 1, 0), self.dtype)
        reference_bigrams = tf.gather(tf.reshape(reference_bigrams, [batch_size, max_refs]), video_index)
        delta = candidate_bigrams[:, None] - reference_bigrams
        penalty = tf.exp(-tf.square(delta) / (2.0 * self.sigma**2))

        orders = range(1, self.max_order + 1)
        candidate_ngrams = [self._ngrams(candidates, candidate_lengths, order) for order in orders]
        reference_ngrams = [self._ngrams(references, reference_lengths, order) for order in orders]
        weights = self._idf([codes for codes, _ in candidate_ngrams + reference_ngrams])
        similarity = tf.zeros([num_candidates, max_refs], self.dtype)
        for index in range(self.max_order):
            candidate_codes, candidate_valid = candidate_ngrams[index]
            reference_codes, reference_valid = reference_ngrams[index]
            candidate_weights = weights[index]
            reference_weights = weights[self.max_order + index]
            candidate_tf, candidate_first, candidate_norm = self._self_statistics(
                candidate_codes, candidate_valid, candidate_weights
            )
            _, _, reference_norm = self._self_statistics(
                reference_codes, reference_valid, reference_weights
            )
            reference_norm = tf.gather(tf.reshape(reference_norm, [batch_size, max_refs]), video_index)
            # Invalid positions get codes below 0 that never match a candidate's.
            reference_codes = tf.where(reference_valid, reference_codes, -1)
            grams = tf.shape(reference_codes)[-1]
            reference_codes = tf.gather(tf.reshape(reference_codes, [batch_size, max_refs, grams]), video_index)
            # (candidate, reference, candidate gram, reference gram)
            matches = tf.equal(candidate_codes[:, None, :, None], reference_codes[:, :, None, :])
            reference_tf = tf.reduce_sum(tf.cast(matches, self.dtype), axis=-1)
            clipped = tf.minimum(candidate_tf[:, None, :], reference_tf) * reference_tf
            numerator = tf.reduce_sum(
                (candidate_first * tf.square(candidate_weights))[:, None, :] * clipped, axis=-1
            )
            similarity += tf.math.divide_no_nan(numerator, candidate_norm[:, None] * reference_norm)
        scores = similarity / float(self.max_order) * penalty
        present = tf.gather(present, video_index)
        num_references = tf.reduce_sum(present, axis=-1)
        return 10.0 * tf.math.divide_no_nan(tf.reduce_sum(scores * present, axis=-1), num_references)
