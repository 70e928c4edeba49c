"""Self-critical REINFORCE: the loss, the sampler, the train step, the guard."""

import collections
import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_pvc.training.callbacks import NonFiniteGuard
from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.pipeline import ClipArrays
from keras_pvc.datasets.pipeline import caption_dataset
from keras_pvc.datasets.pipeline import reference_ids
from keras_pvc.models.self_critical import decode
from keras_pvc.models.self_critical import mask_after_eos
from keras_pvc.models.self_critical import policy_gradient_loss
from keras_pvc.models.self_critical import repeat_cache
from keras_pvc.models.self_critical import sample_baselines
from keras_pvc.models.video_captioner_preprocessor import BOS_ID
from keras_pvc.models.video_captioner_preprocessor import EOS_ID
from test_models import CAPTIONS
from test_models import tiny_model
from test_models import tiny_preprocessor
from layer_testing import BACKEND
from layer_testing import gradients as backend_gradients
from layer_testing import slow_on_jax
from layer_testing import tensorflow_only

CAPTION_LENGTH = 4
TRACKERS = ("loss", "reward", "baseline", "advantage", "greedy_reward", "entropy")


def tiny_clips():
    # Two references per clip, so that CIDEr-D has something to compare.
    return [
        Clip(f"clip{index}", [caption, CAPTIONS[(index + 1) % 4]], "train")
        for index, caption in enumerate(CAPTIONS)
    ]


def tiny_rl_setup(seed=0, batch_size=4, **self_critical):
    """A tiny model in self-critical mode, its clips' features and a dataset."""
    keras.utils.set_random_seed(seed)
    model = tiny_model()
    # Short captions: a self-critical step unrolls two decodes of
    # caption_length + 1 words, and tracing them dominates the test time.
    model.preprocessor = tiny_preprocessor(caption_length=CAPTION_LENGTH)
    clips = tiny_clips()
    features = np.random.default_rng(seed).normal(size=(4, 3, 4, 5)).astype("float32")
    arrays = ClipArrays(clips, features, np.ones((4, 3), bool), [])
    dataset = caption_dataset(
        arrays, model.preprocessor, "features", batch_size, shuffle=False, references=True
    )
    self_critical.setdefault("num_samples", 3)
    self_critical.setdefault("seed", 1)
    model.enable_self_critical(
        train_references=reference_ids(clips, model.preprocessor), **self_critical
    )
    return model, features, dataset


def video_inputs(features):
    return {
        "features": ops.convert_to_tensor(features),
        "frame_mask": ops.ones(features.shape[:2], "bool"),
    }


def encode(model, inputs):
    return model.backbone.encode(inputs, training=False)


def sample_log_probs(model, inputs, samples, num_samples):
    """Teacher-forced log-softmax `(N, L, V)` of samples, as the trainer does."""
    decoder = model.backbone.caption_decoder
    sequence, memory_mask, hidden, cell = encode(model, inputs)
    previous = ops.concatenate(
        [ops.full((ops.shape(samples)[0], 1), BOS_ID, "int32"), samples[:, :-1]], axis=1
    )

    def repeat(tensor):
        return ops.repeat(tensor, num_samples, axis=0)

    logits = decoder(
        previous,
        repeat(sequence),
        repeat(memory_mask),
        initial_state=(repeat(hidden), repeat(cell)),
        training=False,
    )
    return ops.log_softmax(logits, axis=-1)


def sequence_log_prob(model, inputs, samples, num_samples):
    """log p of each whole sample (up to and including its first `<eos>`)."""
    log_probs = sample_log_probs(model, inputs, samples, num_samples)
    chosen = ops.take_along_axis(log_probs, samples[..., None], axis=-1)[..., 0]
    return ops.convert_to_numpy(ops.sum(chosen * mask_after_eos(samples), axis=1))


def rl_loss_and_gradients(model, inputs, samples, advantages, num_samples):
    """The policy-gradient loss and its gradients by the backend's autodiff."""
    samples = ops.convert_to_tensor(samples)
    advantages = ops.convert_to_tensor(np.asarray(advantages, "float32"))

    def loss_fn():
        log_probs = sample_log_probs(model, inputs, samples, num_samples)
        return policy_gradient_loss(log_probs, samples, advantages)

    # Compiled on JAX, where eager autodiff through the LSTMs is slow.
    return backend_gradients(
        loss_fn, model.trainable_variables, [], compiled=BACKEND == "jax", return_loss=True
    )


