import keras
import numpy as np
import pytest

from keras_pvc.layers import CaptionDecoder
from keras_pvc.layers import FrameCNN
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import TemporalLSTMEncoder
from keras_pvc.layers import grid_adjacency
from layer_testing import run_layer_test

RNG = np.random.default_rng(0)
BATCH, FRAMES, REGIONS, CHANNELS, HIDDEN, VOCAB = 2, 3, 4, 6, 8, 10


def test_frame_cnn_regions_and_pooled():
    frames = RNG.uniform(0, 255, (BATCH, FRAMES, 16, 16, 3)).astype("float32")
    run_layer_test(
        FrameCNN,
        {"backbone": "simple", "filters": (4, 8)},
        [frames],
        (BATCH, FRAMES, 16, 8),
    )
    run_layer_test(
        FrameCNN,
        {"backbone": "simple", "filters": (4, 8), "output": "pooled"},
        [frames],
        (BATCH, FRAMES, 8),
    )


@pytest.mark.parametrize("normalization", ["batch", "group"])
def test_frame_cnn_normalization(normalization):
    frames = RNG.uniform(0, 255, (BATCH, FRAMES, 16, 16, 3)).astype("float32")
    run_layer_test(
        FrameCNN,
        {"backbone": "simple", "filters": (4, 8), "normalization": normalization},
        [frames],
        (BATCH, FRAMES, 16, 8),
    )
    layer = FrameCNN("simple", filters=(4, 8), normalization=normalization)
    layer.build(frames.shape)
    kind = {
        "batch": keras.layers.BatchNormalization,
        "group": keras.layers.GroupNormalization,
    }[normalization]
    norms = [l for l in layer.backbone_model.layers if isinstance(l, kind)]
    convs = [l for l in layer.backbone_model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(norms) == len(convs) == 4
    assert not any(conv.use_bias for conv in convs)
    training = keras.ops.convert_to_numpy(layer(frames, training=True))
    inference = keras.ops.convert_to_numpy(layer(frames, training=False))
    if normalization == "group":
        # Per-sample statistics: training and inference agree, and a frame's
        # features do not depend on the other frames of the batch.
        np.testing.assert_allclose(training, inference, atol=1e-5)
        alone = keras.ops.convert_to_numpy(layer(frames[:1, :1], training=False))
        np.testing.assert_allclose(alone, inference[:1, :1], atol=1e-5)
    else:
        # Batch statistics in training; running statistics (moved by the
        # training call) in inference.
        assert np.abs(training - inference).max() > 1e-3
        assert any(np.abs(keras.ops.convert_to_numpy(n.moving_mean)).max() > 0 for n in norms)
    with pytest.raises(ValueError, match="normalization"):
        FrameCNN("simple", normalization="layer")


def test_frame_cnn_wraps_a_model_instance():
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 3, strides=2, padding="same")]
    )
    layer = FrameCNN(inner)
    frames = RNG.uniform(0, 255, (BATCH, FRAMES, 8, 8, 3)).astype("float32")
    assert layer(frames).shape == (BATCH, FRAMES, 16, 5)
    clone = FrameCNN.from_config(layer.get_config())
    assert clone(frames).shape == (BATCH, FRAMES, 16, 5)


def test_frame_cnn_rejects_unknown_backbone():
    with pytest.raises(ValueError, match="Unknown FrameCNN backbone"):
        FrameCNN("no_such_net")


@pytest.mark.parametrize("adjacency", ["grid", "learned", "both"])
@pytest.mark.parametrize("pooling", ["attention", "mean", None])
def test_spatial_graph_conv(adjacency, pooling):
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    shape = (
        (BATCH, FRAMES, HIDDEN)
        if pooling
        else (BATCH, FRAMES, REGIONS, HIDDEN)
    )
    run_layer_test(
        SpatialGraphConv,
        {"units": HIDDEN, "adjacency": adjacency, "pooling": pooling, "attention_dim": 4},
        [nodes],
        shape,
    )


@pytest.mark.parametrize("node_update", ["residual", "sage"])
def test_spatial_graph_conv_coordinates_and_node_update(node_update):
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    run_layer_test(
        SpatialGraphConv,
        {
            "units": HIDDEN,
            "adjacency": "both",
            "pooling": "mean",
            "coordinates": True,
            "node_update": node_update,
            "attention_dim": 4,
        },
        [nodes],
        (BATCH, FRAMES, HIDDEN),
    )


