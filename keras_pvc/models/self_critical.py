"""Self-critical sequence training (REINFORCE with a baseline) for captioners.

The whole idea (Rennie et al., 2017), per batch:

1. sample K captions per video from the decoder (multinomial, seeded);
2. a baseline per video: the reward of its greedy caption ("greedy", SCST)
   or, for each sample, the mean reward of the other K-1 ("mean", Luo 2020);
3. score everything with the reward (CIDEr-D on token ids, in the graph);
4. minimise -(r - b) * sum(log p(sampled words)), masked after `<eos>`,
   averaged over words; optionally plus `xe_weight` * cross-entropy and
   minus `entropy_weight` * entropy.

Sampling and the baseline carry no gradient: samples are integer ids, and
their log-probabilities come from a teacher-forced pass inside the tape.
The decoder runs with dropout off in this phase so that the pass that
samples and the pass that differentiates are the same policy.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_pvc.models.video_captioner_preprocessor import BOS_ID
from keras_pvc.models.video_captioner_preprocessor import EOS_ID
from keras_pvc.models.video_captioner_preprocessor import PAD_ID

BASELINES = ("greedy", "mean")


def mask_after_eos(token_ids):
    """1.0 for tokens up to and including the first `<eos>`, 0.0 after it."""
    is_eos = ops.cast(ops.equal(token_ids, EOS_ID), "int32")
    eos_before = ops.cumsum(is_eos, axis=1) - is_eos
    return ops.cast(ops.equal(eos_before, 0), "float32")


def decode(decoder, cache, max_length, seed_generator=None):
    """Decodes `max_length` words from a cache, greedily or by sampling.

    Args:
        decoder: a `CaptionDecoder` (anything with `step(ids, cache)`).
        cache: the decoder cache for N videos.
        max_length: int. Words to decode.
        seed_generator: `keras.random.SeedGenerator` to sample with, or
            None for greedy (argmax) decoding.

    Returns:
        int32 ids `(N, max_length)`; everything after the first `<eos>` is
        `<pad>`.
    """
    batch_size = ops.shape(cache[0])[0]
    token_ids = ops.full((batch_size,), BOS_ID, "int32")
    words = []
    for _ in range(max_length):
        logits, cache = decoder.step(token_ids, cache)
        if seed_generator is None:
            token_ids = ops.cast(ops.argmax(logits, axis=-1), "int32")
        else:
            token_ids = ops.cast(
                keras.random.categorical(logits, 1, seed=seed_generator)[:, 0],
                "int32",
            )
        words.append(token_ids)
    words = ops.stack(words, axis=1)
    return ops.where(mask_after_eos(words) > 0, words, PAD_ID)


def repeat_cache(cache, times):
    """Repeats every video's cache entries `times` times (video-major)."""
    return tuple(ops.repeat(entry, times, axis=0) for entry in cache)


def policy_gradient_loss(log_probs, token_ids, advantages):
    """The REINFORCE loss: -(advantage) x log p, averaged over real words.

    Args:
        log_probs: float `(N, L, V)` log-softmax of the decoder.
        token_ids: int `(N, L)` the sampled words (padded after `<eos>`).
        advantages: float `(N,)` reward minus baseline (no gradient).

    Returns:
        A scalar loss.
    """
    chosen = ops.take_along_axis(
        log_probs, ops.expand_dims(ops.cast(token_ids, "int32"), -1), axis=-1
    )[..., 0]
    mask = mask_after_eos(token_ids)
    advantages = ops.stop_gradient(ops.expand_dims(advantages, -1))
    return -ops.sum(advantages * chosen * mask) / ops.maximum(ops.sum(mask), 1.0)


def entropy(log_probs, token_ids):
    """Mean entropy of the decoder's distributions over real sample words."""
    mask = mask_after_eos(token_ids)
    per_step = -ops.sum(ops.exp(log_probs) * log_probs, axis=-1)
    return ops.sum(per_step * mask) / ops.maximum(ops.sum(mask), 1.0)


class SelfCriticalConfig:
    """Settings of the self-critical phase (kept in the model's config).

    Args:
        reward: str or dict. `"cider_d"` (in the graph) or a mix of
            `cider_d`, `bleu_4`, `rouge_l`... weights (on the host).
        num_samples: int. K samples per video.
        baseline: str. `"greedy"` or `"mean"`.
        xe_weight: float. Weight of the cross-entropy mixed in.
        entropy_weight: float. Weight of an entropy bonus.
        document_frequency: dict with `codes`, `counts`, `num_documents` —
            CIDEr-D's document frequencies from the training references.
        seed: int. Seed of the sampler.
    """

    def __init__(
        self,
        reward="cider_d",
        num_samples=5,
        baseline="greedy",
        xe_weight=0.0,
        entropy_weight=0.0,
        document_frequency=None,
        seed=None,
    ):
        if baseline not in BASELINES:
            raise ValueError(f"`baseline` must be one of {BASELINES}, got {baseline!r}.")
        if baseline == "mean" and num_samples < 2:
            raise ValueError("The 'mean' baseline needs `num_samples` >= 2.")
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be >= 1, got {num_samples}.")
        self.reward = reward
        self.num_samples = int(num_samples)
        self.baseline = baseline
        self.xe_weight = float(xe_weight)
        self.entropy_weight = float(entropy_weight)
        self.document_frequency = document_frequency
        self.seed = seed

    def get_config(self):
        return dict(vars(self))


