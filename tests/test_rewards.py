"""Tests for keras_pvc.rewards: CIDEr-D in keras.ops equals coco-caption's, per backend.

Run per backend: `KERAS_BACKEND=jax pytest tests/test_rewards.py` (and
`tensorflow`, `torch`).
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_pvc import metrics
from keras_pvc import rewards

VOCABULARY_SIZE = 30
BACKEND = keras.backend.backend()
tensorflow_only = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="tf.function / tf.GradientTape / tf.numpy_function: TensorFlow only"
)


def _random_caption(rng, min_words=1, max_words=9, low=4, high=14):
    # Few distinct words so n-grams repeat across captions and clips.
    return rng.integers(low, high, size=rng.integers(min_words, max_words + 1)).tolist()


def _pad_references(references, max_refs, length):
    array = np.zeros((len(references), max_refs, length), dtype=np.int32)
    for clip, clip_references in enumerate(references):
        for row, caption in enumerate(clip_references):
            array[clip, row, : len(caption)] = caption
    return array


def _text(ids):
    return rewards.ids_to_text(rewards.clean_token_ids(ids))


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    train = [[[2] + _random_caption(rng) + [3] for _ in range(rng.integers(1, 6))] for _ in range(25)]
    batch_size, samples, max_refs, length = 6, 3, 5, 12
    batch_references = [
        [[2] + _random_caption(rng) + [3] for _ in range(rng.integers(1, max_refs + 1))]
        for _ in range(batch_size)
    ]
    batch_references[0][0] = [2, 3]  # present but empty reference
    batch_references[1][0] = [2] + _random_caption(rng, 3, 5, 14, 20) + [3]  # words unseen in training
    candidates = np.zeros((batch_size * samples, length), dtype=np.int32)
    for index in range(batch_size * samples):
        caption = _random_caption(rng, 0, 10)
        candidates[index, : len(caption)] = caption
        if len(caption) < length and rng.random() < 0.5:
            candidates[index, len(caption)] = 3  # <eos>
            candidates[index, len(caption) + 1 :] = rng.integers(4, 14, length - len(caption) - 1)
    candidates[0, :4] = [2, 5, 6, 3]  # leading <bos>
    candidates[1, :] = batch_references[0][1][1:-1][:length] + [0] * (
        length - len(batch_references[0][1][1:-1][:length])
    )  # a copy of a reference
    candidates[2, :] = 0  # empty
    candidates[3, :3] = [1, 1, 7]  # <unk> is a word
    unseen = batch_references[1][0][1:-1]  # n-grams unseen in training, held by a reference
    candidates[4, :] = 0
    candidates[4, : len(unseen)] = unseen
    references = _pad_references(batch_references, max_refs, length)
    return train, references, candidates, samples


def _host_cider_d(train, references, candidates, video_index):
    """keras_pvc.metrics.CiderD (pure Python, coco-caption's formulas) on the texts."""
    frequency, num_documents = metrics.document_frequency([[_text(r) for r in c] for c in train])
    scorer = metrics.CiderD(frequency, num_documents)
    reference_texts = [[_text(r) for r in clip if np.any(r != 0)] for clip in references]
    return scorer.score(
        [reference_texts[v] for v in video_index], [_text(row) for row in candidates]
    )[1]


class _ListWithLength(list):
    """A list whose `len` is the training corpus size, for CiderScorer's idf."""

    def __init__(self, items, length):
        super().__init__(items)
        self.length = length

    def __len__(self):
        return self.length


def _coco_cider_d(train, references, candidates, video_index):
    """pycocoevalcap's CiderScorer (CIDEr-D) with the training document frequencies."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    frequency, num_documents = metrics.document_frequency([[_text(r) for r in c] for c in train])
    scorer = CiderScorer(n=4, sigma=6.0)
    for row, video in zip(candidates, video_index):
        scorer += (_text(row), [_text(r) for r in references[video] if np.any(r != 0)])
    scorer.document_frequency.update({k: float(v) for k, v in frequency.items()})
    # `compute_cider` takes log(len(crefs)) as log(number of documents).
    scorer.crefs = _ListWithLength(scorer.crefs, num_documents)
    return np.array(scorer.compute_cider())


def _default_video_index(candidates, references):
    return np.repeat(np.arange(len(references)), len(candidates) // len(references))


def test_cider_d_equals_pycocoevalcap_cider_scorer(setup):
    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    got = ops.convert_to_numpy(reward_fn(candidates, references))
    coco = _coco_cider_d(train, references, candidates, _default_video_index(candidates, references))
    assert got.shape == (len(candidates),)
    np.testing.assert_allclose(got, coco, atol=1e-5)
    assert coco[1] > 0 and coco[4] > 0 and got[2] == 0.0
    assert len(np.unique(np.round(coco, 4))) > len(coco) // 2  # not a degenerate batch


def test_cider_d_equals_host_cider_d_and_explicit_video_index(setup):
    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    video_index = _default_video_index(candidates, references)
    got = ops.convert_to_numpy(reward_fn(candidates, references))
    np.testing.assert_allclose(got, _host_cider_d(train, references, candidates, video_index), atol=1e-5)
    explicit = reward_fn(candidates, references, video_index=video_index)
    np.testing.assert_allclose(ops.convert_to_numpy(explicit), got, atol=1e-6)


def test_uneven_video_index_longer_candidates_int64_ids(setup):
    train, references, candidates, samples = setup
    rng = np.random.default_rng(1)
    video_index = rng.integers(0, len(references), size=23)
    picked = candidates[rng.integers(0, len(candidates), size=23)]
    longer = np.concatenate([picked, np.zeros((23, 3), np.int32)], axis=1).astype(np.int64)
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    got = ops.convert_to_numpy(reward_fn(longer, references, video_index))
    np.testing.assert_allclose(got, _coco_cider_d(train, references, longer, video_index), atol=1e-5)


def test_hand_computed_case():
    # Training clips "4 5" and "4 6": N = 2; idf of 4 is log 2 - log 2 = 0, of
    # 5, 6, "4 5", "4 6" and of every unseen n-gram log 2 =: l.
    reward_fn = rewards.CiderDReward.from_references([[[4, 5]], [[4, 6]]], 10)
    # Candidate "5 5 7" (2 bigrams); reference "5 7 4 6" (3 bigrams); an
    # empty present reference; a missing one.
    candidates = np.array([[2, 5, 5, 7, 3, 0]])
    references = np.array([[[5, 7, 4, 6, 0, 0], [2, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]])
    # 1-grams: cand {5: 2l, 7: l}, ref {5: l, 7: l, 4: 0, 6: l}:
    #   (min(2l, l) l + l l) / (sqrt(5) l * sqrt(3) l) = 2 / sqrt(15).
    # 2-grams: cand {55, 57}, ref {57, 74, 46}, all l: 1 / (sqrt(2) sqrt(3)).
    # 3-grams: cand {557}, ref {574, 746}: 0.  4-grams: the candidate has none.
    # Penalty exp(-(2 - 3)^2 / (2 * 6^2)); mean over 4 orders; 2 references; x10.
    expected = 10 * math.exp(-1 / 72) * (2 / math.sqrt(15) + 1 / math.sqrt(6)) / 4 / 2
    got = ops.convert_to_numpy(reward_fn(candidates, references))
    np.testing.assert_allclose(got, [expected], rtol=1e-6)


def test_eos_pad_and_bos_handling():
    train = [[[4, 5, 6, 7]], [[8, 9]], [[10, 11]]]
    reward_fn = rewards.CiderDReward.from_references(train, 16)
    references = np.array([[[2, 4, 5, 6, 7, 3, 0], [0, 0, 0, 0, 0, 0, 0]]])
    candidates = np.array(
        [
            [4, 5, 6, 7, 0, 0, 0],
            [2, 4, 5, 6, 7, 3, 0],  # bos ignored, ends at eos
            [4, 5, 6, 7, 3, 9, 9],  # tokens after eos ignored
            [4, 5, 6, 7, 0, 9, 9],  # tokens after pad ignored
            [4, 2, 5, 6, 2, 7, 3],  # a bos inside is dropped too
            [4, 5, 3, 6, 7, 0, 0],  # ends early
        ]
    )
    scores = ops.convert_to_numpy(reward_fn(candidates, references, np.zeros(6, "int32")))
    np.testing.assert_allclose(scores[:5], scores[0], atol=1e-6)
    assert scores[0] == pytest.approx(10.0, abs=1e-5)  # equal to its only reference
    assert scores[5] < scores[0]


def test_missing_references_do_not_count():
    train = [[[4, 5, 6]], [[7, 8]]]
    reward_fn = rewards.CiderDReward.from_references(train, 10)
    one = ops.convert_to_numpy(reward_fn([[4, 5, 6]], [[[4, 5, 6]]]))
    padded = ops.convert_to_numpy(reward_fn([[4, 5, 6]], [[[4, 5, 6], [0, 0, 0], [0, 0, 0]]]))
    np.testing.assert_allclose(one, padded)
    assert one[0] > 0.0
    no_refs = ops.convert_to_numpy(reward_fn([[4, 5, 6]], [[[0, 0, 0]]]))
    assert no_refs[0] == 0.0


def test_large_vocabulary_and_out_of_vocabulary_ids_are_exact():
    # Word ids near the int64 limit of the host codes (55108**4 < 2**63);
    # ids >= vocabulary_size are words unseen in training, as on the host.
    vocabulary_size = 55108
    rng = np.random.default_rng(3)
    words = np.array([4, 5, 55100, 55105, 55107, 30001])
    train = [[[2] + rng.choice(words, rng.integers(2, 7)).tolist() + [3] for _ in range(3)]
             for _ in range(10)]
    references = _pad_references(
        [[rng.choice(words, rng.integers(2, 7)).tolist() for _ in range(3)] for _ in range(2)], 3, 8
    )
    candidates = np.zeros((6, 8), np.int64)
    for row in range(6):
        caption = rng.choice(np.append(words, [60000, 70000]), rng.integers(1, 8))
        candidates[row, : len(caption)] = caption
    reward_fn = rewards.CiderDReward.from_references(train, vocabulary_size)
    got = ops.convert_to_numpy(reward_fn(candidates, references))
    video_index = _default_video_index(candidates, references)
    expected = _host_cider_d(train, references, candidates, video_index)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.all(expected > 0)


def test_document_frequency_codes_are_exact():
    codes, counts, num_documents = rewards.cider_d_document_frequency(
        [[[2, 5, 6, 3]], [[5, 0]]], 10
    )
    assert num_documents == 2
    assert dict(zip(codes.tolist(), counts.tolist())) == {5: 2, 6: 1, 56: 1}
    # Largest vocabulary whose 4-gram codes fit int64 exactly.
    rewards.CiderDReward([], [], 1, vocabulary_size=55108)
    with pytest.raises(ValueError, match="vocabulary_size"):
        rewards.CiderDReward([], [], 1, vocabulary_size=55109)


def test_document_frequency_lookups_are_exact():
    """Every n-gram gets its exact idf from the trie: seen, unseen, or only a listed n-gram's prefix."""
    vocabulary_size, num_documents = 40, 60
    rng = np.random.default_rng(2)

    def code(words):
        value = 0
        for word in words:
            value = value * vocabulary_size + int(word)
        return value

    # Random n-grams of orders 1..4 over a few words: not closed under prefixes.
    listed = {code(rng.integers(1, 9, size=rng.integers(1, 5))) for _ in range(1500)}
    listed |= {code(rng.integers(1, vocabulary_size, size=4)) for _ in range(500)}
    codes = np.array(sorted(listed), np.int64)
    counts = rng.integers(1, num_documents + 1, size=codes.size)
    table = dict(zip(codes.tolist(), counts.tolist()))
    dtype = "float32" if BACKEND == "jax" else "float64"
    reward_fn = rewards.CiderDReward(codes, counts, num_documents, vocabulary_size, dtype=dtype)
    queries = np.concatenate([
        rng.integers(1, 9, size=(3000, 4)),
        rng.integers(1, vocabulary_size, size=(500, 4)),
        [[39, 39, 39, 39], [1, 1, 1, 1], [45, 1, 2, 3]],  # 45: out of the vocabulary
    ]).astype(np.int32)
    weights = [ops.convert_to_numpy(w)[:, 0] for w in reward_fn._idf_fn(reward_fn._tables, queries)]
    seen = 0
    for order in range(1, 5):
        frequency = np.array([
            table.get(code(row[:order]), 0) if row[:order].max() < vocabulary_size else 0
            for row in queries
        ])
        seen += np.count_nonzero(frequency)
        expected = np.log(num_documents) - np.log(np.maximum(1, frequency))
        np.testing.assert_allclose(weights[order - 1], expected, rtol=1e-6, atol=1e-6)
    assert seen > 2000  # most queries hit listed n-grams, the rest are unseen


def test_bad_input_raises():
    reward_fn = rewards.CiderDReward.from_references([[[4, 5]]], 8)
    with pytest.raises(ValueError, match="candidate_ids"):
        reward_fn([4, 5], [[[4, 5]]])
    with pytest.raises(ValueError, match="reference_ids"):
        reward_fn([[4, 5]], [[4, 5]])
    with pytest.raises(ValueError, match="integer"):
        reward_fn(np.array([[4.0, 5.0]], "float32"), [[[4, 5]]])
    with pytest.raises(ValueError, match="multiple"):
        reward_fn([[4, 5], [4, 5], [4, 5]], [[[4, 5]], [[4, 5]]])
    with pytest.raises(ValueError, match="sorted"):
        rewards.CiderDReward([5, 3], [1, 1], 2, 8)
    with pytest.raises(ValueError, match="not the code"):
        rewards.CiderDReward([5, 8**4 + 1], [1, 1], 2, 8)
    with pytest.raises(ValueError, match="Unknown rewards"):
        rewards.HostCaptionReward({"spice": 1.0})
    with pytest.raises(ValueError, match="train_reference_ids"):
        rewards.HostCaptionReward("cider_d")


def _has_float64():
    if BACKEND != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


@pytest.mark.skipif(not _has_float64(), reason="JAX runs without 64-bit floats (jax_enable_x64 off)")
def test_float64_matches_pycocoevalcap_to_1e_10(setup):
    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE, dtype="float64")
    got = reward_fn(candidates, references)
    assert keras.backend.standardize_dtype(got.dtype) == "float64"
    coco = _coco_cider_d(train, references, candidates, _default_video_index(candidates, references))
    np.testing.assert_allclose(ops.convert_to_numpy(got), coco, atol=1e-10)