# === The loss ===


def test_mask_after_eos_by_hand():
    token_ids = np.array(
        [
            [5, 3, 6, 0],  # eos second: it counts, what follows does not
            [5, 6, 7, 8],  # no eos: every token counts
            [3, 5, 3, 0],  # eos first: only it counts
            [5, 0, 6, 3],  # a pad before eos is still a sampled token
        ]
    )
    expected = [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    np.testing.assert_array_equal(ops.convert_to_numpy(mask_after_eos(token_ids)), expected)


def test_tokens_after_eos_change_neither_loss_nor_gradient():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    inputs = video_inputs(np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32"))
    samples = np.array([[5, 6, EOS_ID, 0, 0], [7, EOS_ID, 0, 0, 0]], "int32")
    changed = np.array([[5, 6, EOS_ID, 9, 4], [7, EOS_ID, 8, EOS_ID, 11]], "int32")
    advantages = [0.7, -1.3]
    loss, gradients = rl_loss_and_gradients(model, inputs, samples, advantages, 1)
    changed_loss, changed_gradients = rl_loss_and_gradients(
        model, inputs, changed, advantages, 1
    )
    assert float(loss) != 0.0
    np.testing.assert_allclose(float(changed_loss), float(loss), rtol=1e-6)
    for gradient, changed_gradient in zip(gradients, changed_gradients):
        np.testing.assert_allclose(
            ops.convert_to_numpy(changed_gradient), ops.convert_to_numpy(gradient), atol=1e-7
        )
    # A token before the eos does change it.
    moved = samples.copy()
    moved[0, 1] = 9
    moved_loss, _ = rl_loss_and_gradients(model, inputs, moved, advantages, 1)
    assert abs(float(moved_loss) - float(loss)) > 1e-4


def test_zero_advantage_gives_exactly_zero_gradient():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    inputs = video_inputs(np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32"))
    samples = np.array(
        [[5, 6, EOS_ID, 0], [7, 8, 9, 10], [4, EOS_ID, 0, 0], [6, 6, 6, EOS_ID]], "int32"
    )
    loss, gradients = rl_loss_and_gradients(model, inputs, samples, np.zeros(4), 2)
    assert float(loss) == 0.0
    assert len(gradients) == len(model.trainable_variables)
    for variable, gradient in zip(model.trainable_variables, gradients):
        if gradient is not None:
            assert not np.any(ops.convert_to_numpy(gradient)), variable.path


@pytest.mark.slow
@pytest.mark.every_backend
def test_zero_advantage_step_leaves_weights_unchanged():
    # A reward that every caption gets: reward == greedy baseline everywhere.
    model, _, dataset = tiny_rl_setup()
    model.self_critical.reward_function = lambda samples, references, index: ops.ones(
        ops.shape(samples)[:1]
    )
    before = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    history = model.fit(dataset.take(1), epochs=1, verbose=0)
    assert history.history["advantage"] == [0.0]
    assert history.history["loss"] == [0.0]
    for variable, value in zip(model.trainable_variables, before):
        np.testing.assert_array_equal(ops.convert_to_numpy(variable), value, variable.path)


@slow_on_jax
def test_policy_gradient_raises_high_reward_and_lowers_low_reward_sample():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    inputs = video_inputs(np.random.default_rng(0).normal(size=(1, 3, 4, 5)).astype("float32"))
    good = [5, 6, 7, EOS_ID, 0]
    bad = [9, 10, EOS_ID, 0, 0]
    samples = np.array([good, bad], "int32")
    advantages = [1.0, -1.0]
    before = sequence_log_prob(model, inputs, samples, 2)
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    for _ in range(3):
        _, gradients = rl_loss_and_gradients(model, inputs, samples, advantages, 2)
        optimizer.apply(
            [None if g is None else ops.convert_to_tensor(g) for g in gradients],
            model.trainable_variables,
        )
    after = sequence_log_prob(model, inputs, samples, 2)
    assert after[0] > before[0] + 0.05, (before, after)
    assert after[1] < before[1] - 0.05, (before, after)


@pytest.mark.slow
@pytest.mark.every_backend
def test_fit_raises_probability_of_rewarded_word():
    # Reward 1 for a caption containing `word`, 0 otherwise: REINFORCE must
    # make `word` more likely. The greedy baseline of an untrained model is
    # 0, so each sample with the word gets a positive advantage.
    model, features, dataset = tiny_rl_setup(num_samples=4, baseline="mean")
    word = model.preprocessor.vocabulary.index("triangle")
    model.self_critical.reward_function = lambda samples, references, index: ops.cast(
        ops.any(ops.equal(samples, word), axis=1), "float32"
    )
    inputs = video_inputs(features)

    def word_log_prob():
        # Mean log p(word) at the first step for every video.
        decoder = model.backbone.caption_decoder
        cache = decoder.initial_cache(*_cache_parts(model, inputs))
        logits, _ = decoder.step(ops.full((4,), BOS_ID, "int32"), cache)
        return float(ops.mean(ops.log_softmax(logits, axis=-1)[:, word]))

    before = word_log_prob()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-2))
    history = model.fit(dataset.repeat(12), epochs=1, verbose=0)
    assert math.isfinite(history.history["reward"][0])
    assert word_log_prob() > before + 0.5


@slow_on_jax
def test_fit_raises_the_cider_d_reward():
    # Self-critical training alone, from scratch, on four clips: the CIDEr-D
    # (the configured reward: CiderDReward, in the graph on every backend)
    # of the samples goes up from the first epoch to the second
    # (a sign error in the policy gradient sends it down), and that of the
    # greedy captions goes up too.
    model, features, dataset = tiny_rl_setup(num_samples=4, baseline="greedy")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-2))
    references = ops.convert_to_tensor(reference_ids(tiny_clips(), model.preprocessor))
    inputs = video_inputs(features)

    def greedy_cider_d():
        greedy = model.generate_ids(inputs, "greedy")
        rewards = model.self_critical.reward_function(greedy, references, ops.arange(4))
        return float(np.mean(ops.convert_to_numpy(rewards)))

    before = greedy_cider_d()
    rewards = model.fit(dataset.repeat(20), epochs=2, verbose=0).history["reward"]
    after = greedy_cider_d()
    assert rewards[1] > 1.1 * rewards[0], rewards
    assert after > before, (before, after)


