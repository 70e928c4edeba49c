"""A shared layer test, keras-hub style: config round trip, build, symbolic
and eager call, a `.keras` round trip inside a model, and one `fit` step."""

import os
import tempfile

import keras
import numpy as np


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape, call_kwargs=None):
    """Checks a layer the way every public keras_pvc layer must behave.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        inputs: list of numpy arrays, passed positionally to `call`.
        expected_output_shape: a shape tuple, or a tuple of them for layers
            with several outputs.
        call_kwargs: dict of extra keyword arguments to `call`.
    """
    call_kwargs = call_kwargs or {}
    inputs = _as_list(inputs)
    expected = (
        expected_output_shape
        if isinstance(expected_output_shape[0], tuple)
        else (expected_output_shape,)
    )

    # Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    # Registered serializable under the keras_pvc package.
    registered = keras.saving.get_registered_name(layer_cls)
    assert registered == f"keras_pvc>{layer_cls.__name__}", registered

    # Eager call.
    outputs = _as_list(layer(*inputs, **call_kwargs))
    assert tuple(tuple(o.shape) for o in outputs) == expected
    for output in outputs:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(output)))

    # Symbolic call in a functional model, with a None batch dimension.
    symbolic_inputs = [
        keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs
    ]
    symbolic_layer = layer_cls(**init_kwargs)
    symbolic_outputs = _as_list(symbolic_layer(*symbolic_inputs, **call_kwargs))
    for output, shape in zip(symbolic_outputs, expected):
        assert tuple(output.shape[1:]) == shape[1:]
    model = keras.Model(symbolic_inputs, symbolic_outputs)
    before = [keras.ops.convert_to_numpy(o) for o in _as_list(model(inputs))]

    # .keras round trip with safe_mode: identical outputs.
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path, safe_mode=True)
    after = [keras.ops.convert_to_numpy(o) for o in _as_list(reloaded(inputs))]
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, atol=1e-6)

    # One fit step moves the trainable weights.
    float_outputs = [o for o in symbolic_outputs if "float" in str(o.dtype)]
    trainable = [w for w in model.trainable_weights]
    if float_outputs and trainable:
        fit_model = keras.Model(symbolic_inputs, float_outputs[0])
        fit_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        start = [keras.ops.convert_to_numpy(w).copy() for w in trainable]
        target = np.ones((inputs[0].shape[0],) + tuple(float_outputs[0].shape[1:]))
        fit_model.fit(inputs, target, epochs=1, batch_size=inputs[0].shape[0], verbose=0)
        moved = [
            not np.allclose(s, keras.ops.convert_to_numpy(w))
            for s, w in zip(start, trainable)
        ]
        assert any(moved), "one fit step changed no weight"
    return layer


BACKEND = keras.backend.backend()


def tensorflow_only(reason):
    """A skip mark for tests of TensorFlow-only features, with the reason."""
    import pytest

    return pytest.mark.skipif(
        BACKEND != "tensorflow", reason=f"TensorFlow only: {reason}"
    )


def gradients(loss_fn, variables, inputs, compiled=False, return_loss=False):
    """Gradients of `loss_fn(*inputs)` w.r.t. `variables` and then `inputs`.

    The backend's own autodiff: a `tf.GradientTape` (in a `tf.function`
    when `compiled`), `jax.grad` over the variables' values in a
    `keras.StatelessScope` (under `jax.jit` when `compiled`), or torch's
    `backward()` (eager only). Returns numpy arrays, None for no gradient
    (and first the loss, with `return_loss`).
    """
    inputs = [np.asarray(x) for x in inputs]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        def tape_gradients(*tensors):
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                loss = loss_fn(*tensors)
            return loss, tape.gradient(loss, list(variables) + list(tensors))

        function = tf.function(tape_gradients) if compiled else tape_gradients
        loss, result = function(*[tf.constant(x) for x in inputs])
    elif BACKEND == "jax":
        import jax

        def pure_loss(values, tensors):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn(*tensors)

        function = jax.value_and_grad(pure_loss, argnums=(0, 1))
        if compiled:
            function = jax.jit(function)
        loss, (variable_grads, input_grads) = function(
            [v.value for v in variables], [jax.numpy.asarray(x) for x in inputs]
        )
        result = list(variable_grads) + list(input_grads)
    elif BACKEND == "torch":
        import torch

        if compiled:
            raise ValueError("No compiled gradients on torch here.")
        tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
        for variable in variables:
            variable.value.grad = None
        loss = loss_fn(*tensors)
        loss.backward()
        loss = loss.detach()
        result = [v.value.grad for v in variables] + [t.grad for t in tensors]
    else:
        raise ValueError(f"Unsupported backend {BACKEND!r}.")
    result = [None if g is None else keras.ops.convert_to_numpy(g) for g in result]
    if return_loss:
        return keras.ops.convert_to_numpy(loss), result
    return result


