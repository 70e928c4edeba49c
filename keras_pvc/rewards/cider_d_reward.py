"""CIDEr-D of sampled token ids in `keras.ops`: TensorFlow, JAX and PyTorch."""

import keras
import numpy as np
from keras import ops

from keras_pvc.rewards.token_ids import BOS_ID
from keras_pvc.rewards.token_ids import EOS_ID
from keras_pvc.rewards.token_ids import PAD_ID
from keras_pvc.rewards.token_ids import check_vocabulary_size
from keras_pvc.rewards.token_ids import clean_token_ids
from keras_pvc.rewards.token_ids import ngram_codes
from keras_pvc.rewards.token_ids import reference_rows

# Node ids are int32 on every backend (JAX runs without 64-bit ints).
_MAX_NODES = 2**31 - 2


def cider_d_document_frequency(
    train_reference_ids, vocabulary_size, max_order=4, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID
):
    """Document frequencies of the n-grams of training references, as n-gram codes.

    An n-gram `(w1, ..., wn)` of word ids is coded as the int64 number
    `w1 * V**(n-1) + ... + wn` in base `V = vocabulary_size`. Word ids are
    >= 1 (0 pads), so codes are exact and distinct for every order while
    `V**max_order < 2**63` (V <= 55108 for 4-grams).

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


def _ngram_trie(codes, counts, vocabulary_size, max_order):
    """The training n-grams as a trie of int32 node ids, built on the host.

    Node 0 is the empty n-gram; then come the 1-grams sorted by word, the
    2-grams sorted by (parent node, last word), and so on, so the children
    of every node are contiguous and sorted by word. The last node is
    "unseen": no children, document frequency 0. A prefix of a listed
    n-gram that is not listed itself is added with count 0 (the same idf as
    unseen), so every n-gram reaches its own node.

    Returns:
        A dict of numpy arrays: `child_start` (`num_nodes + 1`; the children
        of node p are `child_start[p]:child_start[p + 1]`), `node_word`,
        `node_count`, `unigram_node` (the node of each word id, `V` entries
        and one for "out of range" = unseen), and `search_steps`: per order
        n >= 2 the binary-search steps that cover the largest sibling block.
    """
    vocabulary_size = int(vocabulary_size)
    order_of = np.zeros(codes.shape, np.int64)
    bound = 1
    for order in range(1, max_order + 1):
        lower, bound = bound, bound * vocabulary_size
        order_of[(codes >= lower) & (codes < bound)] = order
    if np.any(order_of == 0):
        bad = codes[order_of == 0][0]
        raise ValueError(
            f"document_frequency_codes holds {bad}, not the code of a 1..{max_order}-gram "
            f"of word ids 1..{vocabulary_size - 1} (see cider_d_document_frequency)."
        )
    per_order = {order: (codes[order_of == order], counts[order_of == order])
                 for order in range(1, max_order + 1)}
    for order in range(max_order, 1, -1):  # close the set under prefixes
        prefixes = np.unique(per_order[order][0] // vocabulary_size)
        listed, listed_counts = per_order[order - 1]
        missing = np.setdiff1d(prefixes, listed, assume_unique=True)
        if missing.size:
            merged = np.concatenate([listed, missing])
            merged_counts = np.concatenate([listed_counts, np.zeros(missing.size)])
            by_code = np.argsort(merged, kind="stable")
            per_order[order - 1] = (merged[by_code], merged_counts[by_code])
    num_nodes = 1 + sum(per_order[order][0].size for order in per_order)
    if num_nodes + 1 > _MAX_NODES:
        raise ValueError(f"{num_nodes} n-grams do not fit int32 node ids.")
    unseen = num_nodes
    node_word = np.full(num_nodes + 1, -1, np.int64)
    node_count = np.zeros(num_nodes + 1, np.float64)
    parent = np.zeros(num_nodes - 1, np.int64)  # of nodes 1..num_nodes-1: non-decreasing
    first_node, search_steps = 1, {}
    parent_codes, parent_first = np.zeros(1, np.int64), 0  # the root "code" is 0
    for order in range(1, max_order + 1):
        order_codes, order_counts = per_order[order]
        nodes = slice(first_node, first_node + order_codes.size)
        node_word[nodes] = order_codes % vocabulary_size
        node_count[nodes] = order_counts
        parent[nodes.start - 1 : nodes.stop - 1] = parent_first + np.searchsorted(
            parent_codes, order_codes // vocabulary_size
        )
        if order >= 2:
            siblings = np.bincount(parent[nodes.start - 1 : nodes.stop - 1] - parent_first)
            search_steps[order] = int(siblings.max()).bit_length() if siblings.size else 0
        parent_codes, parent_first, first_node = order_codes, nodes.start, nodes.stop
    child_start = 1 + np.searchsorted(parent, np.arange(num_nodes + 2))
    child_start = np.minimum(child_start, num_nodes)  # unseen (and past it): no children
    unigram_node = np.full(vocabulary_size + 1, unseen, np.int64)
    unigrams = slice(1, 1 + per_order[1][0].size)
    unigram_node[node_word[unigrams]] = np.arange(unigrams.start, unigrams.stop)
    return {
        "child_start": child_start.astype(np.int32),
        "node_word": node_word.astype(np.int32),
        "node_count": node_count,
        "unigram_node": unigram_node.astype(np.int32),
        "search_steps": search_steps,
    }


def _larger(size, other_size):
    """The larger of two dimensions, static ints where both are."""
    if isinstance(size, int) and isinstance(other_size, int):
        return max(size, other_size)
    return ops.maximum(size, other_size)


def _ngram_equalities(unigram_equal, max_order):
    """Equality of n-grams from equality of words, for orders 1..`max_order`.

    `unigram_equal[..., i, j]` says word i equals word j; the n-grams at i
    and j are equal when the (n-1)-grams there are and the words at
    `i + n - 1` and `j + n - 1` are. Exact: no codes at all.
    """
    equalities = [unigram_equal]
    for order in range(2, max_order + 1):
        tail = unigram_equal[..., order - 1 :, order - 1 :]
        rows, columns = ops.shape(tail)[-2], ops.shape(tail)[-1]
        equalities.append(ops.logical_and(equalities[-1][..., :rows, :columns], tail))
    return equalities


class CiderDReward:
    """CIDEr-D of token-id captions in `keras.ops`, on TensorFlow, JAX and PyTorch.

    The same numbers as coco-caption's CIDEr-D (sigma 6, clipped counts, ×10,
    n = 1..4, its bigram-count "length" in the Gaussian penalty) with
    document frequencies from training references, as self-critical
    sequence training uses it. It runs eagerly, under `tf.function` (with
    `jit_compile=True` too), under `jax.jit` and in PyTorch: static shapes,
    no Python loop over the batch, no hash table, no `unique`.

    Exactness: no n-gram is ever hashed or coded on the device.

    - Which n-grams are equal (term frequencies, clipping against each
      reference, each distinct n-gram counted once in a norm) is decided
      word by word: the n-grams at two positions are equal when their
      n words are, from one pairwise word comparison.
    - Document frequencies come from a trie of the training n-grams built
      on the host: every n-gram node has an int32 id, the children of a
      node are contiguous and sorted by word. A caption's 1-gram nodes are
      one gather, its n-gram nodes a fixed-length binary search for the
      n-th word among the children of its (n-1)-gram node. An n-gram that
      is not in the trie (its prefix unseen, or the word not among the
      children) gets the "unseen" node: document frequency 0.
    So the reward is exact (to float rounding) for any non-negative int32
    token ids; ids >= `vocabulary_size` are words unseen in training (the
    computation marks positions past a caption's end with negative ids).
    `vocabulary_size` only bounds the host-side int64 codes of
    `cider_d_document_frequency` (`V**max_order < 2**63`: V <= 55108 for
    4-grams), and the trie holds fewer than 2**31 n-grams. The cost is
    dense: `num_candidates * max_refs * length * ref_length` booleans per
    order (1.9 M for 100 samples × 40 references × 22 tokens).

    On JAX the computation is `jax.jit`-compiled once per input shape
    (op-by-op JAX is slow); under an outer `jax.jit` it is inlined.

    Token ids: `pad_id` (0) pads, `bos_id` (2) is ignored, a caption ends
    at its first `eos_id` (3) or pad; every other id (`<unk>` included) is a
    word. A reference row with no non-pad token is a missing reference; a
    video with none gets reward 0.

    Build it outside any traced function (its tables are backend
    constants made in `__init__`).

    Args:
        document_frequency_codes: int64 array. Sorted n-gram codes, as
            `cider_d_document_frequency` returns.
        document_frequency_counts: int array. Clips holding each n-gram.
        num_documents: int. The number of training clips.
        vocabulary_size: int. Word ids of the codes are below it (at most
            55108 for 4-grams).
        sigma: float. Width of the Gaussian length penalty.
        max_order: int. The longest n-gram.
        pad_id: int.
        bos_id: int.
        eos_id: int.
        dtype: str. Float type of the arithmetic.
        xla_compatible: bool. Kept for compatibility and ignored: there is
            one computation and XLA compiles it.

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
    >>> sampled = np.array([[2, 5, 6, 7, 3], [9, 3, 0, 0, 0]])
    >>> references = np.array([[[5, 6, 7, 3], [5, 6, 8, 0]]])
    >>> tuple(reward_fn(sampled, references).shape)
    (2,)
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
        self.dtype = keras.backend.standardize_dtype(dtype)
        self.xla_compatible = bool(xla_compatible)
        trie = _ngram_trie(codes, counts, self.vocabulary_size, self.max_order)
        self._search_steps = trie["search_steps"]
        self._unseen_node = int(trie["node_word"].size - 1)
        # coco-caption's idf: log(N) - log(max(1, df)); unseen n-grams get log(N).
        idf = np.log(float(num_documents)) - np.log(np.maximum(1.0, trie["node_count"]))
        self._tables = {
            "child_start": ops.convert_to_tensor(trie["child_start"], "int32"),
            "node_word": ops.convert_to_tensor(trie["node_word"], "int32"),
            "unigram_node": ops.convert_to_tensor(trie["unigram_node"], "int32"),
            "node_idf": ops.convert_to_tensor(idf, self.dtype),
        }
        self._score_fn, self._idf_fn = self._score, self._idf_weights
        if keras.backend.backend() == "jax":
            # JAX runs op by op (one small compiled program per op and shape)
            # outside `jit`: compile the whole reward once per input shape.
            # The tables are arguments, not constants folded into the program.
            import jax

            self._score_fn, self._idf_fn = jax.jit(self._score), jax.jit(self._idf_weights)

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

    # --- pieces -------------------------------------------------------------

    def _compact(self, token_ids):
        """Word ids moved to the front (0 after), and the caption lengths.

        A caption ends at its first pad or `<eos>`; `<bos>` tokens before
        that are dropped. Word j goes to slot `cumsum(keep)[j] - 1`, written
        as a one-hot sum over positions (no sort, no scatter).
        """
        token_ids = ops.cast(token_ids, "int32")
        size = ops.shape(token_ids)[-1]
        positions = ops.arange(size, dtype="int32")
        is_end = ops.logical_or(
            ops.equal(token_ids, self.pad_id), ops.equal(token_ids, self.eos_id)
        )
        first_end = ops.min(ops.where(is_end, positions[None, :], size), axis=-1)
        keep = ops.logical_and(
            positions[None, :] < first_end[:, None], ops.not_equal(token_ids, self.bos_id)
        )
        slot = ops.cast(ops.cumsum(ops.cast(keep, "int32"), axis=-1), "int32") - 1
        # (row, slot, position): position j's word goes to its slot.
        goes_to = ops.logical_and(
            keep[:, None, :], ops.equal(slot[:, None, :], positions[None, :, None])
        )
        compact = ops.sum(ops.where(goes_to, token_ids[:, None, :], 0), axis=-1)
        compact = ops.cast(compact, "int32")
        lengths = ops.cast(ops.sum(ops.cast(keep, "int32"), axis=-1), "int32")
        return compact, lengths

    def _valid_masks(self, words, lengths):
        """Per order n, which of the `L - n + 1` n-gram positions lie in the caption."""
        masks = []
        for order in range(1, self.max_order + 1):
            count = ops.shape(words[:, order - 1 :])[1]
            starts = ops.arange(count, dtype="int32")
            masks.append(starts[None, :] + order <= lengths[:, None])
        return masks

    def _children(self, tables, parents, words, steps):
        """The node of `parent + word`: a binary search among the parent's children."""
        node_word = tables["node_word"]
        low = ops.take(tables["child_start"], parents)
        end = ops.take(tables["child_start"], parents + 1)

        def halve(step, bounds):
            low, high = bounds
            active = low < high
            middle = (low + high) // 2
            go_right = ops.take(node_word, middle) < words
            low = ops.where(ops.logical_and(active, go_right), middle + 1, low)
            high = ops.where(ops.logical_and(active, ops.logical_not(go_right)), middle, high)
            return low, high

        # A loop, not unrolled: XLA compiles the step once (a few seconds less).
        low, _ = ops.fori_loop(0, steps, halve, (low, end))
        found = ops.logical_and(low < end, ops.equal(ops.take(node_word, low), words))
        return ops.where(found, low, self._unseen_node)

    def _idf_weights(self, tables, words):
        """Per order n, the idf of the n-gram starting at each position `(N, L - n + 1)`."""
        words = ops.cast(words, "int32")
        in_range = ops.logical_and(words >= 0, words < self.vocabulary_size)
        nodes = ops.take(tables["unigram_node"], ops.where(in_range, words, self.vocabulary_size))
        weights = [ops.take(tables["node_idf"], nodes)]
        for order in range(2, self.max_order + 1):
            next_words = words[:, order - 1 :]
            nodes = nodes[:, : ops.shape(next_words)[1]]
            nodes = self._children(tables, nodes, next_words, self._search_steps[order])
            weights.append(ops.take(tables["node_idf"], nodes))
        return weights

    def _self_statistics(self, words, valid_masks, weights):
        """Per order: term frequencies, first-occurrence masks and tf-idf norms.

        Positions past a caption's end hold stand-ins (see `_score`), so an
        n-gram in the caption equals none that runs past it.
        """
        size = ops.shape(words)[-1]
        same_words = ops.equal(words[:, :, None], words[:, None, :])
        positions = ops.arange(size, dtype="int32")
        earlier = positions[None, :] < positions[:, None]  # (i, j): j before i
        statistics = []
        for same, valid, weight in zip(
            _ngram_equalities(same_words, self.max_order), valid_masks, weights
        ):
            count = ops.shape(valid)[1]
            term_frequency = ops.cast(ops.sum(same, axis=-1), self.dtype)
            repeated = ops.any(ops.logical_and(same, earlier[None, :count, :count]), axis=-1)
            first = ops.logical_and(valid, ops.logical_not(repeated))
            vector = term_frequency * weight
            norm = ops.sqrt(ops.sum(ops.where(first, ops.square(vector), 0.0), axis=-1))
            statistics.append((term_frequency, first, norm))
        return statistics

    def _similarity(self, candidates, candidate_stats, candidate_weights,
                    references, reference_norm):
        """Sum over orders of clipped cosine similarities `(num_candidates, max_refs)`.

        `references` and `reference_norm` are already gathered per
        candidate: `(num_candidates, max_refs, ...)`. Positions past a
        caption's end hold stand-ins (see `_score`), so they match nothing.
        """
        same_words = ops.equal(candidates[:, None, :, None], references[:, :, None, :])
        similarity = 0.0
        for index, same in enumerate(_ngram_equalities(same_words, self.max_order)):
            term_frequency, first, norm = candidate_stats[index]
            weight = candidate_weights[index]
            reference_tf = ops.cast(ops.sum(same, axis=-1), self.dtype)  # (C, R, grams)
            vector = (term_frequency * weight)[:, None, :]
            reference_vector = reference_tf * weight[:, None, :]
            # coco-caption: sum over distinct n-grams of min(vec, vec_ref) * vec_ref.
            clipped = ops.minimum(vector, reference_vector) * reference_vector
            numerator = ops.sum(ops.where(first[:, None, :], clipped, 0.0), axis=-1)
            denominator = norm[:, None] * reference_norm[index]
            nonzero = denominator > 0
            similarity = similarity + ops.where(
                nonzero, numerator / ops.where(nonzero, denominator, 1.0), 0.0
            )
        return similarity

    def _check_inputs(self, candidate_ids, reference_ids, video_index):
        candidate_ids = ops.convert_to_tensor(candidate_ids)
        reference_ids = ops.convert_to_tensor(reference_ids)
        if len(candidate_ids.shape) != 2:
            raise ValueError(
                f"candidate_ids must be (num_candidates, length), got {tuple(candidate_ids.shape)}."
            )
        if len(reference_ids.shape) != 3:
            raise ValueError(
                "reference_ids must be (batch, max_refs, length), "
                f"got {tuple(reference_ids.shape)}."
            )
        for ids in (candidate_ids, reference_ids):
            if "int" not in keras.backend.standardize_dtype(ids.dtype):
                raise ValueError(
                    "candidate_ids and reference_ids must be integer token ids, "
                    f"got {keras.backend.standardize_dtype(ids.dtype)}."
                )
        num_candidates, batch_size = candidate_ids.shape[0], reference_ids.shape[0]
        if video_index is None:
            if isinstance(num_candidates, int) and isinstance(batch_size, int):
                if batch_size == 0 or num_candidates % batch_size:
                    raise ValueError(
                        f"num_candidates ({num_candidates}) must be a multiple of the batch "
                        f"size ({batch_size}) without video_index."
                    )
            num_candidates = ops.shape(candidate_ids)[0]
            batch_size = ops.shape(reference_ids)[0]
            video_index = ops.repeat(
                ops.arange(batch_size, dtype="int32"), num_candidates // batch_size
            )
        return candidate_ids, reference_ids, ops.cast(video_index, "int32")

    def __call__(self, candidate_ids, reference_ids, video_index=None):
        candidate_ids, reference_ids, video_index = self._check_inputs(
            candidate_ids, reference_ids, video_index
        )
        return self._score_fn(self._tables, candidate_ids, reference_ids, video_index)

    def _score(self, tables, candidate_ids, reference_ids, video_index):
        """The rewards `(num_candidates,)`: `__call__` after its input checks."""
        batch_size, max_refs = ops.shape(reference_ids)[0], ops.shape(reference_ids)[1]
        flat_references = ops.reshape(reference_ids, (batch_size * max_refs, -1))
        present = ops.any(ops.not_equal(flat_references, self.pad_id), axis=-1)
        present = ops.cast(ops.reshape(present, (batch_size, max_refs)), self.dtype)

        # Candidates and references in one pass: rows padded to one length.
        num_candidates = ops.shape(candidate_ids)[0]
        size = _larger(ops.shape(candidate_ids)[1], ops.shape(flat_references)[1])
        rows = ops.concatenate([
            ops.pad(ops.cast(ids, "int32"), [[0, 0], [0, size - ops.shape(ids)[1]]],
                    constant_values=self.pad_id)
            for ids in (candidate_ids, flat_references)
        ], axis=0)
        words, lengths = self._compact(rows)
        valid = self._valid_masks(words, lengths)
        # Past its length every caption holds negative stand-ins, distinct
        # between candidates and references: an n-gram that runs past a
        # caption's end equals no other, so equality tensors need no masks.
        positions = ops.arange(size, dtype="int32")[None, :]
        is_reference = ops.arange(ops.shape(rows)[0], dtype="int32")[:, None] >= num_candidates
        stand_in = -1 - positions - ops.where(is_reference, size, 0)
        words = ops.where(valid[0], words, stand_in)
        weights = self._idf_weights(tables, words)
        stats = self._self_statistics(words, valid, weights)
        candidates, references = words[:num_candidates], words[num_candidates:]
        candidate_lengths, reference_lengths = lengths[:num_candidates], lengths[num_candidates:]
        candidate_weights = [weight[:num_candidates] for weight in weights]
        candidate_stats = [tuple(part[:num_candidates] for part in order) for order in stats]
        reference_stats = [tuple(part[num_candidates:] for part in order) for order in stats]

        def per_candidate(flat):  # (batch * max_refs, ...) -> (num_candidates, max_refs, ...)
            by_video = ops.reshape(flat, (batch_size, max_refs) + tuple(ops.shape(flat)[1:]))
            return ops.take(by_video, video_index, axis=0)

        similarity = self._similarity(
            candidates, candidate_stats, candidate_weights,
            per_candidate(references),
            [per_candidate(norm) for _, _, norm in reference_stats],
        )
        # coco-caption's "length" is the number of bigrams.
        candidate_bigrams = ops.cast(ops.maximum(candidate_lengths - 1, 0), self.dtype)
        reference_bigrams = ops.cast(ops.maximum(reference_lengths - 1, 0), self.dtype)
        reference_bigrams = per_candidate(reference_bigrams)
        delta = candidate_bigrams[:, None] - reference_bigrams
        penalty = ops.exp(-ops.square(delta) / (2.0 * self.sigma**2))
        scores = similarity / float(self.max_order) * penalty
        present = ops.take(present, video_index, axis=0)
        num_references = ops.sum(present, axis=-1)
        total = ops.sum(scores * present, axis=-1)
        has_references = num_references > 0
        return 10.0 * ops.where(
            has_references, total / ops.where(has_references, num_references, 1.0), 0.0
        )