def _cache_parts(model, inputs):
    return encode(model, inputs)


# === Baselines ===


def test_mean_baseline_is_mean_of_other_samples_by_hand():
    rewards = np.array([1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 4.0, 8.0], "float32")
    baselines = ops.convert_to_numpy(sample_baselines(rewards, 4, "mean"))
    expected = [11 / 3, 10 / 3, 9 / 3, 6 / 3, 12 / 3, 12 / 3, 8 / 3, 4 / 3]
    np.testing.assert_allclose(baselines, expected, rtol=1e-6)
    greedy = ops.convert_to_numpy(
        sample_baselines(rewards, 4, "greedy", np.array([0.5, 2.0], "float32"))
    )
    np.testing.assert_array_equal(greedy, [0.5] * 4 + [2.0] * 4)


# === Decoding ===


@slow_on_jax
def test_decode_is_reproducible_per_seed_and_greedy_matches_generate():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    features = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32")
    inputs = video_inputs(features)
    decoder = model.backbone.caption_decoder
    cache = decoder.initial_cache(*_cache_parts(model, inputs))
    cache = repeat_cache(cache, 3)

    def sample(seed):
        generator = keras.random.SeedGenerator(seed)
        return ops.convert_to_numpy(decode(decoder, cache, 10, generator))

    first, again, other = sample(7), sample(7), sample(8)
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)
    # One generator draws afresh at every call.
    generator = keras.random.SeedGenerator(7)
    decode(decoder, cache, 10, generator)
    assert np.any(ops.convert_to_numpy(decode(decoder, cache, 10, generator)) != first)
    # Everything after the first eos is pad.
    mask = ops.convert_to_numpy(mask_after_eos(first))
    assert np.all(first[mask == 0] == 0)

    single_cache = decoder.initial_cache(*_cache_parts(model, inputs))
    greedy = ops.convert_to_numpy(decode(decoder, single_cache, 10))
    generated = ops.convert_to_numpy(model.generate_ids(inputs, "greedy", max_length=10))
    np.testing.assert_array_equal(greedy, generated)


