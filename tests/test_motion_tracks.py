import keras
import numpy as np
import pytest
from keras import ops

from keras_pvc.layers import MotionTracks
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers.motion_tracks import track_geometry
from layer_testing import run_layer_test


def _moving_square_clip(path, grid=4, channels=6, background=1.0, strength=5.0):
    """One clip: a constant background and one region, at `path[t]` (row,
    col) in frame t, whose features are `background + strength`."""
    nodes = np.full((1, len(path), grid * grid, channels), background, "float32")
    for t, (row, col) in enumerate(path):
        nodes[0, t, row * grid + col] += strength
    return nodes


def test_track_geometry_by_hand():
    # A 2x2 grid, 2 frames; the object sits in region 0 (top left), then in
    # region 3 (bottom right). Channels 1, background 1, object 1 + 3.
    nodes = np.ones((1, 2, 4, 1), "float32")
    nodes[0, 0, 0, 0] = 4.0
    nodes[0, 1, 3, 0] = 4.0
    out = ops.convert_to_numpy(track_geometry(nodes, (2, 2), temperature=1.0))
    # Change map: the clip mean is 2.5 at regions 0 and 3, 1 at 1 and 2, so
    # frame 0's distances are (1.5, 0, 0, 1.5); their clip-wide mean is
    # 0.75, so the saliency is (2, 0, 0, 2); the soft-argmax of
    # (2, 0, 0, 2) over coordinates (-1,-1), (1,-1), (-1,1), (1,1) is
    # centred at (0, 0).
    e2 = np.exp(2.0)
    w = np.array([e2, 1, 1, e2]) / (2 * e2 + 2)
    coords = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], "float64")
    centroid = w @ coords
    spread = w @ ((coords - centroid) ** 2).sum(-1)
    np.testing.assert_allclose(out[0, 0, :4], [*centroid, spread, 1.0], atol=1e-3)
    # Contrast map, frame 0: the frame mean is 1.75; distances
    # (2.25, 0.75, 0.75, 0.75), mean over the clip 1.125, saliency
    # (2, 2/3, 2/3, 2/3): the centroid leans to region 0, the top left.
    s = np.array([2.0, 2 / 3, 2 / 3, 2 / 3])
    w = np.exp(s) / np.exp(s).sum()
    centroid = w @ coords
    spread = w @ ((coords - centroid) ** 2).sum(-1)
    np.testing.assert_allclose(out[0, 0, 4:], [*centroid, spread, s.mean()], atol=1e-3)
    # Frame 1 mirrors it: the contrast centroid leans to the bottom right.
    np.testing.assert_allclose(out[0, 1, 4:6], -centroid, atol=1e-3)


def test_track_geometry_follows_a_moving_object_and_ignores_padding():
    path = [(1, 0), (1, 1), (1, 2), (1, 3), (1, 3)]
    nodes = _moving_square_clip(path)
    nodes[0, -1] = 0.0  # a padding frame
    out = ops.convert_to_numpy(track_geometry(nodes, (4, 4), temperature=8.0))
    x_change, y_change = out[0, :4, 0], out[0, :4, 1]
    x_contrast = out[0, :4, 4]
    expected_x = np.linspace(-1, 1, 4)  # the object's column, left to right
    np.testing.assert_allclose(x_contrast, expected_x, atol=0.05)
    assert np.all(np.diff(x_change) > 0.3), x_change
    np.testing.assert_allclose(y_change, -1 / 3, atol=0.1)  # row 1 of 4
    np.testing.assert_array_equal(out[0, -1], 0.0)
    # Padding does not change the real frames' numbers.
    unpadded = ops.convert_to_numpy(
        track_geometry(nodes[:, :4], (4, 4), temperature=8.0)
    )
    np.testing.assert_allclose(out[0, :4], unpadded[0], atol=1e-5)


def test_motion_tracks_layer():
    graph = SpatialGraphConv(8, num_layers=1, pooling="attention")
    run_layer_test(
        MotionTracks,
        {"graph": keras.layers.serialize(graph), "temperature": 3.0, "scale": 2.0},
        [np.random.default_rng(0).normal(size=(2, 3, 16, 5)).astype("float32")],
        (2, 3, 8 + 16),
    )


def test_motion_tracks_appends_scaled_geometry_to_the_graph():
    nodes = _moving_square_clip([(0, 0), (2, 1), (3, 3)])
    graph = SpatialGraphConv(6, num_layers=0, pooling="mean", position_embedding=False)
    layer = MotionTracks(graph, temperature=5.0, scale=3.0)
    out = ops.convert_to_numpy(layer(nodes))
    np.testing.assert_allclose(out[..., :6], nodes.mean(axis=2), atol=1e-6)
    tracks = ops.convert_to_numpy(track_geometry(nodes, (4, 4), 5.0))
    np.testing.assert_allclose(out[..., 6:14], 3.0 * tracks, atol=1e-5)
    # Then each number's change since the first frame.
    np.testing.assert_allclose(
        out[..., 14:], 3.0 * (tracks - tracks[:, :1]), atol=1e-5
    )
    assert layer.output_dim == 22
    plain = MotionTracks(graph, temperature=5.0, scale=3.0, deltas=False)
    np.testing.assert_allclose(ops.convert_to_numpy(plain(nodes)), out[..., :14], atol=1e-6)


def test_motion_tracks_rejects_a_non_grid():
    layer = MotionTracks(SpatialGraphConv(4, num_layers=0, pooling="mean"))
    with pytest.raises(ValueError, match="15 regions do not fill a grid"):
        layer(np.ones((1, 2, 15, 4), "float32"))