def test_spatial_graph_conv_pooling_heads():
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    run_layer_test(
        SpatialGraphConv,
        {
            "units": HIDDEN,
            "adjacency": "grid",
            "pooling": "attention",
            "pooling_heads": 3,
            "coordinates": True,
            "attention_dim": 4,
        },
        [nodes],
        (BATCH, FRAMES, HIDDEN),
    )


def test_spatial_graph_attention_pooling_reports_where_by_hand():
    layer = SpatialGraphConv(
        HIDDEN, grid_shape=(2, 2), pooling="attention", pooling_heads=3, coordinates=True
    )
    nodes = RNG.normal(size=(1, 2, 4, CHANNELS)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(nodes))
    propagated = keras.ops.convert_to_numpy(layer.propagate(nodes))  # (1, 2, 4, H)
    scores = propagated @ keras.ops.convert_to_numpy(layer.pool_score.kernel)
    scores = scores + keras.ops.convert_to_numpy(layer.pool_score.bias)
    weights = np.exp(scores - scores.max(-2, keepdims=True))
    weights /= weights.sum(-2, keepdims=True)  # softmax over the 4 regions
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.head_weights(propagated)), weights, atol=1e-5
    )
    coordinates = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], "float32")
    what = np.einsum("btnh,btnc->bthc", weights, propagated)
    where = np.einsum("btnh,nc->bthc", weights, coordinates)
    pooled = np.concatenate([what, where], -1).reshape(1, 2, -1)
    expected = pooled @ keras.ops.convert_to_numpy(layer.pool_output.kernel)
    expected = expected + keras.ops.convert_to_numpy(layer.pool_output.bias)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # The visualised region weights are the heads' mean: a distribution.
    region = keras.ops.convert_to_numpy(layer.region_weights(propagated))
    np.testing.assert_allclose(region, weights.mean(-1), atol=1e-5)
    np.testing.assert_allclose(region.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("num_layers,summary", [(0, "max"), (1, "mean")])
def test_spatial_graph_conv_keypoint_pooling(num_layers, summary):
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    units = HIDDEN if num_layers else CHANNELS
    run_layer_test(
        SpatialGraphConv,
        {
            "units": units,
            "adjacency": "both",
            "num_layers": num_layers,
            "pooling": "keypoints",
            "pooling_heads": 3,
            "keypoint_summary": summary,
            "coordinates": True,
            "attention_dim": 4,
        },
        [nodes],
        (BATCH, FRAMES, units + 2 * 3),
    )


@pytest.mark.parametrize("summary", ["mean", "max"])
def test_spatial_graph_keypoint_pooling_by_hand(summary):
    layer = SpatialGraphConv(
        HIDDEN,
        grid_shape=(2, 2),
        adjacency="both",
        pooling="keypoints",
        pooling_heads=3,
        keypoint_summary=summary,
    )
    nodes = RNG.normal(size=(1, 2, 4, CHANNELS)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(nodes))
    assert out.shape == (1, 2, HIDDEN + 6) and layer.output_dim == HIDDEN + 6
    propagated = keras.ops.convert_to_numpy(layer.propagate(nodes))
    scores = propagated @ keras.ops.convert_to_numpy(layer.pool_score.kernel)
    scores = scores + keras.ops.convert_to_numpy(layer.pool_score.bias)
    weights = np.exp(scores - scores.max(-2, keepdims=True))
    weights /= weights.sum(-2, keepdims=True)  # (1, 2, 4, heads)
    coordinates = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], "float32")
    where = np.einsum("btnh,nc->bthc", weights, coordinates).reshape(1, 2, 6)
    # "What" is the plain mean (or max) of the nodes; "where" each head's (x, y).
    what = propagated.max(-2) if summary == "max" else propagated.mean(-2)
    np.testing.assert_allclose(out[..., :HIDDEN], what, atol=1e-5)
    np.testing.assert_allclose(out[..., HIDDEN:], where, atol=1e-5)


