import keras
import numpy as np
import pytest
from keras import ops

import keras_pvc
from keras_pvc.layers import RegionMemory
from keras_pvc.layers.region_memory import region_change
from layer_testing import run_layer_test

VOCABULARY = ["<pad>", "<unk>", "<bos>", "<eos>", "a", "red", "blue", "circle"]


def test_region_change_by_hand():
    # One clip, 3 frames (the last is padding), 2 regions, 1 channel.
    regions = np.zeros((1, 3, 2, 1), "float32")
    regions[0, 0] = [[1.0], [5.0]]
    regions[0, 1] = [[3.0], [5.0]]
    mask = np.array([[True, True, False]])
    change, mean_change = (ops.convert_to_numpy(t) for t in region_change(regions, mask))
    # Clip means: region 0 is 2, region 1 is 5; distances (1, 0) in both
    # real frames, whose mean over 2 frames x 2 regions is 0.5: change (2, 0)
    # (up to the 1e-3 that the square root's epsilon, 1e-6, adds to a zero).
    np.testing.assert_allclose(change[0, :2], [[2.0, 0.0], [2.0, 0.0]], atol=5e-3)
    np.testing.assert_allclose(mean_change[0, :2], [[2.0, 0.0], [2.0, 0.0]], atol=5e-3)
    np.testing.assert_array_equal(change[0, 2], 0.0)
    np.testing.assert_array_equal(mean_change[0, 2], 0.0)


def test_region_change_is_scale_free_and_ignores_padding():
    rng = np.random.default_rng(0)
    regions = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    regions[1, 2:] = 0.0
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    change = ops.convert_to_numpy(region_change(regions, mask)[0])
    scaled = ops.convert_to_numpy(region_change(10 * regions, mask)[0])
    np.testing.assert_allclose(scaled, change, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(change[0].mean(), 1.0, rtol=1e-4)
    np.testing.assert_allclose(change[1, :2].mean(), 1.0, rtol=1e-4)
    unpadded = ops.convert_to_numpy(region_change(regions[1:, :2])[0])
    np.testing.assert_allclose(change[1, :2], unpadded[0], atol=1e-5)


def test_region_memory_layer():
    rng = np.random.default_rng(0)
    run_layer_test(
        RegionMemory,
        {"units": 6, "change": True, "dropout": 0.1},
        [rng.normal(size=(2, 3, 4, 5)).astype("float32"), np.ones((2, 3), bool)],
        ((2, 12, 6), (2, 12)),
    )


def test_region_memory_matches_numpy():
    rng = np.random.default_rng(1)
    regions = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    regions[1, 2] = 0.0
    layer = RegionMemory(6)
    memory, memory_mask = (ops.convert_to_numpy(t) for t in layer(regions, mask))
    kernel, bias = (ops.convert_to_numpy(w) for w in layer.projection.weights)
    change_kernel = ops.convert_to_numpy(layer.change_projection.kernel)
    position = ops.convert_to_numpy(layer.position_embedding)
    for clip, length in enumerate([3, 2]):
        real = regions[clip, :length].astype("float64")
        distance = np.linalg.norm(real - real.mean(0), axis=-1)  # (T, N)
        change = distance / distance.mean()
        numbers = np.stack([change, np.broadcast_to(change.mean(0), change.shape)], -1)
        expected = np.tanh(real @ kernel + bias + position + numbers @ change_kernel)
        np.testing.assert_allclose(
            memory[clip, : length * 4], expected.reshape(length * 4, 6), atol=1e-4
        )
        np.testing.assert_array_equal(memory_mask[clip], np.repeat(mask[clip], 4))
    # Without the change numbers: the projection and the place only.
    plain = RegionMemory(6, change=False)
    out = ops.convert_to_numpy(plain(regions, mask)[0])
    kernel, bias = (ops.convert_to_numpy(w) for w in plain.projection.weights)
    position = ops.convert_to_numpy(plain.position_embedding)
    np.testing.assert_allclose(
        out[0], np.tanh(regions[0] @ kernel + bias + position).reshape(12, 6), atol=1e-5
    )


def test_region_memory_needs_regions():
    with pytest.raises(ValueError, match=r"region features \(B, T, N, C\)"):
        RegionMemory(4)(np.ones((2, 3, 5), "float32"))


def _captioner(region_memory=True):
    return keras_pvc.from_preset(
        "regions",
        input_shape=(4, 6),
        frame_cnn=None,
        graph={"units": 8, "pooling": "mean", "adjacency": "grid"},
        hidden_dim=8,
        embedding_dim=8,
        region_memory=region_memory,
        vocabulary=VOCABULARY,
    )


def _inputs(batch=2, frames=3):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(batch, frames, 4, 6)).astype("float32")
    frame_mask = np.ones((batch, frames), bool)
    frame_mask[1, -1] = False
    features[1, -1] = 0.0
    return {"features": features, "frame_mask": frame_mask}


def test_backbone_appends_the_memory_after_the_frames():
    model = _captioner()
    inputs = _inputs()
    memory, memory_mask, hidden, cell = model.backbone.encode(inputs)
    assert tuple(memory.shape) == (2, 3 + 3 * 4, 8)
    expected_mask = np.concatenate(
        [inputs["frame_mask"], np.repeat(inputs["frame_mask"], 4, axis=1)], 1
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(memory_mask), expected_mask)
    # The first T entries are the encoder's frame states, as without memory.
    sequence, _, _ = model.backbone.temporal_encoder(
        model.backbone._frame_features(inputs["features"]), inputs["frame_mask"]
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(memory)[:, :3], ops.convert_to_numpy(sequence), atol=1e-6
    )
    # The rest are the region memory's entries.
    entries, _ = model.backbone.region_memory(inputs["features"], inputs["frame_mask"])
    np.testing.assert_allclose(
        ops.convert_to_numpy(memory)[:, 3:], ops.convert_to_numpy(entries), atol=1e-6
    )


def test_stepwise_decoding_reads_the_memory_as_teacher_forcing_does():
    model = _captioner()
    inputs = _inputs()
    token_ids = np.array([[2, 4, 5, 7], [2, 4, 6, 7]], "int32")
    forced = ops.convert_to_numpy(
        model.backbone(
            {**inputs, "token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        )
    )
    decoder = model.backbone.caption_decoder
    memory, memory_mask, hidden, cell = model.backbone.encode(inputs)
    cache = decoder.initial_cache(memory, memory_mask, hidden, cell)
    for position in range(token_ids.shape[1]):
        logits, cache = decoder.step(token_ids[:, position], cache)
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits), forced[:, position], atol=1e-5
        )
    # The memory is read: changing one region of a real frame changes the
    # logits, and changing a padding frame's regions does not.
    moved = {**inputs, "features": inputs["features"].copy()}
    moved["features"][0, 0, 2] += 3.0
    moved["features"][1, -1] += 3.0
    after = ops.convert_to_numpy(
        model.backbone(
            {**moved, "token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
        )
    )
    assert np.abs(after[0] - forced[0]).max() > 1e-4
    np.testing.assert_allclose(after[1], forced[1], atol=1e-5)


def test_captioner_with_memory_saves_loads_and_decodes(tmp_path):
    model = _captioner()
    inputs = _inputs()
    greedy = model.generate_ids(inputs)
    beams = model.generate_ids(inputs, sampler="beam")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.backbone.region_memory, RegionMemory)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.generate_ids(inputs)), ops.convert_to_numpy(greedy)
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.generate_ids(inputs, sampler="beam")),
        ops.convert_to_numpy(beams),
    )
    assert _captioner(region_memory=None).backbone.region_memory is None