@pytest.mark.skipif(BACKEND != "jax", reason="jax.jit: JAX only")
def test_reward_under_jax_jit(setup):
    import jax

    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    compiled = jax.jit(reward_fn.__call__)
    video_index = np.random.default_rng(4).integers(0, len(references), size=len(candidates))
    got = np.asarray(compiled(candidates, references, video_index))
    np.testing.assert_allclose(got, _coco_cider_d(train, references, candidates, video_index), atol=1e-5)


@pytest.mark.skipif(BACKEND != "torch", reason="torch.no_grad on torch tensors: PyTorch only")
def test_reward_on_torch_tensors_without_grad(setup):
    import torch

    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    with torch.no_grad():
        got = reward_fn(torch.as_tensor(candidates, dtype=torch.int64), torch.as_tensor(references))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    expected = _coco_cider_d(train, references, candidates, _default_video_index(candidates, references))
    np.testing.assert_allclose(got.cpu().numpy(), expected, atol=1e-5)


@tensorflow_only
def test_reward_in_tf_function_with_unknown_shapes(setup):
    import tensorflow as tf

    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    video_index = np.random.default_rng(5).integers(0, len(references), size=len(candidates))
    compiled = tf.function(reward_fn.__call__)
    got = compiled(tf.constant(candidates), tf.constant(references), tf.constant(video_index))
    np.testing.assert_allclose(got.numpy(), _coco_cider_d(train, references, candidates, video_index), atol=1e-5)
    # Unknown batch and lengths (a tf.data pipeline's padded batches).
    dynamic = tf.function(
        reward_fn.__call__,
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None, None], tf.int32)],
    )
    got = dynamic(tf.constant(candidates), tf.constant(references)).numpy()
    expected = _coco_cider_d(train, references, candidates, _default_video_index(candidates, references))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
