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
their log-probabilities come from a teacher-forced pass inside the
differentiated function. The decoder runs with dropout off in this phase so
that the pass that samples and the pass that differentiates are the same
policy.

The algorithm lives in one place, `SelfCriticalTrainer.loss_and_statistics`;
only the gradient step around it is per backend, as Keras' trainers require:
a `tf.GradientTape` (TensorFlow), `jax.value_and_grad` of a stateless
function of the variables' values with `optimizer.stateless_apply` and the
metric and seed states threaded through (JAX), `loss.backward()` (PyTorch).
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_pvc.models.video_captioner_preprocessor import BOS_ID
from keras_pvc.models.video_captioner_preprocessor import EOS_ID
from keras_pvc.models.video_captioner_preprocessor import GLOBAL_WORDS
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


def policy_gradient_loss(log_probs, token_ids, advantages, num_words=None):
    """The REINFORCE loss: -(advantage) x log p, averaged over real words.

    Args:
        log_probs: float `(N, L, V)` log-softmax of the decoder.
        token_ids: int `(N, L)` the sampled words (padded after `<eos>`).
        advantages: float `(N,)` reward minus baseline (no gradient).
        num_words: float or None. What to divide by: the words of these
            samples (None), or under data parallelism the words of the
            global batch (divided by the number of replicas, whose
            gradients are summed), so N replicas make one device's update.

    Returns:
        A scalar loss.
    """
    chosen = ops.take_along_axis(
        log_probs, ops.expand_dims(ops.cast(token_ids, "int32"), -1), axis=-1
    )[..., 0]
    mask = mask_after_eos(token_ids)
    advantages = ops.stop_gradient(ops.expand_dims(advantages, -1))
    if num_words is None:
        num_words = ops.sum(mask)
    return -ops.sum(advantages * chosen * mask) / ops.maximum(num_words, 1.0)


def sample_baselines(rewards, num_samples, baseline="greedy", greedy_rewards=None):
    """The baseline of every sample (no gradient flows through it).

    Args:
        rewards: float `(B * K,)` rewards of the samples, video-major.
        num_samples: int. K.
        baseline: str. `"greedy"`: the reward of the video's greedy caption
            (`greedy_rewards`, `(B,)`); `"mean"`: the mean reward of the
            video's other K-1 samples.
        greedy_rewards: float `(B,)`, for `"greedy"`.

    Returns:
        float `(B * K,)`.
    """
    if baseline == "greedy":
        return ops.repeat(greedy_rewards, num_samples)
    if baseline != "mean":
        raise ValueError(f"`baseline` must be one of {BASELINES}, got {baseline!r}.")
    per_video = ops.reshape(rewards, (-1, num_samples))
    others = ops.sum(per_video, axis=1, keepdims=True) - per_video
    return ops.reshape(others / (num_samples - 1), (-1,))


def entropy(log_probs, token_ids, num_words=None):
    """Mean entropy of the decoder's distributions over real sample words.

    `num_words` as in `policy_gradient_loss` (None: these samples' words).
    """
    mask = mask_after_eos(token_ids)
    per_step = -ops.sum(ops.exp(log_probs) * log_probs, axis=-1)
    if num_words is None:
        num_words = ops.sum(mask)
    return ops.sum(per_step * mask) / ops.maximum(num_words, 1.0)


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


def build_reward_function(config, vocabulary, xla_compatible=False):
    """The reward callable `(candidates, references, video_index) -> (N,)`.

    CIDEr-D alone is `CiderDReward`, `keras.ops` on every backend, compiled
    with the step. Host rewards (BLEU/ROUGE mixes) run in Python and cannot
    be compiled by TensorFlow's XLA (`xla_compatible=True`, for
    `compile(jit_compile=True)` on TensorFlow, refuses them); on JAX they
    run as `jax.pure_callback`s.
    """
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
            xla_compatible=xla_compatible,
        )
        scale = float(weights["cider_d"])
        return reward if scale == 1.0 else (lambda *a, **k: scale * reward(*a, **k))
    if xla_compatible:
        raise ValueError(
            f"The reward {config.reward!r} is computed on the host (Python) "
            "and cannot run under XLA: compile the model with "
            "`jit_compile=False`, or use reward='cider_d'."
        )
    return HostCaptionReward(weights, vocabulary, document_frequency=frequency)


