"""Tests for keras_pvc.rewards: in-graph CIDEr-D equals the host CIDEr-D."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pvc import metrics
from keras_pvc import rewards

VOCABULARY_SIZE = 30


def _random_caption(rng, min_words=1, max_words=9):
    # Few distinct words so n-grams repeat across captions and clips.
    return rng.integers(4, 14, size=rng.integers(min_words, max_words + 1)).tolist()


def _pad_references(references, max_refs, length):
    array = np.zeros((len(references), max_refs, length), dtype=np.int32)
    for clip, clip_references in enumerate(references):
        for row, caption in enumerate(clip_references):
            array[clip, row, : len(caption)] = caption
    return array


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
    references = _pad_references(batch_references, max_refs, length)
    return train, references, candidates, samples


def _host_cider_d(train, references, candidates, samples):
    def text(ids):
        return rewards.ids_to_text(rewards.clean_token_ids(ids))

    train_texts = [[text(row) for row in clip] for clip in train]
    frequency, num_documents = metrics.document_frequency(train_texts)
    scorer = metrics.CiderD(frequency, num_documents)
    reference_texts = [
        [text(row) for row in clip if np.any(row != 0)]
        for clip in references
    ]
    per_candidate_references = [reference_texts[i // samples] for i in range(len(candidates))]
    return scorer.score(per_candidate_references, [text(row) for row in candidates])[1]


def test_in_graph_cider_d_equals_host_cider_d(setup):
    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    in_graph = tf.function(reward_fn.__call__)(
        tf.constant(candidates), tf.constant(references)
    ).numpy()
    expected = _host_cider_d(train, references, candidates, samples)
    assert in_graph.shape == (len(candidates),)
    np.testing.assert_allclose(in_graph, expected, atol=1e-5)
    assert expected[1] > 0 and in_graph[2] == 0.0
    # The explicit video index gives the same rewards.
    video_index = np.repeat(np.arange(len(references)), samples)
    np.testing.assert_allclose(
        reward_fn(candidates, references, video_index=video_index).numpy(), in_graph, atol=1e-6
    )


def test_in_graph_cider_d_float64_and_xla(setup):
    train, references, candidates, samples = setup
    expected = _host_cider_d(train, references, candidates, samples)
    reward_fn = rewards.CiderDReward.from_references(
        train, VOCABULARY_SIZE, dtype="float64", xla_compatible=True
    )
    np.testing.assert_allclose(reward_fn(candidates, references).numpy(), expected, atol=1e-10)
    compiled = tf.function(reward_fn.__call__, jit_compile=True)
    np.testing.assert_allclose(compiled(candidates, references).numpy(), expected, atol=1e-10)


class _ListWithLength(list):
    """A list whose `len` is the training corpus size, for CiderScorer's idf."""

    def __init__(self, items, length):
        super().__init__(items)
        self.length = length

    def __len__(self):
        return self.length