@tensorflow_only
def test_reward_under_xla(setup):
    import tensorflow as tf

    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    video_index = np.random.default_rng(5).integers(0, len(references), size=len(candidates))
    compiled = tf.function(reward_fn.__call__, jit_compile=True)
    got = compiled(tf.constant(candidates), tf.constant(references), tf.constant(video_index))
    np.testing.assert_allclose(got.numpy(), _coco_cider_d(train, references, candidates, video_index), atol=1e-5)


@tensorflow_only
def test_host_reward_mixture_in_tf_function(setup):
    import tensorflow as tf

    train, references, candidates, samples = setup
    vocabulary = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"word{i}" for i in range(4, VOCABULARY_SIZE)]
    host = rewards.HostCaptionReward(
        {"cider_d": 1.0, "bleu_4": 0.5, "rouge_l": 0.25}, vocabulary, train
    )
    mixed = tf.function(host.__call__)(tf.constant(candidates), tf.constant(references)).numpy()
    cider_only = rewards.build_reward("cider_d", train, VOCABULARY_SIZE)(candidates, references)
    text = lambda ids: rewards.ids_to_text(rewards.clean_token_ids(ids), vocabulary)  # noqa: E731
    refs = [[text(r) for r in references[i // samples] if np.any(r != 0)] for i in range(len(candidates))]
    preds = [text(row) for row in candidates]
    expected = (
        ops.convert_to_numpy(cider_only)
        + 0.5 * metrics.corpus_bleu(refs, preds)[1][:, 3]
        + 0.25 * metrics.corpus_rouge_l(refs, preds)[1]
    )
    np.testing.assert_allclose(mixed, expected, atol=1e-5)
    assert isinstance(rewards.build_reward({"cider_d": 1.0, "bleu_4": 0.5}, train, 30), rewards.HostCaptionReward)


@tensorflow_only
def test_reward_in_custom_train_step():
    """The reward runs inside a Keras `train_step` (TensorFlow backend)."""
    import tensorflow as tf

    train = [[[4, 5, 6, 3], [4, 5, 7, 3]], [[8, 9, 3]]]
    reward_fn = rewards.CiderDReward.from_references(train, 12)

    class RewardModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)
            self.reward_tracker = keras.metrics.Mean(name="reward")

        def train_step(self, data):
            inputs, (sampled_ids, reference_ids) = data
            rewards_per_sample = reward_fn(sampled_ids, reference_ids)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self.dense(inputs)[:, 0] - rewards_per_sample))
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            self.reward_tracker.update_state(rewards_per_sample)
            return {"reward": self.reward_tracker.result()}

    model = RewardModel()
    model.compile(optimizer="sgd")
    sampled = np.array([[4, 5, 6, 3], [8, 0, 0, 0], [8, 9, 3, 0], [4, 4, 4, 4]], dtype=np.int32)
    references = np.array([[[4, 5, 6, 3], [4, 5, 7, 3]], [[8, 9, 3, 0], [0, 0, 0, 0]]], dtype=np.int32)
    dataset = tf.data.Dataset.from_tensors((np.ones((4, 2), "float32"), (sampled, references)))
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    seen_rewards = ops.convert_to_numpy(reward_fn(sampled, references))
    np.testing.assert_allclose(history.history["reward"][0], seen_rewards.mean(), rtol=1e-5)