def test_spatial_graph_keypoints_follow_a_moving_region():
    # Pooling only (no message passing): one "red" channel lit in a different
    # region of each frame. A head whose score is that channel, sharpened,
    # reports the lit region's coordinates: the motion survives pooling.
    layer = SpatialGraphConv(
        CHANNELS,
        grid_shape=(3, 3),
        num_layers=0,
        position_embedding=False,
        pooling="keypoints",
        pooling_heads=1,
    )
    frames = np.zeros((1, 3, 9, CHANNELS), "float32")
    path = [0, 4, 8]  # top-left, centre, bottom-right
    for t, region in enumerate(path):
        frames[0, t, region, 0] = 1.0
    layer(frames)
    kernel = np.zeros((CHANNELS, 1), "float32")
    kernel[0, 0] = 50.0
    layer.pool_score.set_weights([kernel, np.zeros(1, "float32")])
    where = keras.ops.convert_to_numpy(layer(frames))[0, :, CHANNELS:]
    np.testing.assert_allclose(where, [[-1, -1], [0, 0], [1, 1]], atol=1e-3)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_spatial_graph_coordinates_tell_mirrored_frames_apart(pooling):
    # Without position embeddings or coordinates, message passing over the
    # learned adjacency and node pooling are permutation invariant: a frame
    # and its mirror image pool to the same vector. Fixed coordinates break
    # the tie: "red left, blue right" differs from "blue left, red right".
    frame = np.zeros((1, 1, 2, 2, CHANNELS), "float32")
    frame[0, 0, 0, 0, 0] = 1.0  # a "red" region top-left
    frame[0, 0, 0, 1, 1] = 1.0  # a "blue" region top-right
    mirrored = frame[:, :, :, ::-1]
    pair = np.concatenate([frame, mirrored]).reshape(2, 1, 4, CHANNELS)
    for coordinates, differ in ((False, False), (True, True)):
        layer = SpatialGraphConv(
            HIDDEN,
            adjacency="learned",
            position_embedding=False,
            coordinates=coordinates,
            node_update="sage",
            attention_dim=4,
            pooling=pooling,
            pooling_heads=2,
        )
        out = keras.ops.convert_to_numpy(layer(pair))
        assert np.allclose(out[0], out[1], atol=1e-6) != differ


def test_spatial_graph_coordinates_by_hand():
    layer = SpatialGraphConv(HIDDEN, grid_shape=(2, 3), coordinates=True)
    layer(np.zeros((1, 1, 6, CHANNELS), "float32"))
    # Row-major regions; x runs along columns, y down rows, both in [-1, 1].
    np.testing.assert_allclose(
        layer.coordinate_matrix,
        [[-1, -1], [0, -1], [1, -1], [-1, 1], [0, 1], [1, 1]],
    )


def test_spatial_graph_rejects_bad_arguments():
    with pytest.raises(ValueError, match="node_update"):
        SpatialGraphConv(4, node_update="gin")
    with pytest.raises(ValueError, match="pooling_heads"):
        SpatialGraphConv(4, pooling_heads=0)
    with pytest.raises(ValueError, match="pooling"):
        SpatialGraphConv(4, pooling="sum")
    with pytest.raises(ValueError, match="num_layers"):
        SpatialGraphConv(4, num_layers=-1)
    with pytest.raises(ValueError, match="keypoint_summary"):
        SpatialGraphConv(4, pooling="keypoints", keypoint_summary="sum")
    with pytest.raises(ValueError, match="must equal the input channels"):
        SpatialGraphConv(4, num_layers=0)(np.zeros((1, 1, 4, 3), "float32"))


def test_grid_adjacency_normalisation_matches_spektral_gcn_filter():
    adjacency = grid_adjacency(3, 4)
    # 8-neighbour grid: a corner has 3 neighbours, an edge 5, an inner cell 8.
    degrees = adjacency.sum(1).reshape(3, 4)
    np.testing.assert_array_equal(
        degrees, [[3, 5, 5, 3], [5, 8, 8, 5], [3, 5, 5, 3]]
    )
    ours = keras.ops.convert_to_numpy(SpatialGraphConv.preprocess(adjacency))
    try:
        from spektral.utils import gcn_filter
    except Exception:  # spektral is an optional extra
        gcn_filter = None
    if gcn_filter is not None:
        np.testing.assert_allclose(ours, gcn_filter(adjacency), atol=1e-6)
    # Independent of spektral: D^-1/2 (A + I) D^-1/2 by hand.
    with_self = adjacency + np.eye(12)
    inverse_sqrt = 1 / np.sqrt(with_self.sum(1))
    np.testing.assert_allclose(
        ours, with_self * inverse_sqrt[:, None] * inverse_sqrt[None, :], atol=1e-6
    )