def test_in_graph_cider_d_equals_pycocoevalcap_cider_scorer(setup):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    train, references, candidates, samples = setup
    text = lambda ids: rewards.ids_to_text(rewards.clean_token_ids(ids))  # noqa: E731
    frequency, num_documents = metrics.document_frequency([[text(r) for r in c] for c in train])
    scorer = CiderScorer(n=4, sigma=6.0)
    for index, row in enumerate(candidates):
        clip = references[index // samples]
        scorer += (text(row), [text(r) for r in clip if np.any(r != 0)])
    scorer.document_frequency.update({k: float(v) for k, v in frequency.items()})
    # `compute_cider` takes log(len(crefs)) as log(number of documents).
    scorer.crefs = _ListWithLength(scorer.crefs, num_documents)
    coco = np.array(scorer.compute_cider())
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    np.testing.assert_allclose(reward_fn(candidates, references).numpy(), coco, atol=1e-5)


def test_eos_pad_and_bos_handling():
    train = [[[4, 5, 6, 7]], [[8, 9]], [[10, 11]]]
    reward_fn = rewards.CiderDReward.from_references(train, 16)
    references = tf.constant([[[2, 4, 5, 6, 7, 3, 0], [0, 0, 0, 0, 0, 0, 0]]])
    candidates = tf.constant(
        [
            [4, 5, 6, 7, 0, 0, 0],
            [2, 4, 5, 6, 7, 3, 0],  # bos ignored, ends at eos
            [4, 5, 6, 7, 3, 9, 9],  # tokens after eos ignored
            [4, 5, 6, 7, 0, 9, 9],  # tokens after pad ignored
            [4, 5, 3, 6, 7, 0, 0],  # ends early
        ]
    )
    scores = reward_fn(candidates, references).numpy()
    np.testing.assert_allclose(scores[:4], scores[0], atol=1e-6)
    assert scores[0] == pytest.approx(10.0, abs=1e-5)  # equal to its only reference
    assert scores[4] < scores[0]


def test_missing_references_do_not_count():
    train = [[[4, 5, 6]], [[7, 8]]]
    reward_fn = rewards.CiderDReward.from_references(train, 10)
    one = reward_fn([[4, 5, 6]], [[[4, 5, 6]]]).numpy()
    padded = reward_fn([[4, 5, 6]], [[[4, 5, 6], [0, 0, 0], [0, 0, 0]]]).numpy()
    np.testing.assert_allclose(one, padded)
    no_refs = reward_fn([[4, 5, 6]], [[[0, 0, 0]]]).numpy()
    assert no_refs[0] == 0.0


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


def test_bad_input_raises():
    reward_fn = rewards.CiderDReward.from_references([[[4, 5]]], 8)
    with pytest.raises(ValueError, match="candidate_ids"):
        reward_fn([4, 5], [[[4, 5]]])
    with pytest.raises(ValueError, match="reference_ids"):
        reward_fn([[4, 5]], [[4, 5]])
    with pytest.raises(ValueError, match="integer"):
        reward_fn(tf.constant([[4.0, 5.0]]), [[[4, 5]]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="vocabulary_size"):
        reward_fn([[4, 9]], [[[4, 5]]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiple"):
        reward_fn([[4, 5], [4, 5], [4, 5]], [[[4, 5]], [[4, 5]]])
    with pytest.raises(ValueError, match="sorted"):
        rewards.CiderDReward([5, 3], [1, 1], 2, 8)
    with pytest.raises(ValueError, match="Unknown rewards"):
        rewards.HostCaptionReward({"spice": 1.0})
    with pytest.raises(ValueError, match="train_reference_ids"):
        rewards.HostCaptionReward("cider_d")


def test_host_reward_mixture_in_tf_function(setup):
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
        cider_only.numpy()
        + 0.5 * metrics.corpus_bleu(refs, preds)[1][:, 3]
        + 0.25 * metrics.corpus_rouge_l(refs, preds)[1]
    )
    np.testing.assert_allclose(mixed, expected, atol=1e-5)
    assert isinstance(rewards.build_reward({"cider_d": 1.0, "bleu_4": 0.5}, train, 30), rewards.HostCaptionReward)


def test_reward_in_custom_train_step():
    """The reward runs inside a Keras `train_step` (TensorFlow backend)."""
    import keras

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
    assert np.isfinite(history.history["reward"][0])


def test_default_and_fixed_shape_paths_agree_in_tf_function(setup):
    """The default (unique + hash table) and XLA-compatible paths give equal rewards."""
    train, references, candidates, samples = setup
    default = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    fixed = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE, xla_compatible=True)
    expected = _host_cider_d(train, references, candidates, samples)
    rng = np.random.default_rng(1)
    # Uneven, shuffled video index; candidates longer than the references; int64 ids.
    video_index = rng.integers(0, len(references), size=23)
    picked = candidates[rng.integers(0, len(candidates), size=23)]
    longer = np.concatenate([picked, np.zeros((23, 3), np.int32)], axis=1).astype(np.int64)
    for fn in (default, fixed):
        graph = tf.function(fn.__call__)
        np.testing.assert_allclose(
            graph(tf.constant(candidates), tf.constant(references)).numpy(), expected, atol=1e-5
        )
    got = [
        tf.function(fn.__call__)(tf.constant(longer), tf.constant(references), tf.constant(video_index)).numpy()
        for fn in (default, fixed)
    ]
    np.testing.assert_allclose(got[0], got[1], atol=1e-5)
    text = lambda ids: rewards.ids_to_text(rewards.clean_token_ids(ids))  # noqa: E731
    frequency, num_documents = metrics.document_frequency([[text(r) for r in c] for c in train])
    host = metrics.CiderD(frequency, num_documents).score(
        [[text(r) for r in references[v] if np.any(r != 0)] for v in video_index],
        [text(row) for row in longer],
    )[1]
    np.testing.assert_allclose(got[0], host, atol=1e-5)
    compiled = tf.function(fixed.__call__, jit_compile=True)
    np.testing.assert_allclose(compiled(longer, references, video_index).numpy(), host, atol=1e-5)


def test_document_frequency_lookups_are_exact():
    """The hash table and the bucketed (XLA) table give every code its exact df."""
    rng = np.random.default_rng(2)
    codes = np.unique(rng.integers(1, 40**4, size=5000))
    counts = rng.integers(1, 50, size=codes.size)
    queries = np.concatenate([codes, rng.integers(1, 40**4, size=2000), [0, 40**4 - 1]])
    table = dict(zip(codes.tolist(), np.log(counts).tolist()))
    expected = np.array([table.get(code, 0.0) for code in queries.tolist()])
    for xla in (False, True):
        reward_fn = rewards.CiderDReward(codes, counts, 60, 40, dtype="float64", xla_compatible=xla)
        lookup = tf.function(reward_fn._log_frequency_of, jit_compile=xla)
        np.testing.assert_array_equal(lookup(tf.constant(queries)).numpy(), expected)
        assert reward_fn._bucket_window <= 16


def test_large_batch_join_equals_small_batch_join(setup, monkeypatch):
    """Past `_max_key_map_size` the default path joins through tf.unique: same rewards."""
    train, references, candidates, samples = setup
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    expected = tf.function(reward_fn.__call__)(candidates, references).numpy()
    monkeypatch.setattr(rewards.CiderDReward, "_max_key_map_size", 0)
    unique_join = tf.function(reward_fn.__call__)(candidates, references).numpy()
    np.testing.assert_allclose(unique_join, expected, atol=1e-6)
    np.testing.assert_allclose(unique_join, _host_cider_d(train, references, candidates, samples), atol=1e-5)
