"""Mixed precision (`keras.mixed_precision`): a small captioner trains under
`mixed_bfloat16` and `mixed_float16` (with Keras' loss scaling) without NaNs
and its loss falls; FastLSTM's hand-written backward pass under a mixed
policy agrees with its float32 gradients."""

import keras
import numpy as np
import pytest

import keras_pvc
from keras_pvc.layers import FastLSTM
from layer_testing import gradients

VOCABULARY_SIZE, FRAMES, WORDS, BATCH = 20, 3, 5, 4


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


GRAPH = {"units": 8, "adjacency": "both", "pooling": "attention", "attention_dim": 4}


def _small_msvd(graph=GRAPH):
    """The `msvd` preset cut to a few units, for a few quick steps."""
    keras.utils.set_random_seed(0)
    return keras_pvc.from_preset(
        "msvd",
        vocabulary_size=VOCABULARY_SIZE,
        hidden_dim=16,
        embedding_dim=8,
        caption_length=WORDS,
        num_frames=FRAMES,
        input_shape=(49, 16),
        graph=graph,
        learning_rate=1e-2,
        dropout=0.0,
    )


def _batch():
    rng = np.random.default_rng(0)
    inputs = {
        "features": rng.normal(size=(BATCH, FRAMES, 49, 16)).astype("float32"),
        "frame_mask": np.ones((BATCH, FRAMES), bool),
        "token_ids": rng.integers(4, VOCABULARY_SIZE, (BATCH, WORDS + 1)).astype("int32"),
        "padding_mask": np.ones((BATCH, WORDS + 1), bool),
    }
    labels = rng.integers(4, VOCABULARY_SIZE, (BATCH, WORDS + 1)).astype("int32")
    return inputs, labels


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
def test_captioner_trains_under_mixed_precision(policy):
    model = _small_msvd()
    assert model.dtype_policy.name == policy
    assert model.backbone.spatial_graph.compute_dtype == policy.split("_")[1]
    assert model.backbone.spatial_graph.position_embeddings.dtype == "float32"
    if policy == "mixed_float16":  # Keras wraps the optimizer to scale the loss
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inputs, labels = _batch()
    losses = [float(np.asarray(model.train_on_batch(inputs, labels)[0])) for _ in range(12)]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0] - 0.3, losses
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"], indirect=True)
def test_fast_lstm_backward_under_mixed_precision(policy):
    # The same weights in a float32 FastLSTM and in one under the mixed
    # policy: outputs and the hand-written backward's gradients agree to the
    # compute dtype's precision (bfloat16 has 8 bits of mantissa).
    rng = np.random.default_rng(1)
    sequences = rng.normal(size=(3, 6, 5)).astype("float32")
    mixed = FastLSTM(4, return_sequences=True)
    reference = FastLSTM(4, return_sequences=True, dtype="float32")
    mixed.build(sequences.shape)
    reference.build(sequences.shape)
    reference.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in mixed.get_weights()])
    mixed.set_weights(reference.get_weights())
    assert mixed.compute_dtype == policy.split("_")[1]
    tolerance = 5e-2 if policy == "mixed_bfloat16" else 5e-3

    def loss(layer):
        output_weights = keras.ops.convert_to_tensor(np.linspace(-1, 1, 4), "float32")
        return lambda x: keras.ops.sum(keras.ops.cast(layer(x), "float32") * output_weights)

    ours = gradients(loss(mixed), mixed.trainable_weights, [sequences])
    expected = gradients(loss(reference), reference.trainable_weights, [sequences])
    for a, e in zip(ours, expected):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a.astype("float32"), e, rtol=tolerance, atol=tolerance)


@pytest.mark.slow
@pytest.mark.every_backend  # two models, 12 steps and a save: ~1 min on 2 cores
def test_graph_alone_in_bfloat16_trains_and_round_trips(tmp_path):
    # `graph={..., "dtype": "mixed_bfloat16"}`: only the spatial graph's
    # matmuls in bfloat16 (the recurrences stay float32). Its output enters
    # the float32 encoder; the model trains, its first-step loss is within
    # bfloat16's precision of the all-float32 model's with the same weights,
    # and a saved model keeps the graph's policy.
    models = {
        "float32": _small_msvd(),
        "bfloat16": _small_msvd({**GRAPH, "dtype": "mixed_bfloat16"}),
    }
    mixed = models["bfloat16"]
    assert mixed.backbone.spatial_graph.compute_dtype == "bfloat16"
    assert mixed.backbone.temporal_encoder.compute_dtype == "float32"
    mixed.set_weights(models["float32"].get_weights())
    inputs, labels = _batch()
    first = {name: float(np.asarray(model.test_on_batch(inputs, labels)[0]))
             for name, model in models.items()}
    assert abs(first["bfloat16"] - first["float32"]) < 2e-2 * first["float32"], first
    losses = [float(np.asarray(mixed.train_on_batch(inputs, labels)[0])) for _ in range(12)]
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0] - 0.3, losses
    path = str(tmp_path / "model.keras")
    mixed.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert restored.backbone.spatial_graph.compute_dtype == "bfloat16"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.predict_on_batch(inputs)),
        keras.ops.convert_to_numpy(mixed.predict_on_batch(inputs)),
        rtol=1e-5, atol=1e-5,
    )
