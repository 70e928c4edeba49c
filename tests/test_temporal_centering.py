import keras
import numpy as np
import pytest
from keras import ops

from keras_pvc.layers import MotionTracks
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import TemporalCentering
from keras_pvc.layers.temporal_centering import temporal_centering
from layer_testing import run_layer_test


def test_temporal_centering_by_hand():
    # One clip, 3 frames (the last is padding), 2 regions, 2 channels.
    nodes = np.zeros((1, 3, 2, 2), "float32")
    nodes[0, 0] = [[1.0, 2.0], [4.0, 0.0]]
    nodes[0, 1] = [[3.0, 2.0], [0.0, 0.0]]
    # Clip means over the two real frames: region 0 (2, 2), region 1 (2, 0).
    expected = np.zeros((1, 3, 2, 2), "float32")
    expected[0, 0] = [[-1.0, 0.0], [2.0, 0.0]]
    expected[0, 1] = [[1.0, 0.0], [-2.0, 0.0]]
    out = ops.convert_to_numpy(temporal_centering(nodes))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # "pooled" appends the clip mean over regions, (2, 1), to every region
    # of the real frames; the padding frame stays zero.
    out = ops.convert_to_numpy(temporal_centering(nodes, static="pooled"))
    np.testing.assert_allclose(out[..., :2], expected, atol=1e-6)
    np.testing.assert_allclose(out[0, :2, :, 2:], np.full((2, 2, 2), [2.0, 1.0]), atol=1e-6)
    np.testing.assert_array_equal(out[0, 2], 0.0)
    # The control without centring keeps the regions as they are.
    out = ops.convert_to_numpy(temporal_centering(nodes, static="pooled", center=False))
    np.testing.assert_allclose(out[..., :2], nodes, atol=1e-6)
    np.testing.assert_allclose(out[0, :2, :, 2:], np.full((2, 2, 2), [2.0, 1.0]), atol=1e-6)


def test_temporal_centering_matches_numpy_on_a_batch_with_padding():
    rng = np.random.default_rng(1)
    nodes = rng.normal(size=(3, 5, 6, 4)).astype("float32")
    lengths = [5, 3, 1]
    for clip, length in enumerate(lengths):
        nodes[clip, length:] = 0.0
    out = ops.convert_to_numpy(temporal_centering(nodes, static="pooled"))
    for clip, length in enumerate(lengths):
        real = nodes[clip, :length].astype("float64")
        mean = real.mean(axis=0)
        np.testing.assert_allclose(out[clip, :length, :, :4], real - mean, atol=1e-5)
        np.testing.assert_allclose(
            out[clip, :length, :, 4:], np.broadcast_to(mean.mean(axis=0), (length, 6, 4)),
            atol=1e-5,
        )
        np.testing.assert_array_equal(out[clip, length:], 0.0)


def test_temporal_centering_layer():
    graph = SpatialGraphConv(8, num_layers=1, pooling="attention")
    run_layer_test(
        TemporalCentering,
        {"graph": keras.layers.serialize(graph), "static": "pooled", "center": True},
        [np.random.default_rng(0).normal(size=(2, 3, 16, 5)).astype("float32")],
        (2, 3, 8),
    )


def test_the_graph_reads_centred_regions_and_ignores_a_static_background():
    rng = np.random.default_rng(2)
    nodes = rng.normal(size=(2, 4, 9, 6)).astype("float32")
    graph = SpatialGraphConv(6, num_layers=0, pooling="mean", position_embedding=False)
    layer = TemporalCentering(graph)
    out = ops.convert_to_numpy(layer(nodes))
    centred = nodes - nodes.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out, centred.mean(axis=2), atol=1e-5)
    # A per-clip, per-region texture that does not change over time is gone.
    texture = rng.normal(size=(2, 1, 9, 6)).astype("float32") * 10.0
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(nodes + texture)), out, atol=1e-4
    )
    assert layer.output_dim == 6
    # "pooled": the graph is built on twice the channels.
    pooled = TemporalCentering(
        SpatialGraphConv(12, num_layers=0, pooling="mean", position_embedding=False),
        static="pooled",
    )
    out = ops.convert_to_numpy(pooled(nodes))
    np.testing.assert_allclose(out[..., :6], centred.mean(axis=2), atol=1e-5)
    static = np.broadcast_to(nodes.mean(axis=(1, 2))[:, None], (2, 4, 6))
    np.testing.assert_allclose(out[..., 6:], static, atol=1e-5)