def test_grid_message_passing_is_local():
    # A GCN round over the grid only mixes neighbouring regions: a change in
    # one corner region leaves the far corner untouched.
    layer = SpatialGraphConv(
        HIDDEN, grid_shape=(3, 3), adjacency="grid", pooling=None, position_embedding=False
    )
    nodes = RNG.normal(size=(1, 1, 9, CHANNELS)).astype("float32")
    changed = nodes.copy()
    changed[0, 0, 0] += 5.0
    out = keras.ops.convert_to_numpy(layer(nodes))
    out_changed = keras.ops.convert_to_numpy(layer(changed))
    assert not np.allclose(out[0, 0, 1], out_changed[0, 0, 1])  # neighbour
    np.testing.assert_allclose(out[0, 0, 8], out_changed[0, 0, 8])  # far corner


def _gcn_round_by_hand(nodes, adjacency, grid_kernel, grid_bias, residual_kernel):
    """One residual GCN round of one frame in numpy, loops and all:
    `X Wr + relu(D^-1/2 (A + I) D^-1/2 X Wg + bg)`, D the row sums of A + I."""
    with_self = adjacency + np.eye(len(adjacency))
    degree = with_self.sum(axis=1)
    normalised = np.zeros_like(with_self)
    for i in range(len(adjacency)):
        for j in range(len(adjacency)):
            normalised[i, j] = with_self[i, j] / np.sqrt(degree[i] * degree[j])
    message = normalised @ (nodes @ grid_kernel + grid_bias)
    return nodes @ residual_kernel + np.maximum(message, 0.0)


def test_spatial_graph_conv_mixed_and_batch_adjacency():
    layer = SpatialGraphConv(HIDDEN, adjacency="grid", pooling=None, position_embedding=False)
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    layer.build(nodes.shape)
    grid_dense, residual_dense = layer.grid_dense[0], layer.residual_dense[0]
    # A non-zero bias, so that the normalisation's row sums matter.
    grid_dense.bias.assign(RNG.normal(size=(HIDDEN,)).astype("float32"))
    weights = (
        keras.ops.convert_to_numpy(grid_dense.kernel),
        keras.ops.convert_to_numpy(grid_dense.bias),
        keras.ops.convert_to_numpy(residual_dense.kernel),
    )
    # Batch mode: every frame its own graph — a chain, a star, an isolated
    # region, a complete graph, one edge, none (all six frames differ).
    graphs = [
        [(0, 1), (1, 2), (2, 3)],
        [(0, 1), (0, 2), (0, 3)],
        [(0, 1), (1, 2)],
        [(i, j) for i in range(REGIONS) for j in range(i + 1, REGIONS)],
        [(2, 3)],
        [],
    ]
    batch = np.zeros((BATCH, FRAMES, REGIONS, REGIONS), "float32")
    for index, edges in enumerate(graphs):
        for i, j in edges:
            batch[index // FRAMES, index % FRAMES, i, j] = 1.0
            batch[index // FRAMES, index % FRAMES, j, i] = 1.0
    outputs = keras.ops.convert_to_numpy(layer(nodes, batch))
    assert outputs.shape == (BATCH, FRAMES, REGIONS, HIDDEN)
    for b in range(BATCH):
        for t in range(FRAMES):
            np.testing.assert_allclose(
                outputs[b, t],
                _gcn_round_by_hand(nodes[b, t], batch[b, t], *weights),
                rtol=1e-5, atol=1e-5, err_msg=f"frame {b, t}",
            )
    # Mixed mode: one (N, N) graph for every frame, by hand too, and the
    # same as that graph given per frame.
    mixed = batch[0, 0]
    outputs = keras.ops.convert_to_numpy(layer(nodes, mixed))
    for b in range(BATCH):
        for t in range(FRAMES):
            np.testing.assert_allclose(
                outputs[b, t], _gcn_round_by_hand(nodes[b, t], mixed, *weights),
                rtol=1e-5, atol=1e-5,
            )
    broadcast = np.broadcast_to(mixed, batch.shape)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(nodes, broadcast)), outputs, atol=1e-6
    )


def test_spatial_graph_conv_bad_grid():
    with pytest.raises(ValueError, match="grid"):
        SpatialGraphConv(4)(np.zeros((1, 1, 5, 3), "float32"))


def test_temporal_lstm_encoder():
    features = RNG.normal(size=(BATCH, FRAMES, CHANNELS)).astype("float32")
    frame_mask = np.array([[True, True, True], [True, True, False]])
    run_layer_test(
        TemporalLSTMEncoder,
        {"hidden_dim": HIDDEN, "num_layers": 2},
        [features, frame_mask],
        ((BATCH, FRAMES, HIDDEN), (BATCH, HIDDEN), (BATCH, HIDDEN)),
    )