def slow_on_jax(test):
    """`slow` on JAX only, where compiling the decode loops costs ~20-50 s a
    test on the shared 2-core CPU (seconds on TensorFlow and torch)."""
    import pytest

    return pytest.mark.slow(pytest.mark.every_backend(test)) if BACKEND == "jax" else test


_PACKAGE_DECODE = {}


def split_independent_decode(decoder, cache, max_length, seed_generator=None):
    """Self-critical samples that do not depend on how a batch is split.

    A stand-in for `keras_pvc.models.self_critical.decode` in tests that
    compare several replicas or workers with one device: Gumbel-max with
    noise from each video's encoder state, the step and the sample's index,
    and `<eos>` after a number of words set the same way (so replicas hold
    different numbers of words). Without `seed_generator` (the greedy
    baseline) it is the package's own decode.
    """
    from keras import ops

    from keras_pvc.models import self_critical
    from keras_pvc.models.video_captioner_preprocessor import EOS_ID
    from keras_pvc.models.video_captioner_preprocessor import PAD_ID

    if seed_generator is None:
        return _PACKAGE_DECODE.get("decode", self_critical.decode)(decoder, cache, max_length)
    rows = ops.shape(cache[0])[0]
    # Rounded: a batch of 4 and two of 2 give encoder states that can differ
    # in the last bits (kernel blocking), which the hash below would amplify.
    video_key = ops.round(ops.sum(cache[2], axis=(1, 2)) * 100.0)
    sample_key = ops.cast(ops.arange(rows) % 3, "float32")
    vocabulary = ops.cast(ops.arange(decoder.vocabulary_size), "float32")
    token_ids = ops.full((rows,), 2, "int32")
    # Where each sample says <eos>: from the video and the sample's index.
    stop_at = 1 + (ops.cast(ops.abs(video_key), "int32") + ops.arange(rows) % 3) % (max_length - 1)
    ids = ops.arange(decoder.vocabulary_size)
    banned = ops.logical_or(ops.equal(ids, EOS_ID), ops.equal(ids, PAD_ID))
    words = []
    for step in range(max_length):
        logits, cache = decoder.step(token_ids, cache)
        phase = (video_key[:, None] * 12.9898 + sample_key[:, None] * 78.233
                 + vocabulary[None, :] * 37.719 + step * 4.581)
        uniform = ops.clip(ops.abs(ops.sin(phase) * 43758.5453) % 1.0, 1e-6, 1 - 1e-6)
        scores = ops.where(banned[None, :], -1e9, logits - ops.log(-ops.log(uniform)))
        token_ids = ops.cast(ops.argmax(scores, axis=-1), "int32")
        stop = ops.equal(step, stop_at)
        token_ids = ops.where(stop, ops.full_like(token_ids, EOS_ID), token_ids)
        words.append(token_ids)
    return ops.stack(words, axis=1)


def use_split_independent_decode():
    """Makes self-critical training sample with `split_independent_decode`."""
    from keras_pvc.models import self_critical

    _PACKAGE_DECODE.setdefault("decode", self_critical.decode)
    self_critical.decode = split_independent_decode