def test_motion_tracks_around_centering_read_the_raw_regions():
    rng = np.random.default_rng(3)
    nodes = rng.normal(size=(1, 3, 16, 4)).astype("float32")
    inner = SpatialGraphConv(4, num_layers=0, pooling="mean", position_embedding=False)
    layer = MotionTracks(TemporalCentering(inner), scale=1.0)
    plain = MotionTracks(inner, scale=1.0)
    out, reference = ops.convert_to_numpy(layer(nodes)), ops.convert_to_numpy(plain(nodes))
    np.testing.assert_allclose(out[..., 4:], reference[..., 4:], atol=1e-5)
    assert layer.output_dim == 4 + 16


def test_temporal_centering_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`static` must be one of"):
        TemporalCentering(SpatialGraphConv(4, pooling="mean"), static="max")
    with pytest.raises(ValueError, match="would leave the regions unchanged"):
        TemporalCentering(SpatialGraphConv(4, pooling="mean"), center=False)
    layer = TemporalCentering(SpatialGraphConv(4, pooling="mean"))
    with pytest.raises(ValueError, match=r"expected region features \(B, T, N, C\)"):
        layer.build((2, 3, 4))


def test_preset_knob_wraps_the_graph():
    from keras_pvc.presets import build_video_captioner
    from keras_pvc.presets import preset_config

    config = preset_config(
        "regions", input_shape=(4, 8), hidden_dim=8, embedding_dim=8, vocabulary_size=20,
        graph={"units": 8, "pooling": "attention", "temporal_centering": {"static": "pooled"}},
    )
    graph = build_video_captioner(config).backbone.spatial_graph
    assert isinstance(graph, TemporalCentering) and graph.static == "pooled"
    assert isinstance(graph.graph, SpatialGraphConv)


def test_salient_static_part_pools_the_scored_regions_by_hand():
    # Two real frames, 3 regions, 2 channels. A scorer that gives region 2 a
    # score 20 above the others puts (almost) all the weight on it: the
    # static part is region 2's clip mean, not the mean over regions.
    nodes = np.zeros((1, 3, 3, 2), "float32")
    nodes[0, 0] = [[1.0, 0.0], [0.0, 1.0], [4.0, 2.0]]
    nodes[0, 1] = [[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]]

    def scores(clip_mean):  # (1, 1, 3, 2) -> (1, 1, 3, 1): channel 0 x 10
        return clip_mean[..., :1] * 10.0

    out = ops.convert_to_numpy(temporal_centering(nodes, static="salient", region_scores=scores))
    # Clip means: (1, 0), (0, 2), (3, 2); scores 10, 0, 30 -> softmax ~ (0, 0, 1).
    weights = np.exp([10.0, 0.0, 30.0]) / np.exp([10.0, 0.0, 30.0]).sum()
    expected = weights @ np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 2.0]])
    np.testing.assert_allclose(out[0, :2, :, 2:], np.broadcast_to(expected, (2, 3, 2)), atol=1e-5)
    np.testing.assert_array_equal(out[0, 2], 0.0)  # the padding frame
    # The centred half is the same as without a static part.
    np.testing.assert_allclose(
        out[..., :2], ops.convert_to_numpy(temporal_centering(nodes)), atol=1e-6
    )
    with pytest.raises(ValueError, match="region_scores"):
        temporal_centering(nodes, static="salient")


def test_salient_temporal_centering_layer_learns_its_scores():
    graph = SpatialGraphConv(8, num_layers=1, pooling="attention")
    nodes = np.random.default_rng(3).normal(size=(2, 3, 16, 5)).astype("float32")
    run_layer_test(
        TemporalCentering,
        {"graph": keras.layers.serialize(graph), "static": "salient"},
        [nodes],
        (2, 3, 8),
    )
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention"),
                              static="salient")
    layer(nodes)
    assert layer.salience.kernel.shape == (5, 1)
    from layer_testing import gradients

    grads = gradients(lambda x: ops.sum(ops.sin(layer(x))), [layer.salience.kernel], [nodes])
    assert np.abs(grads[0]).max() > 0


def test_contrast_static_part_weighs_the_regions_that_stand_out_by_hand():
    # A still scene of 4 regions: three of background (1, 0) and a shape
    # (0, 5) in region 3, over two real frames and a padding frame.
    nodes = np.zeros((1, 3, 4, 2), "float32")
    nodes[0, :2] = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 5.0]]
    means = nodes[0, 0].astype("float64")
    distance = np.linalg.norm(means - means.mean(axis=0), axis=-1)
    weights = np.exp(4.0 * distance / distance.mean())
    weights /= weights.sum()
    expected = weights @ means
    out = ops.convert_to_numpy(temporal_centering(nodes, static="contrast"))
    np.testing.assert_allclose(out[0, :2, :, 2:], np.broadcast_to(expected, (2, 4, 2)), atol=1e-4)
    # The shape gets most of the weight: closer to it than to the background.
    assert expected[1] > 2.5 * expected[0]
    np.testing.assert_array_equal(out[0, 2], 0.0)
    np.testing.assert_allclose(
        out[..., :2], ops.convert_to_numpy(temporal_centering(nodes)), atol=1e-6
    )
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention"),
                              static="contrast")
    assert layer(nodes).shape == (1, 3, 8)
    assert len(layer.trainable_weights) == len(layer.graph.trainable_weights)