def test_temporal_lstm_encoder_honours_frame_mask():
    encoder = TemporalLSTMEncoder(HIDDEN)
    features = RNG.normal(size=(1, FRAMES, CHANNELS)).astype("float32")
    mask = np.array([[True, True, False]])
    sequence, hidden, _ = encoder(features, mask)
    # The padded frame's content must not matter...
    noisy = features.copy()
    noisy[0, 2] = 100.0
    _, hidden_noisy, _ = encoder(noisy, mask)
    numpy = keras.ops.convert_to_numpy
    np.testing.assert_allclose(numpy(hidden), numpy(hidden_noisy), atol=1e-6)
    # ...and the final state equals running the two real frames alone.
    _, hidden_short, _ = encoder(features[:, :2], None)
    np.testing.assert_allclose(numpy(hidden), numpy(hidden_short), atol=1e-6)
    assert np.all(keras.ops.convert_to_numpy(sequence)[0, 2] == 0)


def _decoder_inputs():
    token_ids = np.array([[2, 5, 6, 7], [2, 8, 3, 0]], "int32")
    encoded = RNG.normal(size=(BATCH, FRAMES, HIDDEN)).astype("float32")
    mask = np.array([[True, True, True], [True, False, False]])
    hidden = RNG.normal(size=(BATCH, HIDDEN)).astype("float32")
    return token_ids, encoded, mask, hidden


@pytest.mark.parametrize("attention", [True, False])
def test_caption_decoder(attention):
    token_ids, encoded, mask, hidden = _decoder_inputs()
    run_layer_test(
        CaptionDecoder,
        {"vocabulary_size": VOCAB, "embedding_dim": 4, "hidden_dim": HIDDEN, "attention": attention},
        [token_ids, encoded, mask],
        (BATCH, 4, VOCAB),
        call_kwargs={},
    )


def test_caption_decoder_step_matches_teacher_forcing():
    token_ids, encoded, mask, hidden = _decoder_inputs()
    decoder = CaptionDecoder(VOCAB, embedding_dim=4, hidden_dim=6)  # projects 8 -> 6
    full, weights = decoder(
        token_ids, encoded, mask, initial_state=(hidden, hidden), return_attention=True
    )
    # Attention never looks at masked frames.
    assert np.all(keras.ops.convert_to_numpy(weights)[1, :, 1:] < 1e-6)
    cache = decoder.initial_cache(encoded, mask, hidden, hidden)
    for step in range(token_ids.shape[1]):
        logits, cache = decoder.step(token_ids[:, step], cache)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(logits),
            keras.ops.convert_to_numpy(full[:, step]),
            atol=1e-5,
        )


GRAPH_FORMS = [
        {"adjacency": "both", "pooling": "attention"},  # the msvd preset's graph
        {"adjacency": "grid", "coordinates": True, "node_update": "sage", "num_layers": 2},
        {"adjacency": "learned", "units": CHANNELS, "pooling": None},  # no residual dense
        {"adjacency": "both", "coordinates": True, "pooling": "keypoints", "pooling_heads": 2},
        {"adjacency": "both", "position_embedding": False, "pooling": "mean"},
        # The residual projected after pooling (`pooled_residual`): mean with
        # the position embedding folded in; attention with two heads and
        # coordinates (the `pool_output` readout).
        {"adjacency": "grid", "pooling": "mean"},
        {"adjacency": "both", "coordinates": True, "pooling_heads": 2},
]