# === fit ===


@pytest.mark.parametrize(
    "jit_compile, self_critical",
    [
        # "auto": no XLA on TensorFlow, jit on JAX (eager JAX is slow).
        ("auto", {"baseline": "mean", "xe_weight": 0.5, "entropy_weight": 0.01}),
        pytest.param(
            True,
            {"baseline": "greedy"},
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    BACKEND == "torch", reason="jit_compile on torch is torch.compile"
                ),
            ],
        ),
    ],
    ids=["auto_jit_mean_xe_entropy", "xla_greedy"],
)
def test_fit_logs_trackers_and_validates_with_cross_entropy(jit_compile, self_critical):
    model, _, dataset = tiny_rl_setup(**self_critical)
    model.compile(jit_compile=jit_compile)
    history = model.fit(
        dataset.repeat(2), epochs=1, validation_data=dataset, verbose=0
    ).history
    for name in TRACKERS:
        assert name in history, sorted(history)
        assert np.isfinite(history[name][0]), (name, history[name])
    assert history["reward"][0] > 0.0
    assert history["loss"][0] != 0.0
    assert history["val_loss"][0] > 0.0
    assert "val_reward" not in history
    # The validation loss is the cross-entropy, not the policy-gradient loss.
    assert history["val_loss"][0] != pytest.approx(history["loss"][0])
    if self_critical["baseline"] == "mean":
        # The mean of leave-one-out means is the mean reward: advantage ~ 0.
        np.testing.assert_allclose(history["baseline"][0], history["reward"][0], rtol=1e-5)
        assert abs(history["advantage"][0]) < 1e-5
    else:
        np.testing.assert_allclose(
            history["baseline"][0], history["greedy_reward"][0], rtol=1e-6
        )


def _caption_text(token_ids, vocabulary):
    # The words a host reward scores, by hand: up to the first <eos> or
    # <pad>, without <bos>; <unk> counts as the word "<unk>".
    words = []
    for token in np.asarray(token_ids).tolist():
        if token in (0, EOS_ID):
            break
        if token != BOS_ID:
            words.append(vocabulary[token])
    return " ".join(words)