def test_still_static_part_leaves_out_the_movers_trail_by_hand():
    # 4 regions over 4 real frames: background (1, 0) in regions 0 and 1, a
    # still shape (0, 5) in region 3, and a mover (4, 4) in region 2 for the
    # first frame only (its trail stands out in the clip mean too).
    nodes = np.zeros((1, 4, 4, 2), "float32")
    nodes[0, :] = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 5.0]]
    nodes[0, 0, 2] = [4.0, 4.0]
    frames = nodes[0].astype("float64")
    means = frames.mean(axis=0)
    contrast = np.linalg.norm(means - means.mean(axis=0), axis=-1)
    change = np.linalg.norm(frames - means, axis=-1).mean(axis=0)
    score = contrast / contrast.mean() - change / change.mean()
    weights = np.exp(4.0 * score)
    weights /= weights.sum()
    expected = weights @ means
    out = ops.convert_to_numpy(temporal_centering(nodes, static="still"))
    np.testing.assert_allclose(out[0, :, :, 2:], np.broadcast_to(expected, (4, 4, 2)), atol=1e-4)
    # The trail's region gets less weight than with "contrast" alone.
    contrast_weights = np.exp(4.0 * contrast / contrast.mean())
    contrast_weights /= contrast_weights.sum()
    assert weights[2] < 0.5 * contrast_weights[2]
    assert weights[3] > 0.5
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention"),
                              static="still")
    assert layer(nodes).shape == (1, 4, 8)
    assert len(layer.trainable_weights) == len(layer.graph.trainable_weights)


def test_unmoved_static_part_pools_evenly_where_nothing_changes_by_hand():
    # 5 regions over 4 real frames: background (1, 0) in regions 0-2, a
    # still shape (0, 5) in region 4, and a mover (4, 4) crossing region 3
    # in the first two frames. The still shape and the background weigh
    # the same; the mover's region next to nothing.
    nodes = np.zeros((1, 4, 5, 2), "float32")
    nodes[0, :] = [[1.0, 0.0]] * 4 + [[0.0, 5.0]]
    nodes[0, :2, 3] = [4.0, 4.0]
    frames = nodes[0].astype("float64")
    means = frames.mean(axis=0)
    change = np.linalg.norm(frames - means, axis=-1).mean(axis=0)
    weights = np.exp(-np.square(change / change.mean()))
    weights /= weights.sum()
    out = ops.convert_to_numpy(temporal_centering(nodes, static="unmoved"))
    np.testing.assert_allclose(out[0, :, :, 2:], np.broadcast_to(weights @ means, (4, 5, 2)), atol=1e-4)
    # By hand: the mover's region is 2.5 from its clip mean (2.5, 2) in
    # every frame and the others do not change, so its change is 5 times
    # the mean and its weight exp(-25) against 1 for each of the others.
    assert weights[3] < 1e-10
    np.testing.assert_allclose(out[0, 0, 0, 2:], [0.75, 1.25], atol=1e-4)
    # "figure": less the median region's clip mean, the background (1, 0).
    figure = ops.convert_to_numpy(temporal_centering(nodes, static="figure"))
    np.testing.assert_allclose(figure[0, 0, 0, 2:], [0.75 - 1.0, 1.25], atol=1e-4)
    np.testing.assert_allclose(figure[..., :2], out[..., :2])
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention",
                                               grid_shape=(1, 5)), static="unmoved")
    assert layer(nodes).shape == (1, 4, 8)
    assert len(layer.trainable_weights) == len(layer.graph.trainable_weights)


