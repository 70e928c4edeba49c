import keras
import keras_hub
import numpy as np
from keras import ops

from keras_pvc.models.video_captioner_backbone import VideoCaptionerBackbone
from keras_pvc.models.video_captioner_preprocessor import BOS_ID
from keras_pvc.models.video_captioner_preprocessor import EOS_ID
from keras_pvc.models.video_captioner_preprocessor import GLOBAL_WORDS
from keras_pvc.models.video_captioner_preprocessor import VideoCaptionerPreprocessor

# Inputs that ride along in batches and that the network does not take.
_RIDERS = frozenset(("reference_ids", GLOBAL_WORDS))


def masked_accuracy(y_true, y_pred):
    """Next-word accuracy; weight it with the padding mask (sample_weight)."""
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), y_true.dtype)
    return ops.cast(ops.equal(y_true, predicted), "float32")


def get_sampler(sampler):
    """A `keras_hub.samplers.Sampler` from a name, a config or an instance."""
    if isinstance(sampler, keras_hub.samplers.Sampler):
        return sampler
    if sampler == "beam":
        return keras_hub.samplers.BeamSampler(num_beams=5)
    try:
        return keras_hub.samplers.get(sampler)
    except ValueError as error:
        raise ValueError(
            f"Unknown sampler {sampler!r}: use 'greedy', 'beam', 'top_k', "
            "'top_p', 'random' or a keras_hub.samplers.Sampler."
        ) from error


