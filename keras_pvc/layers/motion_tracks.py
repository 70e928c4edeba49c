import keras
from keras import ops

from keras_pvc.layers.spatial_graph_conv import grid_coordinates
from keras_pvc.layers.spatial_graph_conv import resolve_grid


def unit_distances(nodes, reference, valid, count):
    """Each region's distance from `reference`, over its clip-wide mean.

    Args:
        nodes: float tensor `(B, T, N, C)`.
        reference: float tensor broadcastable to `nodes` (the clip mean
            `(B, 1, N, C)`, or the frame mean `(B, T, 1, C)`).
        valid: float tensor `(B, T, 1, 1)`, 1 for real frames.
        count: float tensor `(B, 1, 1, 1)`, the real frames (at least 1).

    Returns:
        float tensor `(B, T, N)`: the distances divided by their mean over
        the clip's real frames and regions (so mean 1, whatever the
        features' scale), zero on padding frames.
    """
    distance = ops.sqrt(ops.sum(ops.square(nodes - reference), axis=-1) + 1e-6)
    distance = distance * valid[..., 0]  # (B, T, N)
    scale = ops.sum(distance, axis=(1, 2), keepdims=True) / (
        count[..., 0] * ops.cast(ops.shape(nodes)[2], nodes.dtype)
    )
    return distance / (scale + 1e-6)


def track_geometry(nodes, grid_shape, temperature=4.0):
    """Where a clip changes, and where it stands out, frame by frame.

    Two parameter-free saliency maps over the `N` regions of every frame,
    each read out as a soft-argmax (Finn et al.'s spatial soft-argmax, with
    fixed rather than learned scores):

    - *change*: how far a region's features are from that region's mean over
      the clip's frames — what moves, grows or shrinks;
    - *contrast*: how far a region's features are from the frame's mean over
      regions — what stands out from the background, moving or not.

    For each map: the weighted `(x, y)` (coordinates in [-1, 1]), the spread
    `sum w |p - centroid|^2`, and the map's mean (how much changes or stands
    out), 4 numbers per map and frame. All-zero frames (padding) are left out
    of the clip's mean and get zeros.

    Args:
        nodes: float tensor `(B, T, N, C)`.
        grid_shape: `(height, width)` of the regions, `height * width == N`.
        temperature: float. Sharpness of the soft-argmax over the saliency
            (each map is divided by its clip-wide mean first, so the scale
            of the features does not matter).

    Returns:
        float tensor `(B, T, 8)`: change `(x, y, spread, mass)` then contrast
        `(x, y, spread, mass)`.
    """
    coords = ops.convert_to_tensor(grid_coordinates(*grid_shape))
    nodes = ops.cast(nodes, "float32")
    # (B, T, 1, 1): 1 for real frames, 0 for all-zero padding frames.
    valid = ops.cast(ops.max(ops.abs(nodes), axis=(2, 3), keepdims=True) > 0, "float32")
    count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
    clip_mean = ops.sum(nodes * valid, axis=1, keepdims=True) / count
    frame_mean = ops.mean(nodes, axis=2, keepdims=True)
    parts = []
    for reference in (clip_mean, frame_mean):
        saliency = unit_distances(nodes, reference, valid, count)
        weights = ops.softmax(temperature * saliency, axis=-1)
        centroid = ops.matmul(weights, coords)  # (B, T, 2)
        offsets = ops.expand_dims(coords, 0) - ops.expand_dims(centroid, -2)
        spread = ops.sum(weights * ops.sum(ops.square(offsets), -1), -1, keepdims=True)
        mass = ops.mean(saliency, axis=-1, keepdims=True)
        parts += [centroid, spread, mass]
    return ops.concatenate(parts, axis=-1) * valid[..., 0, :]


@keras.saving.register_keras_serializable(package="keras_pvc")
class MotionTracks(keras.layers.Layer):
    """A spatial graph's output, plus where the clip changes and stands out.

    Wraps any spatial graph layer (`SpatialGraphConv` or another with its
    contract, `(B, T, N, C)` -> `(B, T, D)`) and appends, for every frame,
    eight parameter-free numbers (`track_geometry`): the soft-argmax position,
    spread and strength of the regions that change over the clip (what moves,
    grows or shrinks) and of the regions that stand out from their frame
    (the objects, moving or not). A temporal encoder reads motion from these
    few numbers instead of having to learn it from thousands of feature
    channels, which on a few hundred clips it memorises instead (issue 15:
    motion words on held-out renderers). This is a motion stream beside the
    appearance stream, as two-stream video networks keep one, with fixed
    saliency in place of optical flow.

    **Input**: region features `(B, T, N, C)`. **Output**: `(B, T, D + 8)`.

    Args:
        graph: layer or layer config. The spatial graph whose output the
            tracks are appended to.
        grid_shape: `(height, width)`, or None for a square grid.
        temperature: float. Sharpness of the soft-argmaxes.
        scale: float. Factor on the eight numbers (positions are in
            [-1, 1]; the graph's features are larger).
        **kwargs: Standard layer arguments.

    Example:
    ```python
    regions = np.random.rand(2, 8, 49, 32).astype("float32")
    tracks = MotionTracks(SpatialGraphConv(32, num_layers=0, pooling="mean"))
    tracks(regions).shape  # (2, 8, 40)
    ```
    """

    def __init__(
        self, graph, grid_shape=None, temperature=4.0, scale=3.0, deltas=True, **kwargs
    ):
        super().__init__(**kwargs)
        if not isinstance(graph, keras.layers.Layer):
            graph = keras.layers.deserialize(graph)
        self.graph = graph
        self.grid_shape = tuple(grid_shape) if grid_shape else None
        self.temperature = float(temperature)
        self.scale = float(scale)
        self.deltas = bool(deltas)

    def _grid(self, num_regions):
        return resolve_grid(num_regions, self.grid_shape, "MotionTracks")

    def build(self, nodes_shape):
        self._grid(nodes_shape[-2])
        # A graph deserialized from a config with its build config is built.
        if not self.graph.built:
            self.graph.build(nodes_shape)

    def call(self, nodes, training=None):
        pooled = self.graph(nodes, training=training)
        tracks = track_geometry(nodes, self._grid(nodes.shape[-2]), self.temperature)
        if self.deltas:
            # Each number's change since the first frame (padding stays 0):
            # a direction is one subtraction away for the temporal encoder.
            valid = ops.cast(ops.any(ops.not_equal(tracks, 0.0), axis=-1, keepdims=True), tracks.dtype)
            tracks = ops.concatenate([tracks, (tracks - tracks[:, :1]) * valid], axis=-1)
        return ops.concatenate(
            [pooled, ops.cast(tracks * self.scale, pooled.dtype)], axis=-1
        )

    @property
    def track_dim(self):
        """Numbers appended per frame: 8, or 16 with `deltas`."""
        return 16 if self.deltas else 8

    @property
    def output_dim(self):
        return getattr(self.graph, "output_dim", self.graph.units) + self.track_dim

    def compute_output_shape(self, nodes_shape):
        inner = self.graph.compute_output_shape(nodes_shape)
        return tuple(inner[:-1]) + (inner[-1] + self.track_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "graph": keras.layers.serialize(self.graph),
                "grid_shape": list(self.grid_shape) if self.grid_shape else None,
                "temperature": self.temperature,
                "scale": self.scale,
                "deltas": self.deltas,
            }
        )
        return config