class SelfCriticalTrainer:
    """The custom train step of a `VideoCaptioner` in self-critical mode.

    Holds the trackers (`keras.metrics.Mean`, exposed through the model's
    `metrics`) and the reward; `VideoCaptioner.train_step` delegates here
    (`train_step(data)` on TensorFlow and PyTorch, `stateless_train_step(
    state, data)` on JAX). The reward is built from the config when a step
    is traced, in its XLA form when the model is compiled with
    `jit_compile=True` on TensorFlow; assigning `reward_function` (any
    `(candidates, references, video_index) -> (N,)` function of token-id
    tensors) replaces it.
    """

    def __init__(self, model, config):
        self.model = model
        self.config = config
        self._reward_function = None
        self._built_rewards = {}
        # Fail now, not at the first step, on a bad reward config.
        self.reward_function  # noqa: B018

    @property
    def reward_function(self):
        if self._reward_function is not None:
            return self._reward_function
        xla = False
        if keras.backend.backend() == "tensorflow":
            try:
                xla = bool(self.model.jit_compile)
            except AttributeError:  # Not compiled yet.
                xla = False
        if xla not in self._built_rewards:
            # Built on first use, maybe while a step is traced: its constant
            # tables must live outside that graph to be reused by retraces.
            with _outside_any_graph():
                self._built_rewards[xla] = build_reward_function(
                    self.config, self.model.preprocessor.vocabulary, xla_compatible=xla
                )
        return self._built_rewards[xla]

    @reward_function.setter
    def reward_function(self, reward_function):
        self._reward_function = reward_function
        # A traced step would keep the old reward.
        self.model.train_function = None

    # === The algorithm (every backend) ===

    def loss_and_statistics(self, x, y=None, sample_weight=None, no_gradient=None):
        """The self-critical loss of a batch and the values the trackers log.

        Args:
            x: the batch's inputs, with `reference_ids` `(B, R, L)`.
            y: labels, for the mixed-in cross-entropy (`xe_weight`).
            sample_weight: their padding mask.
            no_gradient: a context-manager factory under which sampling and
                scoring run (TensorFlow: the tape stops recording; PyTorch:
                `torch.no_grad`), or None.

        Returns:
            `(loss, statistics)`: a scalar and a dict of `rewards`,
            `baseline`, `advantages` `(B*K,)`, `greedy_rewards` `(B,)`,
            `entropy` (scalar).
        """
        model, config = self.model, self.config
        if "reference_ids" not in x:
            raise ValueError(
                "Self-critical training needs every reference of each video "
                "in the batch as `reference_ids` (B, R, L); build the dataset "
                "with `caption_dataset(..., references=True)`."
            )
        no_gradient = no_gradient or contextlib.nullcontext
        references = x["reference_ids"]
        backbone = model.backbone
        decoder = backbone.caption_decoder
        num_samples = config.num_samples
        max_length = model.caption_length + 1
        inputs = {key: x[key] for key in (backbone.input_kind, "frame_mask")}

        sequence, memory_mask, hidden, cell = backbone.encode(inputs, training=False)
        cache = decoder.initial_cache(sequence, memory_mask, hidden, cell)
        # Samples and the greedy baseline: integer ids, no gradient.
        with no_gradient():
            samples = decode(
                decoder,
                repeat_cache(cache, num_samples),
                max_length,
                model.self_critical_seed_generator,
            )
            batch_size = ops.shape(sequence)[0]
            video_index = ops.repeat(ops.arange(batch_size), num_samples)
            reward_function = self.reward_function
            rewards = ops.cast(reward_function(samples, references, video_index), "float32")
            greedy = decode(decoder, cache, max_length)
            greedy_rewards = ops.cast(
                reward_function(greedy, references, ops.arange(batch_size)), "float32"
            )
            baseline = sample_baselines(
                rewards, num_samples, config.baseline, greedy_rewards
            )
            advantages = ops.stop_gradient(rewards - baseline)
        # Log-probabilities of the samples, teacher-forced, with gradient.
        sampled_inputs = ops.concatenate(
            [ops.full((ops.shape(samples)[0], 1), BOS_ID, "int32"), samples[:, :-1]],
            axis=1,
        )

        def repeat(tensor):
            return ops.repeat(tensor, num_samples, axis=0)

        logits = decoder(
            sampled_inputs,
            repeat(sequence),
            repeat(memory_mask),
            initial_state=(repeat(hidden), repeat(cell)),
            training=False,
        )
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        num_replicas = _num_replicas()
        # Normalised by the global batch's words: each replica's loss is
        # divided by the replica count below and the gradients are summed.
        global_words = _sum_over_replicas(ops.sum(mask_after_eos(samples)))
        replica_words = global_words / num_replicas
        loss = policy_gradient_loss(log_probs, samples, advantages, num_words=replica_words)
        mean_entropy = entropy(log_probs, samples, num_words=replica_words)
        if config.entropy_weight:
            loss = loss - config.entropy_weight * mean_entropy
        if config.xe_weight:
            xe_inputs = {key: x[key] for key in model.backbone.input}
            predictions = model(xe_inputs, training=True)
            if GLOBAL_WORDS in x:
                xe_inputs[GLOBAL_WORDS] = x[GLOBAL_WORDS]
            # `compute_loss` comes divided by the replica count (Keras'
            # scaling, or this replica's share of the global batch's words).
            xe_loss = num_replicas * model.compute_loss(
                x=xe_inputs, y=y, y_pred=predictions, sample_weight=sample_weight
            )
            loss = loss + config.xe_weight * xe_loss
        statistics = {
            "rewards": rewards,
            "baseline": baseline,
            "advantages": advantages,
            "greedy_rewards": greedy_rewards,
            "entropy": ops.stop_gradient(mean_entropy),
        }
        return loss, statistics

    def update_trackers(self, loss, statistics):
        """Feeds the step's values to the trackers; returns the logs."""
        model = self.model
        trackers = model.self_critical_trackers
        trackers["loss"].update_state(loss)
        # Keras' own `loss` tracker is in `model.metrics` too, and Keras may
        # report the epoch's metrics rather than the step's logs: same value.
        for metric in model.metrics:
            if metric.name == "loss" and metric is not trackers["loss"]:
                metric.update_state(loss)
        trackers["reward"].update_state(statistics["rewards"])
        trackers["baseline"].update_state(statistics["baseline"])
        trackers["advantage"].update_state(statistics["advantages"])
        trackers["greedy_reward"].update_state(statistics["greedy_rewards"])
        trackers["entropy"].update_state(statistics["entropy"])
        return {name: tracker.result() for name, tracker in trackers.items()}

    # === The gradient step, per backend ===

    def train_step(self, data):
        """The step of TensorFlow's and PyTorch's trainers (in place)."""
        backend = keras.backend.backend()
        if backend == "tensorflow":
            return self._tensorflow_train_step(data)
        if backend == "torch":
            return self._torch_train_step(data)
        raise ValueError(
            f"Self-critical training has no in-place step on {backend!r}; "
            "JAX uses `stateless_train_step`."
        )

    def _tensorflow_train_step(self, data):
        import tensorflow as tf

        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, statistics = self.loss_and_statistics(
                x, y, sample_weight, no_gradient=tape.stop_recording
            )
            # Replicas' gradients are summed: each contributes 1/replicas.
            scaled_loss = model.optimizer.scale_loss(loss / _num_replicas())
        variables = model.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # Embedding gradients arrive as IndexedSlices whose row count differs
        # between replicas (samples end at different lengths); a dense
        # all-reduce needs equal shapes.
        gradients = [
            tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
            for g in gradients
        ]
        model.optimizer.apply(gradients, variables)
        return self.update_trackers(loss, statistics)

    def _torch_train_step(self, data):
        import torch

        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        model.zero_grad()
        loss, statistics = self.loss_and_statistics(
            x, y, sample_weight, no_gradient=torch.no_grad
        )
        model.optimizer.scale_loss(loss).backward()
        variables = model.trainable_variables
        gradients = [variable.value.grad for variable in variables]
        with torch.no_grad():
            model.optimizer.apply(gradients, variables)
        return self.update_trackers(ops.stop_gradient(loss), statistics)

    def stateless_train_step(self, state, data):
        """JAX's step: `(state, data) -> (logs, state)`, no variable changes.

        `state` is `(trainable, non_trainable, optimizer, metrics)` values in
        the order of the model's variable lists; the sampler's seed state is
        a non-trainable variable, so each step draws new samples.
        """
        import jax

        model = self.model
        trainable, non_trainable, optimizer_values, metrics_values = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

        def loss_of(trainable):
            mapping = list(zip(model.trainable_variables, trainable)) + list(
                zip(model.non_trainable_variables, non_trainable)
            )
            with keras.StatelessScope(state_mapping=mapping) as scope:
                loss, statistics = self.loss_and_statistics(x, y, sample_weight)
            new_non_trainable = _current_values(scope, model.non_trainable_variables)
            with keras.StatelessScope(
                state_mapping=list(zip(model.optimizer.variables, optimizer_values))
            ):
                scaled_loss = model.optimizer.scale_loss(loss)
            return scaled_loss, (loss, statistics, new_non_trainable)

        (_, (loss, statistics, non_trainable)), gradients = jax.value_and_grad(
            loss_of, has_aux=True
        )(trainable)
        trainable, optimizer_values = model.optimizer.stateless_apply(
            optimizer_values, gradients, trainable
        )
        with keras.StatelessScope(
            state_mapping=list(zip(model.metrics_variables, metrics_values))
        ) as scope:
            logs = self.update_trackers(loss, statistics)
        metrics_values = _current_values(scope, model.metrics_variables)
        return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def _current_values(scope, variables):
    """Each variable's value in a `StatelessScope` (its own if unchanged)."""
    values = []
    for variable in variables:
        value = scope.get_current_value(variable)
        values.append(variable.value if value is None else value)
    return values


def _sum_over_replicas(value):
    """`value` summed over the replicas of a `tf.distribute` strategy (else itself)."""
    if keras.backend.backend() != "tensorflow":
        return value
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def _num_replicas():
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def _outside_any_graph():
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.init_scope()