def _coco_rewards(weights, references, candidates, train_references):
    """pycocoevalcap's per-caption BLEU / ROUGE-L / CIDEr-D, weighted, on strings.

    CIDEr-D's document frequencies are those of `train_references` (a list
    of reference lists), as SCST uses them.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider_scorer import CiderScorer
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {index: refs for index, refs in enumerate(references)}
    res = {index: [caption] for index, caption in enumerate(candidates)}
    total = np.zeros(len(candidates))
    for name, weight in weights.items():
        if name.startswith("bleu"):
            scores = Bleu(4).compute_score(gts, res, verbose=0)[1][int(name[-1]) - 1]
        elif name == "rouge_l":
            scores = Rouge().compute_score(gts, res)[1]
        else:
            scorer = CiderScorer(n=4, sigma=6.0)
            for caption, refs in zip(candidates, references):
                scorer += (caption, refs)
            frequency = collections.Counter()
            for refs in train_references:
                frequency.update(
                    {
                        tuple(words[i : i + n])
                        for words in (r.split() for r in refs)
                        for n in range(1, 5)
                        for i in range(len(words) - n + 1)
                    }
                )
            scorer.document_frequency.update({k: float(v) for k, v in frequency.items()})

            class Documents(list):  # CiderScorer's log(len(crefs)) = log(#documents)
                def __len__(self):
                    return len(train_references)

            scorer.crefs = Documents(scorer.crefs)
            scores = scorer.compute_cider()
        total += weight * np.asarray(scores)
    return total


@slow_on_jax
def test_fit_with_host_reward_scores_the_decoded_captions():
    # A BLEU/ROUGE-L/CIDEr-D mix is a HostCaptionReward, scored in Python
    # from inside the compiled step (tf.numpy_function, jax.pure_callback,
    # a plain call on torch). One fit step: what the host was given are the
    # model's captions, its rewards are pycocoevalcap's on those strings,
    # and they are what the step logs.
    from keras_pvc.rewards import HostCaptionReward

    pytest.importorskip("pycocoevalcap")
    weights = {"bleu_1": 1.0, "bleu_4": 0.5, "rouge_l": 0.5, "cider_d": 0.25}
    model, features, dataset = tiny_rl_setup(reward=weights, baseline="greedy")
    reward = model.self_critical.reward_function
    assert isinstance(reward, HostCaptionReward)
    calls = []
    score_numpy = reward.score_numpy

    def recording_score_numpy(candidate_ids, reference_ids, video_index):
        rewards = score_numpy(candidate_ids, reference_ids, video_index)
        calls.append((np.array(candidate_ids), np.array(video_index), np.array(rewards)))
        return rewards

    reward.score_numpy = recording_score_numpy
    # The first batch holds one (clip, reference) pair per row: which clip?
    batch_features = next(iter(dataset))["features"].numpy()
    clip_of_row = [
        int(np.flatnonzero([np.array_equal(row, clip) for clip in features])[0])
        for row in batch_features
    ]
    greedy_before = ops.convert_to_numpy(
        model.generate_ids(video_inputs(batch_features), "greedy", max_length=CAPTION_LENGTH + 1)
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2))
    history = model.fit(dataset.take(1), epochs=1, verbose=0).history

    # One call for the 4 x 3 samples, one for the 4 greedy captions.
    assert sorted(len(ids) for ids, _, _ in calls) == [4, 12], [c[0].shape for c in calls]
    (sample_ids, sample_videos, sample_rewards), = [c for c in calls if len(c[0]) == 12]
    (greedy_ids, greedy_videos, greedy_rewards), = [c for c in calls if len(c[0]) == 4]
    np.testing.assert_array_equal(sample_videos, np.repeat(np.arange(4), 3))
    np.testing.assert_array_equal(greedy_videos, np.arange(4))
    np.testing.assert_array_equal(greedy_ids, greedy_before)

    # References as the preprocessor keeps them: the first CAPTION_LENGTH words.
    references = [
        [" ".join(r.split()[:CAPTION_LENGTH]) for r in clip.references] for clip in tiny_clips()
    ]
    vocabulary = model.preprocessor.vocabulary
    for ids, videos, got in ((sample_ids, sample_videos, sample_rewards),
                             (greedy_ids, greedy_videos, greedy_rewards)):
        captions = [_caption_text(row, vocabulary) for row in ids]
        clip_references = [references[clip_of_row[v]] for v in videos]
        expected = _coco_rewards(weights, clip_references, captions, references)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.ptp(sample_rewards) > 0.05, sample_rewards  # not a degenerate batch
    # The host's values reached the step's trackers.
    np.testing.assert_allclose(history["reward"][0], sample_rewards.mean(), rtol=1e-5)
    np.testing.assert_allclose(history["greedy_reward"][0], greedy_rewards.mean(), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.every_backend
def test_keras_round_trip_in_self_critical_mode(tmp_path):
    model, _, dataset = tiny_rl_setup(baseline="mean", num_samples=2, xe_weight=0.1)
    path = str(tmp_path / "rl.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.self_critical is not None
    assert loaded.self_critical.config.get_config() == model.self_critical.config.get_config()
    assert loaded.get_config()["self_critical"]["baseline"] == "mean"
    for original, restored in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(
            ops.convert_to_numpy(original), ops.convert_to_numpy(restored)
        )
    history = loaded.fit(dataset.take(1), epochs=1, verbose=0).history
    assert all(np.isfinite(history[name][0]) for name in TRACKERS)


# === Non-finite guard ===


@pytest.mark.slow
@pytest.mark.every_backend
def test_non_finite_guard_names_the_value_and_stops():
    model, _, dataset = tiny_rl_setup()
    model.self_critical.reward_function = lambda samples, references, index: ops.full(
        ops.shape(samples)[:1], float("nan")
    )
    with pytest.raises(FloatingPointError, match=r"reward=nan.*epoch 1, batch 1"):
        model.fit(dataset.repeat(3), epochs=2, verbose=0, callbacks=[NonFiniteGuard()])
    assert model.stop_training


def test_non_finite_guard_is_quiet_on_finite_logs():
    guard = NonFiniteGuard()
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, {"loss": 1.0, "reward": np.float32(0.5), "accuracy": float("nan")})
    with pytest.raises(FloatingPointError, match="advantage=inf at epoch 1, batch 4"):
        guard.on_train_batch_end(3, {"loss": 1.0, "advantage": float("inf")})


# === Distribution ===

MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)
sys.path.insert(0, {tests!r})
import keras, numpy as np
from keras import ops
import test_self_critical as helpers
from test_models import tiny_model
from test_models import tiny_preprocessor
from layer_testing import BACKEND
from layer_testing import gradients as backend_gradients
from layer_testing import slow_on_jax
from layer_testing import tensorflow_only
from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.pipeline import ClipArrays, caption_dataset, reference_ids
from keras_pvc.training.distribute import with_global_word_count

# Plain sampling under two replicas, through `fit`: it runs and logs
# finite values.
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model, _, dataset = helpers.tiny_rl_setup()
results = {{}}
try:
    plain = model.fit(dataset.repeat(2), epochs=1, verbose=0).history
    results["plain"] = {{key: values[0] for key, values in plain.items()}}
except Exception as error:  # Reported by the test, after the comparison.
    results["plain_error"] = f"{{type(error).__name__}}: {{str(error)[:800]}}"

# The same batch on 1 and 2 replicas. Sampling is made independent of how
# the batch is split (Gumbel-max with noise from each video's features, the
# step and the sample's index), and each sample ends with <eos> after its own
# number of words (1 to max_length - 1), so the replicas hold different
# numbers of words: the policy-gradient loss must be normalised by the
# global word count for two replicas to make one device's update.
from layer_testing import use_split_independent_decode
use_split_independent_decode()  # Sampling independent of the split (see there).

def one_step(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = tiny_model()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        # Captions of different lengths: the mixed-in cross-entropy is
        # normalised over the global batch's words too (`global_words`).
        captions = [helpers.CAPTIONS[0], helpers.CAPTIONS[1], helpers.CAPTIONS[2], helpers.CAPTIONS[0]]
        clips = [Clip(f"c{{i}}", [c, captions[(i + 1) % 4]], "train") for i, c in enumerate(captions)]
        features = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype("float32")
        arrays = ClipArrays(clips, features, np.ones((4, 3), bool), [])
        dataset = caption_dataset(arrays, model.preprocessor, "features", 4, shuffle=False, references=True)
        model.enable_self_critical(
            # Document frequencies from varied clips (these four share every
            # word, which would make every idf, so every reward, zero).
            train_references=reference_ids(helpers.tiny_clips(), model.preprocessor),
            num_samples=3, baseline="mean", xe_weight=0.5, seed=1,
        )
        model.optimizer.build(model.trainable_variables)
    # The train step itself, replicated with `strategy.run` (what `fit`
    # does), on the preprocessed batch.
    batch = next(iter(strategy.experimental_distribute_dataset(
        with_global_word_count(dataset.map(model.preprocessor)).take(1)
    )))
    before = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    tf.function(lambda data: strategy.run(model.train_step, args=(data,)))(batch)
    history = {{name: [float(tracker.result())] for name, tracker in model.self_critical_trackers.items()}}
    update = [ops.convert_to_numpy(v) - b for v, b in zip(model.trainable_variables, before)]
    return history, update

one, one_update = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
two, two_update = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
results["one"] = {{key: values[0] for key, values in one.items()}}
results["two"] = {{key: values[0] for key, values in two.items()}}
results["update_norm"] = float(np.sqrt(sum(np.sum(u ** 2) for u in one_update)))
results["max_update_difference"] = max(
    float(np.max(np.abs(a - b))) for a, b in zip(one_update, two_update)
)
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.slow
@tensorflow_only("tf.distribute.MirroredStrategy")
def test_mirrored_strategy_two_replicas_match_one():
    tests = os.path.dirname(os.path.abspath(__file__))
    script = textwrap.dedent(MIRRORED_SCRIPT.format(tests=tests))
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = [row for row in completed.stdout.splitlines() if row.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS") :])
    one, two = results["one"], results["two"]
    assert one["reward"] > 0.0 and abs(one["advantage"]) < 1e-5
    assert results["update_norm"] > 1e-3
    for name in TRACKERS:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert results["max_update_difference"] < 1e-5, results
    assert "plain_error" not in results, results["plain_error"]
    for name in TRACKERS:
        assert np.isfinite(results["plain"][name]), results["plain"]