def test_objects_static_part_is_the_pooled_mean_and_the_still_object_by_hand():
    # 5 regions over 4 real frames: background (1, 0) in regions 0-2, a
    # still shape (0, 5) in region 4, a mover (4, 4) crossing region 3 in
    # the first two frames; a padding frame after them.
    nodes = np.zeros((1, 5, 5, 2), "float32")
    nodes[0, :4] = [[1.0, 0.0]] * 4 + [[0.0, 5.0]]
    nodes[0, :2, 3] = [4.0, 4.0]
    means = nodes[0, :4].astype("float64").mean(axis=0)
    background = np.median(means, axis=0)  # (1, 0)
    stands_out = np.linalg.norm(means - background, axis=-1)
    change = np.linalg.norm(nodes[0, :4] - means, axis=-1).mean(axis=0)
    score = 4.0 * stands_out / stands_out.mean() - np.square(change / change.mean())
    weights = np.exp(score - score.max())
    weights /= weights.sum()
    out = ops.convert_to_numpy(temporal_centering(nodes, static="objects"))
    assert out.shape == (1, 5, 5, 6)
    np.testing.assert_allclose(out[0, :4, :, 2:4], np.broadcast_to(means.mean(axis=0), (4, 5, 2)), atol=1e-4)
    np.testing.assert_allclose(out[0, :4, :, 4:], np.broadcast_to(weights @ means, (4, 5, 2)), atol=1e-4)
    np.testing.assert_array_equal(out[0, 4], 0.0)  # the padding frame stays zero
    # The still shape stands out by 5.1 (the mean 1.5), the mover's region by
    # 2.5 but it changes: nearly all the weight is on the still shape.
    assert weights[4] > 0.99
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention",
                                               grid_shape=(1, 5)), static="objects")
    assert layer(nodes).shape == (1, 5, 8)
    assert layer.compute_output_shape((1, 5, 5, 2)) == (1, 5, 8)


def test_roles_static_part_is_the_pooled_mean_and_the_mover_frame_by_frame_by_hand():
    # 4 regions over 3 real frames and a padding frame: background (1, 0),
    # a still shape (0, 5) in region 3, and a mover (4, 4) in region 0,
    # then 1, then 2.
    nodes = np.zeros((1, 4, 4, 2), "float32")
    nodes[0, :3] = [[1.0, 0.0]] * 3 + [[0.0, 5.0]]
    for frame in range(3):
        nodes[0, frame, frame] = [4.0, 4.0]
    frames = nodes[0, :3].astype("float64")
    means = frames.mean(axis=0)
    out = ops.convert_to_numpy(temporal_centering(nodes, static="roles"))
    assert out.shape == (1, 4, 4, 6)
    np.testing.assert_allclose(out[0, :3, :, 2:4], np.broadcast_to(means.mean(axis=0), (3, 4, 2)), atol=1e-4)
    for frame in range(3):
        moving = np.linalg.norm(frames[frame] - means, axis=-1)
        weights = np.exp(4.0 * moving / moving.mean())
        weights /= weights.sum()
        np.testing.assert_allclose(out[0, frame, 0, 4:], weights @ frames[frame], atol=1e-4)
        # The mover's region is 10/3 from its clip mean (2, 4/3), twice as
        # far as the two it left or will reach (5/3), the still shape's 0:
        # weights e^8 : e^4 : e^4 : 1, 0.96 on (4, 4).
        assert weights[frame] > 0.9
    np.testing.assert_array_equal(out[0, 3], 0.0)
    layer = TemporalCentering(SpatialGraphConv(8, num_layers=1, pooling="attention"), static="roles")
    assert layer(nodes).shape == (1, 4, 8)


@pytest.mark.parametrize("static", ["pooled", "salient", "contrast", "still", "unmoved", "figure", "objects", "roles"])
def test_layer_passes_the_static_part_once_per_frame_as_if_concatenated(static):
    # TemporalCentering hands SpatialGraphConv the static part separately
    # (projected once per frame); the output must be the graph's on the
    # explicit concatenation that `temporal_centering` writes.
    rng = np.random.default_rng(3)
    nodes = rng.normal(size=(2, 4, 9, 5)).astype("float32")
    nodes[1, 3] = 0.0  # a padding frame
    layer = TemporalCentering(SpatialGraphConv(6, adjacency="both", attention_dim=4), static=static)
    layer(nodes)  # builds
    layer.set_weights([rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()])
    out = ops.convert_to_numpy(layer(nodes))
    joined = temporal_centering(nodes, static, region_scores=layer.salience)
    np.testing.assert_allclose(out, ops.convert_to_numpy(layer.graph(joined)), rtol=1e-5, atol=1e-5)
    # A graph that does not take `static` gets the concatenation.
    plain = SpatialGraphConv(6, adjacency="both", attention_dim=4)
    plain.build(joined.shape)
    plain.set_weights(layer.graph.get_weights())
    plain.accepts_static = False
    wrapped = TemporalCentering(plain, static=static)
    wrapped.build(nodes.shape)
    if layer.salience is not None:
        wrapped.salience.set_weights(layer.salience.get_weights())
    np.testing.assert_allclose(ops.convert_to_numpy(wrapped(nodes)), out, rtol=1e-5, atol=1e-5)