def document_frequency_of(train_reference_ids, vocabulary_size):
    """CIDEr-D document frequencies of training references, as a config dict."""
    from keras_pvc.rewards import cider_d_document_frequency

    codes, counts, num_documents = cider_d_document_frequency(
        np.asarray(train_reference_ids), vocabulary_size
    )
    return {
        "codes": np.asarray(codes, "int64").tolist(),
        "counts": np.asarray(counts, "int64").tolist(),
        "num_documents": int(num_documents),
    }


def build_reward_function(config, vocabulary):
    """The reward callable `(candidates, references, video_index) -> (N,)`."""
    from keras_pvc.rewards import CiderDReward
    from keras_pvc.rewards import HostCaptionReward

    weights = {config.reward: 1.0} if isinstance(config.reward, str) else dict(config.reward)
    frequency = config.document_frequency
    if set(weights) == {"cider_d"}:
        reward = CiderDReward(
            frequency["codes"],
            frequency["counts"],
            frequency["num_documents"],
            len(vocabulary),
        )
        scale = float(weights["cider_d"])
        return reward if scale == 1.0 else (lambda *a, **k: scale * reward(*a, **k))
    return HostCaptionReward(weights, vocabulary, frequency)


class SelfCriticalTrainer:
    """The custom `train_step` of a `VideoCaptioner` in self-critical mode.

    Holds the trackers (`keras.metrics.Mean`, exposed through the model's
    `metrics`) and the reward; `VideoCaptioner.train_step` delegates here.
    """

    def __init__(self, model, config):
        self.model = model
        self.config = config
        self.reward_function = build_reward_function(
            config, model.preprocessor.vocabulary
        )

    def train_step(self, data):
        model, config = self.model, self.config
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if "reference_ids" not in x:
            raise ValueError(
                "Self-critical training needs every reference of each video "
                "in the batch as `reference_ids` (B, R, L); build the dataset "
                "with `caption_dataset(..., references=True)`."
            )
        references = x["reference_ids"]
        backbone = model.backbone
        decoder = backbone.caption_decoder
        num_samples = config.num_samples
        max_length = model.caption_length + 1
        inputs = {key: x[key] for key in (backbone.input_kind, "frame_mask")}

        with tf.GradientTape() as tape:
            sequence, hidden, cell = backbone.encode(inputs, training=False)
            cache = decoder.initial_cache(sequence, inputs["frame_mask"], hidden, cell)
            # Samples and the greedy baseline: integer ids, no gradient.
            with tape.stop_recording():
                samples = decode(
                    decoder,
                    repeat_cache(cache, num_samples),
                    max_length,
                    model.self_critical_seed_generator,
                )
                batch_size = ops.shape(sequence)[0]
                video_index = ops.repeat(ops.arange(batch_size), num_samples)
                rewards = self.reward_function(samples, references, video_index)
                rewards = ops.cast(rewards, "float32")
                greedy = decode(decoder, cache, max_length)
                greedy_rewards = ops.cast(
                    self.reward_function(greedy, references, ops.arange(batch_size)),
                    "float32",
                )
                per_video = ops.reshape(rewards, (-1, num_samples))
                if config.baseline == "greedy":
                    baseline = ops.repeat(greedy_rewards, num_samples)
                else:
                    others = ops.sum(per_video, axis=1, keepdims=True) - per_video
                    baseline = ops.reshape(others / (num_samples - 1), (-1,))
                advantages = rewards - baseline
            # Log-probabilities of the samples, teacher-forced, with gradient.
            sampled_inputs = ops.concatenate(
                [ops.full((ops.shape(samples)[0], 1), BOS_ID, "int32"), samples[:, :-1]],
                axis=1,
            )
            repeat = lambda tensor: ops.repeat(tensor, num_samples, axis=0)  # noqa: E731
            logits = decoder(
                sampled_inputs,
                repeat(sequence),
                repeat(inputs["frame_mask"]),
                initial_state=(repeat(hidden), repeat(cell)),
                training=False,
            )
            log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
            loss = policy_gradient_loss(log_probs, samples, advantages)
            mean_entropy = entropy(log_probs, samples)
            if config.entropy_weight:
                loss = loss - config.entropy_weight * mean_entropy
            num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if config.xe_weight:
                xe_inputs = {key: x[key] for key in model.backbone.input}
                predictions = model(xe_inputs, training=True)
                # `compute_loss` comes already divided by the replica count.
                xe_loss = num_replicas * model.compute_loss(
                    x=xe_inputs, y=y, y_pred=predictions, sample_weight=sample_weight
                )
                loss = loss + config.xe_weight * xe_loss
            # Replicas' gradients are summed: each contributes 1/replicas.
            scaled_loss = model.optimizer.scale_loss(loss / num_replicas)

        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        model.optimizer.apply(gradients, variables)

        trackers = model.self_critical_trackers
        trackers["loss"].update_state(loss)
        trackers["reward"].update_state(rewards)
        trackers["baseline"].update_state(baseline)
        trackers["advantage"].update_state(advantages)
        trackers["greedy_reward"].update_state(greedy_rewards)
        trackers["entropy"].update_state(mean_entropy)
        return {name: tracker.result() for name, tracker in trackers.items()}