@pytest.mark.parametrize("options", GRAPH_FORMS)
def test_spatial_graph_fused_projection_equals_plain(options):
    # The fused form (one matmul per round, the position embedding and the
    # coordinates folded in as a per-region offset) against the plain
    # per-sublayer form, with the same weights: outputs and the gradients of
    # every weight agree.
    from layer_testing import gradients

    options = dict(options)
    units = options.pop("units", HIDDEN)
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    fused = SpatialGraphConv(units, attention_dim=4, **options)
    assert fused.fused_projection  # the default
    plain = SpatialGraphConv.from_config({**fused.get_config(), "fused_projection": False})
    fused.build(nodes.shape)
    plain.build(nodes.shape)
    # Which configurations take the pooled-residual path: the test must
    # cover it (mean/attention pooling, a residual projection in the last
    # round: one round from CHANNELS to `units`).
    assert fused._pools_residual() == (
        options.get("pooling", "attention") in ("mean", "attention")
        and options.get("num_layers", 1) == 1
        and units != CHANNELS
    ), options
    # Weights well away from zero so that every term (biases, position
    # embedding, coordinates) moves the output.
    plain.set_weights([RNG.normal(size=w.shape) * 0.5 for w in fused.get_weights()])
    fused.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fused(nodes)),
        keras.ops.convert_to_numpy(plain(nodes)),
        rtol=1e-5,
        atol=1e-5,
    )

    def loss(layer):
        return lambda x: keras.ops.sum(keras.ops.sin(layer(x)))

    fused_grads = gradients(loss(fused), fused.trainable_weights, [nodes])
    plain_grads = gradients(loss(plain), plain.trainable_weights, [nodes])
    assert len(fused_grads) == len(plain_grads)
    for weight, ours, reference in zip(fused.trainable_weights, fused_grads, plain_grads):
        # Every weight the fused matmul reads gets a gradient (the pooling
        # score's bias gets none: a softmax over regions ignores a shift).
        if "_dense_" in weight.path or "position" in weight.path:
            assert np.abs(reference).max() > 0, weight.path
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4, err_msg=weight.path)


def test_spatial_graph_config_without_fused_projection_loads():
    # A config saved before `fused_projection` and `pooled_residual` existed
    # builds the fused, pooled-residual form with the same weights layout.
    layer = SpatialGraphConv(HIDDEN, adjacency="both")
    config = layer.get_config()
    del config["fused_projection"], config["pooled_residual"]
    restored = SpatialGraphConv.from_config(config)
    assert restored.fused_projection and restored.pooled_residual
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    layer(nodes)
    restored(nodes)
    assert [w.path for w in restored.weights] == [w.path for w in layer.weights]


@pytest.mark.parametrize("options", GRAPH_FORMS + [{"num_layers": 0, "pooling": "mean"}])
def test_spatial_graph_static_channels_equal_concatenation(options):
    # `static` (channels shared by a frame's regions, projected once per
    # frame) against the plain form fed the explicit concatenation
    # `[nodes, static]`, with the same weights: outputs and gradients agree.
    from layer_testing import gradients

    options = dict(options)
    static_channels = 3
    units = options.pop("units", HIDDEN)
    if options.get("num_layers") == 0:
        units = CHANNELS + static_channels
    nodes = RNG.normal(size=(BATCH, FRAMES, REGIONS, CHANNELS)).astype("float32")
    static = RNG.normal(size=(BATCH, FRAMES, 1, static_channels)).astype("float32")
    static[:, -1] = 0.0  # a padding frame's static part, as TemporalCentering gives it
    joined = np.concatenate(
        [nodes, np.broadcast_to(static, nodes.shape[:-1] + (static_channels,))], axis=-1
    )
    ours = SpatialGraphConv(units, attention_dim=4, **options)
    plain = SpatialGraphConv.from_config({**ours.get_config(), "fused_projection": False})
    ours.build(joined.shape)
    plain.build(joined.shape)
    plain.set_weights([RNG.normal(size=w.shape) * 0.5 for w in ours.get_weights()])
    ours.set_weights(plain.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours(nodes, static=static)),
        keras.ops.convert_to_numpy(plain(joined)),
        rtol=1e-5,
        atol=1e-5,
    )
    ours_grads = gradients(
        lambda x, s: keras.ops.sum(keras.ops.sin(ours(x, static=s))),
        ours.trainable_weights, [nodes, static],
    )
    plain_grads = gradients(
        lambda x: keras.ops.sum(keras.ops.sin(plain(x))), plain.trainable_weights, [joined]
    )
    for weight, mine, reference in zip(ours.trainable_weights, ours_grads, plain_grads):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-4, err_msg=weight.path)
    # The inputs' gradients: the static part's is the sum over the regions.
    np.testing.assert_allclose(ours_grads[-2], plain_grads[-1][..., :CHANNELS], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        ours_grads[-1], plain_grads[-1][..., CHANNELS:].sum(axis=-2, keepdims=True),
        rtol=1e-4, atol=1e-4,
    )
    with pytest.raises(ValueError, match="one set of channels per frame"):
        ours(nodes, static=np.broadcast_to(static, nodes.shape[:-1] + (static_channels,)))
