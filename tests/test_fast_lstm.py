"""FastLSTM equals keras.layers.LSTM given the same weights, and the encoder
and decoder built on it compute what their keras.layers.LSTM versions did."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_pvc.layers import CaptionDecoder
from keras_pvc.layers import FastLSTM
from keras_pvc.layers import TemporalLSTMEncoder
from layer_testing import BACKEND
from layer_testing import gradients
from layer_testing import run_layer_test
from layer_testing import tensorflow_only

RNG = np.random.default_rng(0)
BATCH, STEPS, CHANNELS, UNITS = 3, 7, 5, 6
ATOL = 1e-5
WHILE_LOOP_ONLY_ON_TF = tensorflow_only("`loop='while_loop'` is a tf.while_loop")
LOOPS = ["scan", pytest.param("while_loop", marks=WHILE_LOOP_ONLY_ON_TF)]
COMPILED = [
    False,
    pytest.param(
        True,
        marks=pytest.mark.skipif(
            BACKEND == "torch", reason="no graph compilation on torch (eager autograd)"
        ),
    ),
]


def _inputs():
    sequences = RNG.normal(size=(BATCH, STEPS, CHANNELS)).astype("float32")
    # A full row, a right-padded row, and a row with holes and a masked start.
    mask = np.array(
        [[1] * STEPS, [1] * 4 + [0] * 3, [0, 1, 1, 0, 1, 1, 0]], bool
    )
    hidden = RNG.normal(size=(BATCH, UNITS)).astype("float32")
    cell = RNG.normal(size=(BATCH, UNITS)).astype("float32")
    return sequences, mask, hidden, cell


def _pair(loop, **kwargs):
    """A FastLSTM and a keras.layers.LSTM sharing random, non-trivial weights
    (and `zero_output_for_mask`, whose defaults differ: True here)."""
    kwargs.setdefault("zero_output_for_mask", True)
    fast = FastLSTM(UNITS, loop=loop, **kwargs)
    reference = keras.layers.LSTM(UNITS, **kwargs)
    fast.build((None, STEPS, CHANNELS))
    reference.build((None, STEPS, CHANNELS))
    weights = [RNG.normal(scale=0.5, size=w.shape).astype("float32") for w in fast.get_weights()]
    fast.set_weights(weights)
    reference.set_weights(weights)
    return fast, reference


def _assert_all_close(actual, expected):
    actual = actual if isinstance(actual, (list, tuple)) else [actual]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e), atol=ATOL
        )


def test_same_weight_layout_as_keras_lstm():
    fast, reference = _pair("scan")
    assert [w.path.split("/", 1)[1] for w in fast.weights] == [
        w.path.split("/", 1)[1] for w in reference.weights
    ]  # lstm_cell/kernel, lstm_cell/recurrent_kernel, lstm_cell/bias
    assert [tuple(w.shape) for w in fast.weights] == [
        (CHANNELS, 4 * UNITS), (UNITS, 4 * UNITS), (4 * UNITS,)
    ]
    # unit_forget_bias: the forget block starts at 1, as keras.layers.LSTM.
    layer = FastLSTM(UNITS)
    layer.build((None, 2, 3))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer.cell.bias),
        np.concatenate([np.zeros(UNITS), np.ones(UNITS), np.zeros(2 * UNITS)]),
    )


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_forward_equals_keras_lstm(loop, return_sequences):
    sequences, _, _, _ = _inputs()
    fast, reference = _pair(loop, return_sequences=return_sequences, return_state=True)
    _assert_all_close(fast(sequences), reference(sequences))


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("zero_output_for_mask", [True, False])
def test_masked_with_initial_state_equals_keras_lstm(
    loop, return_sequences, zero_output_for_mask
):
    sequences, mask, hidden, cell = _inputs()
    kwargs = dict(
        return_sequences=return_sequences,
        return_state=True,
        zero_output_for_mask=zero_output_for_mask,
    )
    fast, reference = _pair(loop, **kwargs)
    actual = fast(sequences, initial_state=[hidden, cell], mask=mask)
    expected = reference(sequences, initial_state=[hidden, cell], mask=mask)
    if BACKEND == "jax" and return_sequences and not zero_output_for_mask:
        # keras.layers.LSTM on JAX outputs the initial hidden state at masked
        # steps before a row's first real step; on TensorFlow and torch (and
        # FastLSTM on every backend) those outputs are zeros.
        expected = [keras.ops.convert_to_numpy(e) for e in expected]
        leading = np.cumsum(mask, axis=1) == 0
        expected[0][leading] = 0.0
    _assert_all_close(actual, expected)
    if return_sequences and zero_output_for_mask:
        outputs = keras.ops.convert_to_numpy(actual[0])
        assert np.all(outputs[~mask] == 0)


@pytest.mark.parametrize("loop", LOOPS)
def test_masked_steps_carry_the_state(loop):
    sequences, mask, hidden, cell = _inputs()
    fast, _ = _pair(loop, return_sequences=True, return_state=True)
    _, final_hidden, final_cell = fast(sequences[1:2], mask=mask[1:2])
    _, short_hidden, short_cell = fast(sequences[1:2, :4])
    _assert_all_close([final_hidden, final_cell], [short_hidden, short_cell])


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("zero_output_for_mask", [True, False])
@pytest.mark.parametrize("full_mask", [False, True])
@pytest.mark.parametrize("compiled", COMPILED)
def test_gradients_equal_keras_lstm(loop, zero_output_for_mask, full_mask, compiled):
    # A mask of all True takes FastLSTM's unmasked loop (`ops.cond`), eagerly
    # and compiled (`tf.function`, `jax.jit`); it must still equal the masked
    # reference. Gradients by each backend's autodiff (the hand-written
    # backward for FastLSTM's scan loop).
    sequences, mask, hidden, cell = _inputs()
    if full_mask:
        mask = np.ones_like(mask)
    fast, reference = _pair(
        loop,
        return_sequences=True,
        return_state=True,
        zero_output_for_mask=zero_output_for_mask,
    )
    output_weights = RNG.normal(size=(BATCH, STEPS, UNITS)).astype("float32")
    if BACKEND == "jax" and not zero_output_for_mask:
        # keras.layers.LSTM on JAX outputs the initial hidden state at masked
        # steps before a row's first real step (zeros on TensorFlow, torch and
        # in FastLSTM): the loss leaves those outputs out.
        output_weights[np.cumsum(mask, axis=1) == 0] = 0.0

    def layer_gradients(layer):
        def loss_fn(sequences, hidden, cell):
            outputs, final_hidden, final_cell = layer(
                sequences, initial_state=[hidden, cell], mask=mask
            )
            return (
                keras.ops.sum(outputs * keras.ops.convert_to_tensor(output_weights))
                + keras.ops.sum(final_hidden**2)
                + keras.ops.sum(final_cell)
            )

        return gradients(
            loss_fn, layer.trainable_weights, (sequences, hidden, cell), compiled
        )

    actual, expected = layer_gradients(fast), layer_gradients(reference)
    assert all(g is not None for g in actual)
    _assert_all_close(actual, expected)


@pytest.mark.skipif(BACKEND == "torch", reason="no graph compilation on torch")
def test_in_a_compiled_function():
    sequences, mask, _, _ = _inputs()
    fast, reference = _pair("scan", return_sequences=True)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda x, m: fast(x, mask=m))
    else:
        import jax

        compiled = jax.jit(lambda x, m: fast(x, mask=m))
    _assert_all_close(compiled(sequences, mask), reference(sequences, mask=mask))


def test_with_symbolic_batch():
    sequences, _, _, _ = _inputs()
    fast, reference = _pair("scan", return_sequences=True)
    # Keras masks flow in from a Masking layer.
    inputs = keras.Input((None, CHANNELS))
    masked = keras.layers.Masking(0.0)(inputs)
    model = keras.Model(inputs, fast(masked))
    padded = sequences.copy()
    padded[1, 4:] = 0.0
    _assert_all_close(model(padded), reference(padded, mask=padded.any(-1)))


def test_cell_step_matches_the_sequence():
    sequences, _, hidden, cell = _inputs()
    fast, _ = _pair("scan", return_sequences=True)
    outputs = fast(sequences, initial_state=[hidden, cell])
    state = [hidden, cell]
    for step in range(STEPS):
        output, state = fast.cell(sequences[:, step], state)
        _assert_all_close(output, outputs[:, step])


class _Holder(keras.layers.Layer):
    """Holds an LSTM under the attribute `lstm`, as CaptionDecoder does: a
    weights file addresses it as `lstm/cell/vars/0..2`, whatever its class.
    (Inside a list — TemporalLSTMEncoder.lstm_layers — Keras names it by
    class instead: `lstm_layers/lstm` became `lstm_layers/fast_lstm`.)"""

    def __init__(self, lstm, **kwargs):
        super().__init__(**kwargs)
        self.lstm = lstm

    def call(self, sequences):
        return self.lstm(sequences)


def test_weight_files_copy_across():
    sequences, _, _, _ = _inputs()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "lstm.weights.h5")
        source = keras.Sequential(
            [keras.Input((STEPS, CHANNELS)), _Holder(keras.layers.LSTM(UNITS))]
        )
        source.save_weights(path)
        target = keras.Sequential(
            [keras.Input((STEPS, CHANNELS)), _Holder(FastLSTM(UNITS))]
        )
        target.load_weights(path)
    _assert_all_close(target(sequences), source(sequences))


def test_dropout_only_while_training():
    sequences, _, _, _ = _inputs()
    layer = FastLSTM(UNITS, return_sequences=True, dropout=0.5, seed=1)
    inference = keras.ops.convert_to_numpy(layer(sequences))
    _assert_all_close(layer(sequences, training=False), inference)
    trained = keras.ops.convert_to_numpy(layer(sequences, training=True))
    assert np.all(np.isfinite(trained)) and not np.allclose(trained, inference)


def test_run_layer_test():
    sequences, _, _, _ = _inputs()
    run_layer_test(
        FastLSTM,
        {"units": UNITS, "return_sequences": True, "return_state": True},
        [sequences],
        ((BATCH, STEPS, UNITS), (BATCH, UNITS), (BATCH, UNITS)),
    )
    if BACKEND == "tensorflow":
        run_layer_test(
            FastLSTM,
            {"units": UNITS, "loop": "while_loop", "zero_output_for_mask": False},
            [sequences],
            (BATCH, UNITS),
        )
    else:
        with pytest.raises(ValueError, match="TensorFlow backend"):
            FastLSTM(UNITS, loop="while_loop")


def test_bad_loop():
    with pytest.raises(ValueError, match="loop"):
        FastLSTM(UNITS, loop="python")


def _keras_lstm_like(fast_lstm, **kwargs):
    reference = keras.layers.LSTM(
        fast_lstm.units, return_sequences=True, return_state=True, **kwargs
    )
    reference.build((None, None, fast_lstm.cell.kernel.shape[0]))
    reference.set_weights(fast_lstm.get_weights())
    return reference


@pytest.mark.parametrize("num_layers", [1, 2])
def test_temporal_lstm_encoder_unchanged(num_layers):
    """The encoder computes what its keras.layers.LSTM version computed:
    projection, stacked LSTMs over the masked frames, outputs times the mask."""
    sequences, mask, _, _ = _inputs()
    encoder = TemporalLSTMEncoder(UNITS, num_layers=num_layers)
    actual = encoder(sequences, mask)
    sequence = encoder.projection(sequences)
    for fast in encoder.lstm_layers:
        sequence, hidden, cell = _keras_lstm_like(fast)(sequence, mask=mask)
    sequence = keras.ops.convert_to_numpy(sequence) * mask[..., None]
    _assert_all_close(actual, [sequence, hidden, cell])
    assert [w.path for w in encoder.weights][-3:] == [
        f"{encoder.name}/lstm_{num_layers - 1}/lstm_cell/{name}"
        for name in ("kernel", "recurrent_kernel", "bias")
    ]


@pytest.mark.parametrize("attention", [True, False])
def test_caption_decoder_unchanged(attention):
    token_ids = np.array([[2, 5, 6, 7], [2, 8, 3, 0], [2, 4, 4, 3]], "int32")
    encoded = RNG.normal(size=(BATCH, STEPS, 8)).astype("float32")
    _, mask, _, _ = _inputs()
    state = RNG.normal(size=(BATCH, 8)).astype("float32")
    decoder = CaptionDecoder(10, embedding_dim=4, hidden_dim=UNITS, attention=attention)
    actual = decoder(token_ids, encoded, mask, initial_state=(state, state))
    hidden, _, _ = _keras_lstm_like(decoder.lstm)(
        decoder.token_embedding(token_ids),
        initial_state=list(decoder.start_state(state, state)),
    )
    expected, _ = decoder._project_output(hidden, encoded, mask, training=False)
    _assert_all_close(actual, expected)
    assert [w.path for w in decoder.lstm.weights] == [
        f"{decoder.name}/lstm/lstm_cell/{name}"
        for name in ("kernel", "recurrent_kernel", "bias")
    ]


def test_lstm_implementation_auto_is_fast_lstm_on_cpu():
    from keras_pvc.layers.fast_lstm import gpu_visible
    from keras_pvc.layers.fast_lstm import resolve_lstm_implementation

    if gpu_visible():
        pytest.skip("a GPU is visible: 'auto' picks keras.layers.LSTM (cuDNN) there")
    assert resolve_lstm_implementation("auto") == "fast"
    assert isinstance(TemporalLSTMEncoder(UNITS).lstm_layers[0], FastLSTM)
    assert isinstance(CaptionDecoder(10, hidden_dim=UNITS).lstm, FastLSTM)
    keras_decoder = CaptionDecoder(10, hidden_dim=UNITS, lstm_implementation="keras")
    assert type(keras_decoder.lstm) is keras.layers.LSTM
    with pytest.raises(ValueError, match="lstm_implementation"):
        TemporalLSTMEncoder(UNITS, lstm_implementation="cudnn")


@pytest.mark.parametrize("num_layers", [1, 2])
def test_encoder_same_numbers_with_either_lstm(num_layers):
    # The encoder with keras.layers.LSTM (what 'auto' picks on a GPU) and
    # with FastLSTM, the same weights copied across: same outputs, same
    # weight paths (so weight files move between the two).
    sequences, mask, _, _ = _inputs()
    fast = TemporalLSTMEncoder(UNITS, num_layers=num_layers, lstm_implementation="fast")
    config = {**fast.get_config(), "lstm_implementation": "keras"}
    reference = TemporalLSTMEncoder.from_config(config)
    assert reference.lstm_implementation == "keras"
    assert type(reference.lstm_layers[0]) is keras.layers.LSTM
    fast.build(sequences.shape)
    reference.build(sequences.shape)
    assert [w.path for w in fast.weights] == [
        w.path.replace(reference.name, fast.name, 1) for w in reference.weights
    ]
    reference.set_weights([RNG.normal(size=w.shape) * 0.3 for w in fast.get_weights()])
    fast.set_weights(reference.get_weights())
    expected = [keras.ops.convert_to_numpy(x) for x in reference(sequences, mask)]
    _assert_all_close(fast(sequences, mask), expected)


def test_decoder_same_numbers_with_either_lstm():
    token_ids = np.array([[2, 5, 6, 7], [2, 8, 3, 0], [2, 4, 4, 3]], "int32")
    encoded = RNG.normal(size=(BATCH, STEPS, 8)).astype("float32")
    _, mask, _, _ = _inputs()
    state = RNG.normal(size=(BATCH, 8)).astype("float32")
    fast = CaptionDecoder(10, embedding_dim=4, hidden_dim=UNITS, lstm_implementation="fast")
    reference = CaptionDecoder(10, embedding_dim=4, hidden_dim=UNITS, lstm_implementation="keras")
    fast(token_ids, encoded, mask, initial_state=(state, state))
    reference(token_ids, encoded, mask, initial_state=(state, state))
    reference.set_weights([RNG.normal(size=w.shape) * 0.3 for w in fast.get_weights()])
    fast.set_weights(reference.get_weights())
    _assert_all_close(
        fast(token_ids, encoded, mask, initial_state=(state, state)),
        reference(token_ids, encoded, mask, initial_state=(state, state)),
    )
    # One decoding step (what the samplers call) agrees too.
    _assert_all_close(
        fast.lstm.cell(encoded[:, 0, :4], [state[:, :UNITS], state[:, :UNITS]])[0],
        reference.lstm.cell(encoded[:, 0, :4], [state[:, :UNITS], state[:, :UNITS]])[0],
    )