@keras.saving.register_keras_serializable(package="keras_pvc")
class VideoCaptioner(keras_hub.models.Task):
    """Captions videos: a `VideoCaptionerBackbone` and its preprocessor.

    Trains with `fit` on teacher-forced next-word cross-entropy (the
    preprocessor turns captions into inputs, labels and a padding mask) and
    captions with `generate`, which runs the video encoder once and then
    decodes word by word with a `keras_hub.samplers` sampler.

    Args:
        backbone: `VideoCaptionerBackbone`.
        preprocessor: `VideoCaptionerPreprocessor` or None.
        **kwargs: Standard model arguments.

    Example:
    ```python
    model = keras_pvc.from_preset("procedural", vocabulary=vocabulary)
    model.fit(train_ds, validation_data=val_ds, epochs=10)
    model.generate({"frames": frames, "frame_mask": frame_mask})
    # ["a red circle is left of a blue square", ...]
    ```
    """

    backbone_cls = VideoCaptionerBackbone
    preprocessor_cls = VideoCaptionerPreprocessor

    def __init__(self, backbone, preprocessor=None, self_critical=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = backbone.input
        outputs = backbone(inputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # Traced `generate` functions by sampler, and one sampler instance per
        # name: `generate(x, "greedy")` traces once, not on every call.
        self._generate_functions = {}
        self._named_samplers = {}
        self.self_critical = None
        if self_critical is not None:
            self.enable_self_critical(**self_critical)

    # === Self-critical training ===

    def enable_self_critical(
        self,
        reward="cider_d",
        train_references=None,
        num_samples=5,
        baseline="greedy",
        xe_weight=0.0,
        entropy_weight=0.0,
        seed=None,
        document_frequency=None,
    ):
        """Switches `fit` to self-critical REINFORCE on a caption reward.

        After this call, every `fit` step samples `num_samples` captions per
        video, scores them (and the baseline) with `reward` against the
        batch's `reference_ids`, and follows the policy gradient (see
        `keras_pvc.models.self_critical`). Validation (`test_step`) stays
        cross-entropy. Logs: `loss`, `reward`, `baseline`, `advantage`,
        `greedy_reward`, `entropy`. `disable_self_critical()` switches back.

        Args:
            reward: str or dict. `"cider_d"` (CIDEr-D in the graph), or
                weights of `cider_d`, `bleu_1`..`bleu_4`, `rouge_l` (host).
            train_references: int array `(clips, R, L)`: every training
                reference as token ids (`caption_dataset`'s
                `reference_ids`), for CIDEr-D's document frequencies.
            num_samples: int. Captions sampled per video (K).
            baseline: str. `"greedy"` (self-critical, Rennie et al. 2017)
                or `"mean"` (mean reward of the other K-1 samples).
            xe_weight: float. Cross-entropy mixed into the loss.
            entropy_weight: float. Entropy bonus.
            seed: int or None. Seeds the sampler's `SeedGenerator`.
            document_frequency: dict or None. Precomputed frequencies (from a
                saved config) instead of `train_references`.
        """
        from keras_pvc.models.self_critical import SelfCriticalConfig
        from keras_pvc.models.self_critical import SelfCriticalTrainer
        from keras_pvc.models.self_critical import document_frequency_of

        if self.preprocessor is None or not self.preprocessor.vocabulary:
            raise ValueError("Self-critical training needs a preprocessor with a vocabulary.")
        if document_frequency is None:
            if train_references is None:
                raise ValueError(
                    "`enable_self_critical` needs `train_references` (token ids "
                    "of the training references) for CIDEr-D's document frequencies."
                )
            document_frequency = document_frequency_of(
                train_references, self.preprocessor.vocabulary_size
            )
        config = SelfCriticalConfig(
            reward=reward,
            num_samples=num_samples,
            baseline=baseline,
            xe_weight=xe_weight,
            entropy_weight=entropy_weight,
            document_frequency=document_frequency,
            seed=seed,
        )
        if getattr(self, "self_critical_seed_generator", None) is None:
            self.self_critical_seed_generator = keras.random.SeedGenerator(
                seed, name="self_critical_seed_generator"
            )
            self.self_critical_trackers = {
                name: keras.metrics.Mean(name=name)
                for name in (
                    "loss",
                    "reward",
                    "baseline",
                    "advantage",
                    "greedy_reward",
                    "entropy",
                )
            }
        self.self_critical = SelfCriticalTrainer(self, config)
        # A traced train function would still be the cross-entropy one; a
        # test function compiled under `keras.distribution` keeps the old
        # state's shardings (the trackers and seed state are new).
        self.train_function = None
        self.test_function = None

    def disable_self_critical(self):
        """Switches `fit` back to cross-entropy."""
        self.self_critical = None
        self.train_function = None
        self.test_function = None

    @property
    def metrics(self):
        metrics = super().metrics
        trackers = getattr(self, "self_critical_trackers", None)
        if trackers is None:
            return metrics
        tracked = list(trackers.values())
        metrics = [metric for metric in metrics if all(metric is not t for t in tracked)]
        if self.self_critical is not None:
            # Metrics only an XE step builds (accuracy) have no result yet
            # when self-critical training starts from a fresh or loaded model.
            metrics = [metric for metric in metrics if getattr(metric, "built", True)]
            # First, so that in `test_step` results the cross-entropy `loss`
            # (listed later) wins over the self-critical one of the same name.
            return tracked + metrics
        return metrics

    def call(self, inputs, training=None, mask=None):
        # `reference_ids` (for rewards) and `global_words` (the loss's
        # normaliser under a strategy) ride along in batches; the network
        # does not take them.
        if isinstance(inputs, dict) and _RIDERS.intersection(inputs):
            inputs = {k: v for k, v in inputs.items() if k not in _RIDERS}
            if isinstance(mask, dict):
                mask = {k: v for k, v in mask.items() if k not in _RIDERS}
        return super().call(inputs, training=training, mask=mask)

    @staticmethod
    def _model_inputs(data):
        """Drops `reference_ids` (for rewards only) from a batch's inputs."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict) and "reference_ids" in x:
            x = {key: value for key, value in x.items() if key != "reference_ids"}
        return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

    # Keras' trainers call the steps differently per backend: JAX's are
    # stateless, `train_step(state, data) -> (logs, state)`; TensorFlow's and
    # torch's take `data` and update variables in place. Cross-entropy is
    # Keras' own step on every backend (minus `reference_ids`); self-critical
    # training delegates to `SelfCriticalTrainer`, which has both forms.
    if keras.backend.backend() == "jax":

        def train_step(self, state, data):
            if self.self_critical is not None:
                return self.self_critical.stateless_train_step(state, data)
            return super().train_step(state, self._model_inputs(data))

        def test_step(self, state, data):
            logs, state = super().test_step(state, self._model_inputs(data))
            return self._validation_logs(logs), state

        def predict_step(self, state, data):
            return super().predict_step(state, self._model_inputs(data))

    else:

        def train_step(self, data):
            from keras_pvc.models.multi_worker import multi_worker_logs

            if self.self_critical is not None:
                return multi_worker_logs(self.self_critical.train_step(data))
            return multi_worker_logs(super().train_step(self._model_inputs(data)))

        def test_step(self, data):
            from keras_pvc.models.multi_worker import multi_worker_logs

            logs = super().test_step(self._model_inputs(data))
            return multi_worker_logs(self._validation_logs(logs))

        def predict_step(self, data):
            return super().predict_step(self._model_inputs(data))

    if keras.backend.backend() == "tensorflow":

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            # Keras 3.15 fails here on dict inputs under
            # MultiWorkerMirroredStrategy (keras-team/keras issue 20329):
            # see `keras_pvc.models.multi_worker.symbolic_build_batch`.
            if iterator is not None and self._distribute_strategy is not None:
                from keras_pvc.models.multi_worker import symbolic_build_batch

                data_batch = symbolic_build_batch(self.distribute_strategy, iterator)
                iterator = None
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' loss; under a strategy, the global batch's mean over words.

        When the batch carries `global_words` (added by
        `keras_pvc.training.distribute.Distribution.prepare_dataset` on TensorFlow)
        and the model was compiled with the "auto" loss, this replica's
        summed word cross-entropy is divided by the global batch's word
        count: the replicas' summed gradients are then one device's update
        on the whole batch, however its words fall between replicas. No
        collective runs in the loss. Otherwise (one device, JAX's global
        view, a loss of your own) it is Keras' `compute_loss`.
        """
        words = x.get(GLOBAL_WORDS) if isinstance(x, dict) else None
        if words is None or y is None or not getattr(self, "_word_mean_loss", False):
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        losses = keras.losses.sparse_categorical_crossentropy(
            y, ops.cast(y_pred, "float32"), from_logits=True
        )
        if sample_weight is not None:
            losses = losses * ops.cast(sample_weight, "float32")
        # Every row holds the same count; the 1 keeps an empty replica's
        # share (a short validation batch) a finite 0.
        count = ops.max(ops.concatenate([ops.cast(words, "float32"), ops.ones((1,))]))
        total = ops.sum(losses) / count
        for extra in self.losses:
            total = total + self._aggregate_additional_loss(extra)
        return total

    def _validation_logs(self, logs):
        if self.self_critical is None:
            return logs
        # Validation is cross-entropy; the reward trackers are train-only.
        names = set(self.self_critical_trackers) - {"loss"}
        return {key: value for key, value in logs.items() if key not in names}

    def get_config(self):
        config = super().get_config()
        if self.self_critical is not None:
            config["self_critical"] = self.self_critical.config.get_config()
        return config

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with `shuffle=False` by default for `tf.data`.

        A `tf.data.Dataset` (what `keras_pvc.datasets` builds) shuffles in
        its own pipeline; `fit` cannot shuffle one and warns when its
        default `shuffle=True` meets one. Pass `shuffle` to choose. A dict
        of arrays is reshuffled every epoch unless `shuffle=False`.
        """
        x = args[0] if args else kwargs.get("x")
        if (
            isinstance(x, dict)
            and len(args) < 2
            and kwargs.get("shuffle", True)
            and not kwargs.get("validation_split")
        ):
            # keras-hub would batch a dict of arrays unshuffled (issue 16).
            from keras_pvc.models.numpy_inputs import shuffled_numpy_dataset

            x = shuffled_numpy_dataset(x, kwargs.pop("batch_size", None))
            args, kwargs["x"], kwargs["shuffle"] = (), x, False
        # `shuffle` is fit's 8th positional argument.
        if "shuffle" not in kwargs and len(args) < 8 and hasattr(x, "element_spec"):
            kwargs["shuffle"] = False
        return super().fit(*args, **kwargs)

    def get_compile_config(self):
        return {"learning_rate": None}

    def compile_from_config(self, config):
        self.compile()
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compile(
        self,
        optimizer="auto",
        loss="auto",
        *,
        weighted_metrics="auto",
        learning_rate=1e-3,
        clipnorm=5.0,
        **kwargs,
    ):
        """Adam, masked sparse cross-entropy and masked accuracy by default.

        Args:
            optimizer: "auto" (Adam with `learning_rate` and `clipnorm`), or
                any Keras optimizer.
            loss: "auto" (sparse categorical cross-entropy on logits; the
                padding mask arrives as `sample_weight`), or any loss.
            weighted_metrics: "auto" (next-word accuracy over real words).
            learning_rate: float. For the "auto" optimizer.
            clipnorm: float. Gradient clipping for the "auto" optimizer.
            **kwargs: Passed to `keras.Model.compile`.
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(
                learning_rate=learning_rate, clipnorm=clipnorm
            )
        # The "auto" loss is also the one `compute_loss` normalises over a
        # distributed global batch's words.
        self._word_mean_loss = loss == "auto"
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            )
        if weighted_metrics == "auto":
            weighted_metrics = [
                keras.metrics.MeanMetricWrapper(masked_accuracy, name="accuracy")
            ]
        super().compile(
            optimizer=optimizer,
            loss=loss,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )

    @property
    def caption_length(self):
        if self.preprocessor is not None:
            return self.preprocessor.caption_length
        return 20

    def _generate_function(self, sampler, max_length, length_penalty):
        key = (id(sampler), max_length, length_penalty)
        # The entry keeps its sampler alive, so its id is not reused.
        cached_sampler, cached = self._generate_functions.get(key, (None, None))
        if cached_sampler is sampler:
            return cached
        original_sampler = sampler
        rerank = isinstance(sampler, keras_hub.samplers.BeamSampler) and (
            length_penalty is not None
        )
        if rerank:
            sampler = keras_hub.samplers.BeamSampler(
                num_beams=sampler.num_beams,
                return_all_beams=True,
                temperature=sampler.temperature,
            )

        def generate_step(inputs):
            return self._generate_step(
                inputs, sampler, max_length, length_penalty if rerank else None
            )

        generate = self._compile_generate_step(generate_step, sampler)
        self._generate_functions[key] = (original_sampler, generate)
        return generate

    def _compile_generate_step(self, generate_step, sampler):
        """Compiles `generate_step(inputs) -> ids` as keras-hub's `CausalLM`.

        TensorFlow: a `tf.function` (the sampler loops with `ops.while_loop`,
        so no AutoGraph). JAX: `jax.jit` of a pure function of the inputs and
        every variable's value (the model's and the sampler's seed state),
        run in a `keras.StatelessScope`; the sampler's new seed state is
        assigned back. PyTorch: eager under `torch.no_grad()`.
        """
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.function(generate_step, reduce_retracing=True, autograph=False)
        if backend == "torch":
            import torch

            def no_grad_generate(inputs):
                with torch.no_grad():
                    return generate_step(inputs)

            return no_grad_generate
        if backend != "jax":
            return generate_step
        import jax

        variables = (
            list(sampler.variables)
            + list(self.trainable_variables)
            + list(self.non_trainable_variables)
        )
        num_sampler_variables = len(sampler.variables)

        @jax.jit
        def stateless_generate(inputs, values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                token_ids = generate_step(inputs)
            sampler_values = []
            for variable in variables[:num_sampler_variables]:
                value = scope.get_current_value(variable)
                sampler_values.append(variable.value if value is None else value)
            return token_ids, sampler_values

        def jax_generate(inputs):
            values = [variable.value for variable in variables]
            token_ids, sampler_values = stateless_generate(inputs, values)
            # Only the sampler's seeds change while generating.
            for variable, value in zip(variables, sampler_values):
                variable.assign(value)
            return token_ids

        return jax_generate

    def _generate_step(self, inputs, sampler, max_length, length_penalty):
        """Encodes the videos once, then samples words; ids `(B, max_length)`.

        With `length_penalty` (a float), `sampler` returns all beams and the
        best by `log p / length**length_penalty` is kept.
        """
        backbone = self.backbone
        decoder = backbone.caption_decoder

        def next_token(prompt, cache, index):
            token_ids = ops.take(prompt, index - 1, axis=1)
            logits, cache = decoder.step(token_ids, cache)
            return logits, None, cache

        sequence, memory_mask, hidden, cell = backbone.encode(inputs, training=False)
        cache = decoder.initial_cache(sequence, memory_mask, hidden, cell)
        batch_size = ops.shape(sequence)[0]
        prompt = ops.concatenate(
            [
                ops.full((batch_size, 1), BOS_ID, "int32"),
                ops.zeros((batch_size, max_length), "int32"),
            ],
            axis=1,
        )
        prompt_mask = ops.concatenate(
            [
                ops.ones((batch_size, 1), "bool"),
                ops.zeros((batch_size, max_length), "bool"),
            ],
            axis=1,
        )
        token_ids = sampler(
            next_token,
            prompt,
            cache=cache,
            index=1,
            mask=prompt_mask,
            stop_token_ids=[EOS_ID],
        )
        if length_penalty is not None:
            return self._best_beam(
                token_ids[0], sequence, memory_mask, hidden, cell,
                sampler.num_beams, length_penalty,
            )
        return token_ids[:, 1:]

    def _best_beam(
        self, beams, sequence, memory_mask, hidden, cell, num_beams, length_penalty
    ):
        """Re-scores beams `(B, beams, L)` by log p / length**length_penalty."""
        from keras_pvc.models.self_critical import mask_after_eos

        decoder = self.backbone.caption_decoder
        length = ops.shape(beams)[-1]
        flat = ops.reshape(beams, (-1, length))
        tokens = flat[:, 1:]

        def repeat(tensor):
            return ops.repeat(tensor, num_beams, axis=0)

        logits = decoder(
            flat[:, :-1],
            repeat(sequence),
            repeat(memory_mask),
            initial_state=(repeat(hidden), repeat(cell)),
        )
        log_probs = ops.take_along_axis(
            ops.log_softmax(ops.cast(logits, "float32"), axis=-1),
            ops.expand_dims(tokens, -1),
            axis=-1,
        )[..., 0]
        mask = mask_after_eos(tokens)
        lengths = ops.maximum(ops.sum(mask, axis=1), 1.0)
        scores = ops.sum(log_probs * mask, axis=1) / lengths**length_penalty
        best = ops.argmax(ops.reshape(scores, (-1, num_beams)), axis=1)
        tokens = ops.reshape(tokens, (-1, num_beams, length - 1))
        return ops.take_along_axis(tokens, best[:, None, None], axis=1)[:, 0]

    def _get_sampler(self, sampler):
        """`get_sampler`, with one instance per name for this model."""
        if not isinstance(sampler, str):
            return get_sampler(sampler)
        if sampler not in self._named_samplers:
            self._named_samplers[sampler] = get_sampler(sampler)
        return self._named_samplers[sampler]

    def generate_ids(
        self, inputs, sampler="greedy", max_length=None, length_penalty=1.0
    ):
        """Like `generate` but returns token ids `(B, max_length)`."""
        sampler = self._get_sampler(sampler)
        max_length = max_length or self.caption_length + 1
        tensorflow = keras.backend.backend() == "tensorflow"
        inputs = {
            # Other backends take tf.data's eager tensors through numpy.
            key: ops.convert_to_tensor(value if tensorflow else np.asarray(value))
            for key, value in inputs.items()
            if key in (self.backbone.input_kind, "frame_mask")
        }
        if self.backbone.input_kind not in inputs:
            raise ValueError(
                f"`generate` needs `{self.backbone.input_kind}` in its inputs; "
                f"got keys {sorted(inputs)}."
            )
        if "frame_mask" not in inputs:
            video = inputs[self.backbone.input_kind]
            inputs["frame_mask"] = ops.ones(ops.shape(video)[:2], "bool")
        return self._generate_function(sampler, max_length, length_penalty)(inputs)

    def generate(
        self,
        inputs,
        sampler="greedy",
        max_length=None,
        batch_size=32,
        length_penalty=1.0,
    ):
        """Captions a batch of videos.

        Args:
            inputs: dict with `features` or `frames` (as the model takes
                them) and optionally `frame_mask`; numpy or tensors. A
                `tf.data.Dataset` of such dicts (or `(x, ...)` tuples) works
                too.
            sampler: `"greedy"`, `"beam"` (5 beams), `"top_k"`, `"top_p"`,
                `"random"`, or a `keras_hub.samplers.Sampler` instance.
            max_length: int or None. Words to decode at most (default:
                `caption_length + 1`).
            batch_size: int. Videos decoded at once, for array inputs.
            length_penalty: float or None. For beam search: the finished
                beams are re-scored by `log p / length**length_penalty`
                (1.0: mean log-probability per word; 0: total log p, which
                favours short captions); None keeps keras-hub's choice.

        Returns:
            list of str, one caption per video.
        """
        if self.preprocessor is None or not self.preprocessor.vocabulary:
            raise ValueError(
                "`generate` needs a preprocessor with a vocabulary to turn "
                "ids into words; set `model.preprocessor`."
            )
        sampler = self._get_sampler(sampler)
        captions = []
        for batch in self._iterate_batches(inputs, batch_size):
            token_ids = self.generate_ids(batch, sampler, max_length, length_penalty)
            captions.extend(self.preprocessor.detokenize(token_ids))
        return captions

    @staticmethod
    def _iterate_batches(inputs, batch_size):
        if isinstance(inputs, dict):
            size = len(next(iter(inputs.values())))
            for start in range(0, size, batch_size):
                yield {
                    key: np.asarray(value)[start : start + batch_size]
                    for key, value in inputs.items()
                }
            return
        for batch in inputs:
            if isinstance(batch, tuple):
                batch = batch[0]
            yield batch
