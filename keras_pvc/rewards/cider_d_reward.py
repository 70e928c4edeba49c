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


class CiderDReward:
    """CIDEr-D of token-id captions, computed in the TensorFlow graph.

    The same numbers as coco-caption's CIDEr-D (sigma 6, clipped counts, ×10,
    n = 1..4, its bigram-count "length" in the Gaussian penalty) with
    document frequencies from training references, as self-critical
    sequence training uses it. n-grams are coded exactly as int64 numbers in
    base `vocabulary_size` (no hashing, no collisions), and the reward runs
    under `tf.function`, in a Keras `train_step`, and with XLA.

    Two exact computations give the same numbers (to float rounding):

    - default: the batch's n-gram occurrences become flat entries; one
      `tf.unique` numbers its distinct n-grams, whose document frequencies
      come from a `tf.lookup.StaticHashTable` (once per distinct n-gram), one
      `tf.unique_with_counts` gives each caption's distinct n-grams and counts
      (references once per batch, not per candidate), and each reference's
      counts of the n-grams its video's candidates hold are scattered into a
      small table the candidates gather from. Dynamic shapes: not for XLA.
    - `xla_compatible=True`: fixed shapes, for `jit_compile=True`. Document
      frequencies come from an exact bucketed table (`code % num_buckets`,
      each bucket's codes contiguous: two gathers per lookup), and every
      candidate n-gram is compared with every same-order n-gram of its
      video's references.

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
        xla_compatible: bool. Use the fixed-shape computation that XLA
            compiles (for `jit_compile=True`) instead of the default one
            (`tf.unique`, hash table), which XLA cannot compile.

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

    # The default path joins references to candidates through a dense
    # (video, candidate n-gram) map up to this size, else through a tf.unique.
    _max_key_map_size = 1 << 22

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
        # Exact lookup table: the codes bucketed by `code % num_buckets`
        # (one bucket per code on average), each bucket's codes contiguous.
        # A code can only sit in its own bucket, so a lookup compares the
        # `bucket_window` entries from its bucket's start: one gather of the
        # bucket start, one of a short contiguous window, no collisions, and
        # it compiles with XLA.
        log_frequency = np.log(np.maximum(1.0, counts))
        # Odd bucket counts mix the base-V digits; keep the one with the
        # shortest window among a few (about 8 for MSVD's 546k codes).
        best = None
        for num_buckets in (codes.size | 1, (codes.size + 2) | 1, (2 * codes.size) | 1):
            sizes = np.bincount(codes % num_buckets, minlength=num_buckets)
            window = int(sizes.max()) if codes.size else 1
            if best is None or window < best[1]:
                best = (num_buckets, window, sizes)
        self._num_buckets, self._bucket_window, bucket_sizes = best
        bucket = codes % self._num_buckets
        order = np.lexsort((codes, bucket))
        starts = np.concatenate([[0], np.cumsum(bucket_sizes)[:-1]]).astype(np.int32)
        self._bucket_start = tf.constant(starts, tf.int32)
        # Padding past the end keeps every window inside the table; -1 is no code.
        self._bucket_codes = tf.constant(
            np.append(codes[order], np.full(self._bucket_window, -1, np.int64)), tf.int64
        )
        self._bucket_log_frequency = tf.constant(
            np.append(log_frequency[order], np.zeros(self._bucket_window)), dtype=self.dtype
        )
        self._hash_table = None
        if not self.xla_compatible and codes.size:
            # Without XLA a hash table is faster still (XLA cannot compile it).
            self._hash_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(codes, tf.int64), tf.constant(log_frequency, self.dtype)
                ),
                default_value=tf.constant(0.0, self.dtype),
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
        size = tf.shape(token_ids)[-1]
        positions = tf.range(size)
        first_end = tf.reduce_min(tf.where(is_end, positions[None, :], size), axis=-1)
        before_end = positions[None, :] < first_end[:, None]
        keep = tf.logical_and(before_end, tf.not_equal(token_ids, self.bos_id))
        order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=-1, stable=True)
        compact = tf.gather(token_ids, order, batch_dims=1)
        lengths = tf.reduce_sum(tf.cast(keep, tf.int32), axis=-1)
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
        """log(max(1, document frequency)) of int64 codes >= 0 (0 when unseen)."""
        if self._hash_table is not None and not self.xla_compatible:
            return self._hash_table.lookup(codes)
        bucket = tf.cast(tf.math.floormod(codes, self._num_buckets), tf.int32)
        window = tf.gather(self._bucket_start, bucket)[..., None] + tf.range(self._bucket_window)
        found = tf.equal(tf.gather(self._bucket_codes, window), codes[..., None])
        values = tf.gather(self._bucket_log_frequency, window)
        return tf.reduce_sum(tf.where(found, values, tf.zeros_like(values)), axis=-1)

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
        # Invalid positions get distinct negative codes: they match nothing else.
        codes = tf.where(valid, codes, -1 - tf.range(size, dtype=codes.dtype)[None, :])
        same = tf.equal(codes[:, :, None], codes[:, None, :])
        term_frequency = tf.cast(tf.reduce_sum(tf.cast(same, tf.int32), axis=-1), self.dtype)
        lower = tf.range(size)[:, None] > tf.range(size)[None, :]
        earlier = tf.reduce_any(tf.logical_and(same, lower[None]), axis=-1)
        first = tf.cast(tf.logical_and(valid, tf.logical_not(earlier)), self.dtype)
        norm = tf.sqrt(tf.reduce_sum(first * tf.square(term_frequency * weights), axis=-1))
        return term_frequency, first, norm

    def _dense_similarity(
        self, candidates, candidate_lengths, references, reference_lengths,
        video_index, batch_size, max_refs,
    ):
        """Sum over orders of cosine similarities `(num_candidates, max_refs)`, fixed shapes.

        Static shapes for XLA: every candidate n-gram is compared with every
        n-gram of the same order of its video's references.
        """
        num_candidates = tf.shape(candidates)[0]
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
            reference_tf = tf.cast(tf.reduce_sum(tf.cast(matches, tf.int32), axis=-1), self.dtype)
            clipped = tf.minimum(candidate_tf[:, None, :], reference_tf) * reference_tf
            numerator = tf.reduce_sum(
                (candidate_first * tf.square(candidate_weights))[:, None, :] * clipped, axis=-1
            )
            similarity += tf.math.divide_no_nan(numerator, candidate_norm[:, None] * reference_norm)
        return similarity

    def _sparse_similarity(self, compact, lengths, num_candidates, video_index, batch_size, max_refs):
        """`_dense_similarity`'s numbers, from the distinct n-grams only.

        `compact` holds the candidates' rows, then the `batch_size *
        max_refs` references'. All n-gram positions become flat entries; one
        `tf.unique` numbers the batch's distinct n-grams (document
        frequencies are looked up once for each), one
        `tf.unique_with_counts` finds the distinct (caption, n-gram) pairs
        and their counts. Each reference's counts of the n-grams its video's
        candidates hold are scattered into a small `(distinct (video,
        n-gram) of the candidates, max_refs)` table that the candidate pairs
        gather from, so nothing is compared candidate × reference × position.
        """
        max_order = self.max_order
        num_rows = tf.shape(compact, out_type=tf.int64)[0]
        num_candidates = tf.cast(num_candidates, tf.int64)
        batch_size = tf.cast(batch_size, tf.int64)
        max_refs = tf.cast(max_refs, tf.int64)
        codes, valids, orders = [], [], []
        for order in range(1, max_order + 1):
            order_codes, valid = self._ngrams(compact, lengths, order)
            codes.append(order_codes)
            valids.append(valid)
            orders.append(tf.fill([tf.shape(order_codes)[-1]], tf.constant(order - 1, tf.int64)))
        where = tf.where(tf.concat(valids, axis=1))  # (entries, 2): row, position; row-major
        code = tf.gather_nd(tf.concat(codes, axis=1), where)
        segment = where[:, 0] * max_order + tf.gather(tf.concat(orders, axis=0), where[:, 1])
        # Distinct n-grams of the batch. Candidates' rows come first, so their
        # n-grams' ids are below `num_candidate_codes`.
        distinct_codes, code_id = tf.unique(code, out_idx=tf.int64)
        num_codes = tf.size(distinct_codes, out_type=tf.int64)
        candidate_entries = tf.reduce_sum(tf.cast(where[:, 0] < num_candidates, tf.int32))
        num_candidate_codes = tf.reduce_max(tf.concat([code_id[:candidate_entries], [-1]], 0)) + 1
        weight = self._log_num_documents - self._log_frequency_of(distinct_codes)
        # Distinct (caption, order, n-gram) with counts; the candidates' first.
        pairs, _, count = tf.unique_with_counts(segment * num_codes + code_id, out_idx=tf.int32)
        segment, pair_id = pairs // num_codes, pairs % num_codes
        count = tf.cast(count, self.dtype)
        pair_weight = tf.gather(weight, pair_id)
        norm = tf.sqrt(tf.math.unsorted_segment_sum(
            tf.square(count * pair_weight), segment, num_rows * max_order
        ))
        norm = tf.reshape(norm, [-1, max_order])
        candidate_norm, reference_norm = norm[:num_candidates], norm[num_candidates:]
        candidate_pairs = tf.reduce_sum(tf.cast(segment < num_candidates * max_order, tf.int32))
        candidate_segment, reference_segment = segment[:candidate_pairs], segment[candidate_pairs:]
        candidate_id, reference_id = pair_id[:candidate_pairs], pair_id[candidate_pairs:]
        candidate_count, reference_count = count[:candidate_pairs], count[candidate_pairs:]
        candidate_weight = pair_weight[:candidate_pairs]
        # Rows of the table: the distinct (video, n-gram) of the candidates,
        # found for the references from a dense (video, candidate n-gram) map.
        video = tf.cast(video_index, tf.int64)
        candidate_key = tf.gather(video, candidate_segment // max_order) * num_candidate_codes + candidate_id
        keys, candidate_table_row = tf.unique(candidate_key, out_idx=tf.int64)
        num_table_rows = tf.size(keys, out_type=tf.int64)
        reference_row = reference_segment // max_order - num_candidates
        reference_video, reference_slot = reference_row // max_refs, reference_row % max_refs
        held = reference_id < num_candidate_codes
        reference_key = reference_video * num_candidate_codes + tf.where(held, reference_id, 0)

        def by_map():
            key_map = tf.scatter_nd(
                keys[:, None], tf.range(1, num_table_rows + 1), [batch_size * num_candidate_codes]
            )
            return tf.where(held, tf.gather(key_map, reference_key), 0) - 1

        def by_unique():  # linear in the entries, for batches too large for the map
            _, key_id = tf.unique(tf.concat([keys, reference_key], axis=0), out_idx=tf.int64)
            key_id = key_id[num_table_rows:]
            return tf.where(tf.logical_and(held, key_id < num_table_rows), key_id, -1)

        reference_table_row = tf.cond(
            batch_size * num_candidate_codes <= self._max_key_map_size, by_map, by_unique
        )
        dropped = num_table_rows * max_refs
        table = tf.math.unsorted_segment_sum(
            reference_count,
            tf.where(
                reference_table_row >= 0, reference_table_row * max_refs + reference_slot, dropped
            ),
            dropped + 1,
        )
        table = tf.reshape(table[:-1], [-1, max_refs])
        reference_tf = tf.gather(table, candidate_table_row)  # (candidate pairs, max_refs)
        clipped = tf.minimum(candidate_count[:, None], reference_tf) * reference_tf
        numerator = tf.math.unsorted_segment_sum(
            tf.square(candidate_weight)[:, None] * clipped, candidate_segment,
            num_candidates * max_order,
        )
        numerator = tf.reshape(numerator, [-1, max_order, max_refs])
        reference_norm = tf.gather(tf.reshape(reference_norm, [batch_size, max_refs, max_order]), video)
        similarity = tf.math.divide_no_nan(
            numerator, candidate_norm[:, :, None] * tf.transpose(reference_norm, [0, 2, 1])
        )
        return tf.reduce_sum(similarity, axis=1)

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
        if self.xla_compatible:
            candidates, candidate_lengths = self._compact(candidate_ids)
            references, reference_lengths = self._compact(flat_references)
        else:
            # One pass over candidates and references together (fewer ops).
            length = tf.maximum(tf.shape(candidate_ids)[1], tf.shape(flat_references)[1])
            rows = tf.concat([
                tf.pad(tf.cast(ids, tf.int64), [[0, 0], [0, length - tf.shape(ids)[1]]],
                       constant_values=self.pad_id)
                for ids in (candidate_ids, flat_references)
            ], axis=0)
            compact, lengths = self._compact(rows)
            candidate_lengths, reference_lengths = lengths[:num_candidates], lengths[num_candidates:]
        # coco-caption's "length" is the number of bigrams.
        candidate_bigrams = tf.cast(tf.maximum(candidate_lengths - 1, 0), self.dtype)
        reference_bigrams = tf.cast(tf.maximum(reference_lengths - 1, 0), self.dtype)
        reference_bigrams = tf.gather(tf.reshape(reference_bigrams, [batch_size, max_refs]), video_index)
        delta = candidate_bigrams[:, None] - reference_bigrams
        penalty = tf.exp(-tf.square(delta) / (2.0 * self.sigma**2))

        if self.xla_compatible:
            similarity = self._dense_similarity(
                candidates, candidate_lengths, references, reference_lengths,
                video_index, batch_size, max_refs,
            )
        else:
            similarity = self._sparse_similarity(
                compact, lengths, num_candidates, video_index, batch_size, max_refs
            )
        scores = similarity / float(self.max_order) * penalty
        present = tf.gather(present, video_index)
        num_references = tf.reduce_sum(present, axis=-1)
        return 10.0 * tf.math.divide_no_nan(tf.reduce_sum(scores * present, axis=-1), num_references)
