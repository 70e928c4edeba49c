import keras
import numpy as np
from keras import ops


def grid_adjacency(height, width, neighbourhood=8):
    """The adjacency matrix of an `height x width` grid of regions.

    Args:
        height: int. Rows of the grid.
        width: int. Columns of the grid.
        neighbourhood: int. 8 (king moves) or 4 (rook moves).

    Returns:
        float32 array `(height * width, height * width)`, 1 between
        neighbouring regions, 0 elsewhere and on the diagonal.
    """
    if neighbourhood not in (4, 8):
        raise ValueError(f"`neighbourhood` must be 4 or 8, got {neighbourhood}.")
    num_regions = height * width
    adjacency = np.zeros((num_regions, num_regions), dtype="float32")
    for row in range(height):
        for col in range(width):
            for d_row in (-1, 0, 1):
                for d_col in (-1, 0, 1):
                    if (d_row, d_col) == (0, 0):
                        continue
                    if neighbourhood == 4 and d_row and d_col:
                        continue
                    other_row, other_col = row + d_row, col + d_col
                    if 0 <= other_row < height and 0 <= other_col < width:
                        adjacency[
                            row * width + col, other_row * width + other_col
                        ] = 1.0
    return adjacency


def resolve_grid(num_regions, grid_shape=None, owner="layer"):
    """`(height, width)` of `num_regions` regions: `grid_shape`, or a square.

    Raises a ValueError naming `owner` when the regions do not fill it.
    """
    if grid_shape is not None:
        height, width = grid_shape
    else:
        side = int(round(num_regions**0.5))
        height, width = side, side
    if height * width != num_regions:
        raise ValueError(
            f"{owner}: {num_regions} regions do not fill a grid "
            f"of {height}x{width}; pass `grid_shape=(height, width)`."
        )
    return height, width


def grid_coordinates(height, width):
    """Each region's `(x, y)` in [-1, 1], row-major: float32 `(H * W, 2)`."""
    rows, cols = np.meshgrid(
        np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width), indexing="ij"
    )
    return np.stack([cols.reshape(-1), rows.reshape(-1)], axis=-1).astype("float32")


@keras.saving.register_keras_serializable(package="keras_pvc")
class SpatialGraphConv(keras.layers.Layer):
    """Message passing between the regions of each frame, then node pooling.

    A graph convolution whose nodes are the `N` regions of one frame (the
    cells of a CNN's last feature map) so that "what is where, next to what"
    survives into the temporal model. Two adjacencies, alone or together:

    - `"grid"` — a fixed spatial grid, regions linked to their 8 (or 4)
      neighbours, normalised as in Kipf & Welling's GCN:
      `X' = act(D^-1/2 (A + I) D^-1/2 X W + b)`.
    - `"learned"` — an adjacency computed from the features of each frame,
      as object-relational-graph captioners do (dot-product attention):
      `A = softmax(X Wq (X Wk)^T / sqrt(d))`, `X' = act(A X W + b)`.
    - `"both"` — the sum of the two messages.

    Nodes learn where they are from a learned position embedding per region
    and, with `coordinates=True`, from two fixed channels holding the region's
    `(x, y)` in [-1, 1] appended to the inputs of every message (CoordConv,
    as relation networks tag their objects): left/right/above/below are what
    the captions ask for. Each round is residual, `X' = X Wr +
    act(messages)` (`Wr` only when channels change); with
    `node_update="sage"` a node's own features enter the activation
    beside its neighbours' (`act(X Ws + messages)`, GraphSAGE-style), so one
    round can form conjunctions such as "red, and something to my right".
    With `pooling` set, the nodes of each frame are pooled to one vector.
    Attention pooling may use several heads (`pooling_heads`, e.g. one per
    object it learns to look for); with `coordinates=True` each head also
    reports *where* it looked, the attention-weighted `(x, y)`. Mean or max
    pooling keeps "what" and loses "where"; this keeps both, so the temporal
    model can compare positions between objects (left of, above) and over
    time (moves toward, moves up). With more than one head, or coordinates,
    the heads' `[what, where]` are projected back to `units`.
    `pooling="keypoints"` keeps the mean (or, with `keypoint_summary="max"`,
    the max) of the nodes ("what", untouched) and appends, for each of
    `pooling_heads` learned detectors, the `(x, y)` its softmax over regions
    points at (a spatial soft-argmax, as keypoint
    networks read positions from feature maps): "what" and "where" side by
    side, with no projection to mix them, `units + 2 * pooling_heads`
    channels. `num_layers=0` skips message passing: the pooling alone (the
    ablation that tells what the messages add).

    **Mode**: batch and mixed, as spektral names them. The grid adjacency is
    one `(N, N)` matrix shared by every frame (mixed mode); the learned one is
    per frame (batch mode). An explicit `adjacency` can be passed to `call`
    as `(N, N)` (mixed) or `(B, T, N, N)` (batch); it is normalised with
    `preprocess`.

    **Input**: node features `(B, T, N, C)` (or `(B, N, C)` for single images).

    **Output**: `(B, T, units)` with pooling (`(B, T, units + 2 * heads)`
    with `"keypoints"`), `(B, T, N, units)` without.

    Args:
        units: int. Output channels per node.
        grid_shape: tuple `(height, width)` with `height * width == N`, or
            None for a square grid inferred from `N`.
        adjacency: str. `"grid"`, `"learned"` or `"both"`.
        num_layers: int. Rounds of message passing; 0 for none (then
            `units` must equal the input channels).
        neighbourhood: int. 8 or 4 neighbours in the grid adjacency.
        attention_dim: int. Query/key size of the learned adjacency.
        position_embedding: bool. Add a learned embedding per region.
        coordinates: bool. Append each region's fixed `(x, y)` in [-1, 1]
            to the inputs of the messages (not to the residual path).
        node_update: str. `"residual"` (`act(messages)` added to the node)
            or `"sage"` (`act(X Ws + messages)` added to the node).
        pooling: str or None. `"mean"`, `"max"`, `"attention"` (a learned
            softmax over regions), `"keypoints"` (the mean or max, plus where
            each head looks) or None to return the nodes.
        pooling_heads: int. Heads of attention or keypoint pooling.
        keypoint_summary: str. "What" beside the keypoints: `"mean"` or
            `"max"` over the nodes. Max keeps a small object's features
            from being averaged away by the background; the `procedural`
            preset uses it (README: the graph ablation).
        activation: str. Activation of each round.
        dropout: float. Dropout on the messages.
        fused_projection: bool. Compute every projection of a round (grid,
            learned, query, key, self, residual) as one matmul of the
            nodes by the sublayers' kernels side by side, with the position
            embedding and the coordinates folded in as a per-region offset
            (`(X + P) W = X W + P W`): the `(B, T, N, C)` sum `X + P` is
            never formed and no gradient flows back through it, which
            removes one `(B*T*N, C) x (C, units)` matmul per projection
            from the backward pass. Same weights, same numbers (to float
            rounding); False is the plain per-sublayer form (kept as a
            benchmark variant, `benchmarks/graph_cost.py`).
        pooled_residual: bool. With `fused_projection`, `pooling` `"mean"`
            or `"attention"` and a residual projection in the last round
            (input channels != `units`), project that residual after the
            pooling instead of at every node: pooling is linear in the
            nodes, so `pool(X Wr) = pool(X) Wr` (attention's scores take
            their residual part as `X (Wr Ws)`). The same numbers (to float
            rounding) for `(N - 1) / N` less of the residual's matmul work:
            at the `msvd` preset's shape (1280 -> 512, 49 regions) a third
            of the graph's projections. False projects every node (kept as
            a benchmark variant, `benchmarks/train_throughput.py`).
        **kwargs: Standard layer arguments.

    Call arguments:
        nodes: float tensor `(B, T, N, C)`.
        adjacency: optional float tensor, `(N, N)` or `(B, T, N, N)`.
        training: bool.
        static: optional float tensor `(B, T, 1, S)`: channels shared by
            every region of a frame (a clip's pooled appearance, as
            `TemporalCentering` appends it), read as if concatenated to
            each region's `C` (the layer is built on `C + S` channels). With
            `fused_projection` the first round projects them once per frame
            instead of once per region, `[X, s] W = X W_x + s W_s`, the
            same numbers (to float rounding) for `S / (C + S)` less of its
            matmul work.

    Example:
    ```python
    regions = np.random.rand(2, 4, 16, 32).astype("float32")  # 4x4 grid
    graph = keras_pvc.layers.SpatialGraphConv(64, adjacency="both")
    graph(regions).shape  # (2, 4, 64)
    ```

    Reference:
    - [Kipf & Welling, 2017](https://arxiv.org/abs/1609.02907)
    - [Zhang et al., Object Relational Graph, 2020](https://arxiv.org/abs/2003.13942)
    - [Finn et al., Deep Spatial Autoencoders, 2016](https://arxiv.org/abs/1509.06113)
      (spatial soft-argmax)
    """

    def __init__(
        self,
        units,
        grid_shape=None,
        adjacency="grid",
        num_layers=1,
        neighbourhood=8,
        attention_dim=64,
        position_embedding=True,
        coordinates=False,
        node_update="residual",
        pooling="attention",
        pooling_heads=1,
        keypoint_summary="mean",
        activation="relu",
        dropout=0.0,
        fused_projection=True,
        pooled_residual=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if adjacency not in ("grid", "learned", "both"):
            raise ValueError(
                "`adjacency` must be 'grid', 'learned' or 'both', "
                f"got {adjacency!r}."
            )
        if pooling not in ("mean", "max", "attention", "keypoints", None):
            raise ValueError(
                "`pooling` must be 'mean', 'max', 'attention', 'keypoints' or "
                f"None, got {pooling!r}."
            )
        if keypoint_summary not in ("mean", "max"):
            raise ValueError(
                "`keypoint_summary` must be 'mean' or 'max', got "
                f"{keypoint_summary!r}."
            )
        if num_layers < 0:
            raise ValueError(f"`num_layers` must be >= 0, got {num_layers}.")
        if node_update not in ("residual", "sage"):
            raise ValueError(
                f"`node_update` must be 'residual' or 'sage', got {node_update!r}."
            )
        self.units = units
        self.grid_shape = tuple(grid_shape) if grid_shape else None
        self.adjacency = adjacency
        self.num_layers = num_layers
        self.neighbourhood = neighbourhood
        self.attention_dim = attention_dim
        self.position_embedding = position_embedding
        self.coordinates = coordinates
        self.node_update = node_update
        self.pooling = pooling
        self.pooling_heads = int(pooling_heads)
        self.keypoint_summary = keypoint_summary
        if self.pooling_heads < 1:
            raise ValueError(f"`pooling_heads` must be >= 1, got {pooling_heads}.")
        self.activation = keras.activations.get(activation)
        self.dropout = dropout
        self.fused_projection = bool(fused_projection)
        self.pooled_residual = bool(pooled_residual)
        self.supports_masking = True

    @staticmethod
    def preprocess(adjacency):
        """`D^-1/2 (A + I) D^-1/2`, the GCN normalisation, on any batch shape."""
        adjacency = ops.convert_to_tensor(adjacency, "float32")
        num_nodes = ops.shape(adjacency)[-1]
        adjacency = adjacency + ops.eye(num_nodes, dtype="float32")
        degree = ops.sum(adjacency, axis=-1)
        inverse_sqrt = ops.where(degree > 0, ops.rsqrt(degree), 0.0)
        return (
            adjacency
            * ops.expand_dims(inverse_sqrt, -1)
            * ops.expand_dims(inverse_sqrt, -2)
        )

    def _resolve_grid(self, num_regions):
        return resolve_grid(num_regions, self.grid_shape, "SpatialGraphConv")

    def build(self, nodes_shape, adjacency_shape=None):
        num_regions, channels = nodes_shape[-2], nodes_shape[-1]
        if self.num_layers == 0 and channels != self.units:
            raise ValueError(
                "SpatialGraphConv: with `num_layers=0` (pooling only) `units` "
                f"must equal the input channels, {channels}; got {self.units}."
            )
        height, width = self._resolve_grid(num_regions)
        self.resolved_grid_shape = (height, width)
        normalised = self.preprocess(
            grid_adjacency(height, width, self.neighbourhood)
        )
        # Constants of the layer, not weights: rebuilt from the config.
        self.grid_matrix = ops.convert_to_numpy(normalised)
        self.coordinate_matrix = grid_coordinates(height, width)
        if self.position_embedding:
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(num_regions, channels),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        self.grid_dense, self.learned_dense = [], []
        self.query_dense, self.key_dense, self.residual_dense = [], [], []
        self.self_dense = []
        in_channels = channels
        extra = 2 if self.coordinates else 0
        for index in range(self.num_layers):
            if self.adjacency in ("grid", "both"):
                dense = keras.layers.Dense(
                    self.units, name=f"grid_dense_{index}", dtype=self.dtype_policy
                )
                dense.build((None, in_channels + extra))
                self.grid_dense.append(dense)
            if self.adjacency in ("learned", "both"):
                dense = keras.layers.Dense(
                    self.units,
                    use_bias=self.adjacency == "learned",
                    name=f"learned_dense_{index}",
                    dtype=self.dtype_policy,
                )
                query = keras.layers.Dense(
                    self.attention_dim,
                    name=f"query_dense_{index}",
                    dtype=self.dtype_policy,
                )
                key = keras.layers.Dense(
                    self.attention_dim,
                    name=f"key_dense_{index}",
                    dtype=self.dtype_policy,
                )
                for layer in (dense, query, key):
                    layer.build((None, in_channels + extra))
                self.learned_dense.append(dense)
                self.query_dense.append(query)
                self.key_dense.append(key)
            if self.node_update == "sage":
                dense = keras.layers.Dense(
                    self.units,
                    use_bias=False,
                    name=f"self_dense_{index}",
                    dtype=self.dtype_policy,
                )
                dense.build((None, in_channels + extra))
                self.self_dense.append(dense)
            residual = None
            if in_channels != self.units:
                residual = keras.layers.Dense(
                    self.units,
                    use_bias=False,
                    name=f"residual_dense_{index}",
                    dtype=self.dtype_policy,
                )
                residual.build((None, in_channels))
            self.residual_dense.append(residual)
            in_channels = self.units
        self.message_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy
        )
        self.pool_output = None
        if self.pooling in ("attention", "keypoints"):
            self.pool_score = keras.layers.Dense(
                self.pooling_heads, name="pool_score", dtype=self.dtype_policy
            )
            self.pool_score.build((None, self.units))
            if self.pooling == "attention" and (
                self.pooling_heads > 1 or self.coordinates
            ):
                self.pool_output = keras.layers.Dense(
                    self.units, name="pool_output", dtype=self.dtype_policy
                )
                self.pool_output.build(
                    (None, self.pooling_heads * (self.units + extra))
                )

    def learned_adjacency(self, nodes, layer_index=0):
        """The row-normalised attention adjacency `(..., N, N)` of `nodes`."""
        return self._attention(
            self.query_dense[layer_index](nodes), self.key_dense[layer_index](nodes)
        )

    # `call` takes `static` (channels shared by a frame's regions).
    accepts_static = True

    def call(self, nodes, adjacency=None, training=None, static=None):
        if self._pools_residual():
            nodes = ops.convert_to_tensor(nodes, dtype=self.compute_dtype)
            messages, deferred = self._propagate_fused(
                nodes, self._grid(nodes, adjacency), training, defer_residual=True,
                static=self._static(static, nodes),
            )
            return self._pool_deferred(messages, *deferred)
        return self.pool(self.propagate(nodes, adjacency, training, static))

    def _static(self, static, nodes):
        if static is None:
            return None
        static = ops.convert_to_tensor(static, dtype=nodes.dtype)
        if len(static.shape) != len(nodes.shape) or static.shape[-2] != 1:
            raise ValueError(
                "SpatialGraphConv: `static` must be (..., 1, S), one set of "
                f"channels per frame; got {tuple(static.shape)} for nodes "
                f"{tuple(nodes.shape)}."
            )
        return static

    @staticmethod
    def _with_static(nodes, static):
        """`[nodes, static]` with `static` broadcast over the regions."""
        if static is None:
            return nodes
        shape = tuple(ops.shape(nodes)[:-1]) + (ops.shape(static)[-1],)
        return ops.concatenate([nodes, ops.broadcast_to(static, shape)], axis=-1)

    def _pools_residual(self):
        """Whether `call` projects the last round's residual after pooling."""
        return (
            self.pooled_residual
            and self.fused_projection
            and self.num_layers > 0
            and self.pooling in ("mean", "attention")
            and self.residual_dense[-1] is not None
        )

    def _grid(self, nodes, adjacency):
        if adjacency is None:
            return ops.cast(self.grid_matrix, nodes.dtype)
        return ops.cast(self.preprocess(adjacency), nodes.dtype)

    def propagate(self, nodes, adjacency=None, training=None, static=None):
        """The nodes after message passing, before pooling `(..., N, units)`."""
        nodes = ops.convert_to_tensor(nodes, dtype=self.compute_dtype)
        static = self._static(static, nodes)
        grid = self._grid(nodes, adjacency)
        if self.fused_projection and self.num_layers > 0:
            return self._propagate_fused(nodes, grid, training, static=static)
        nodes = self._with_static(nodes, static)
        if self.position_embedding:
            nodes = nodes + ops.cast(self.position_embeddings, nodes.dtype)
        if self.coordinates:
            coordinates = ops.broadcast_to(
                ops.cast(self.coordinate_matrix, nodes.dtype),
                tuple(ops.shape(nodes)[:-1]) + (2,),
            )
        for index in range(self.num_layers):
            # Coordinates tag the messages (where a neighbour is); the node
            # state itself stays in feature space, so the residual path
            # carries the input unchanged when `units` equals its channels.
            inputs = nodes
            if self.coordinates:
                inputs = ops.concatenate([nodes, coordinates], axis=-1)
            projections = {}
            if self.adjacency in ("grid", "both"):
                projections["grid"] = self.grid_dense[index](inputs)
            if self.adjacency in ("learned", "both"):
                projections["learned"] = self.learned_dense[index](inputs)
                projections["query"] = self.query_dense[index](inputs)
                projections["key"] = self.key_dense[index](inputs)
            if self.node_update == "sage":
                projections["self"] = self.self_dense[index](inputs)
            residual = nodes
            if self.residual_dense[index] is not None:
                residual = self.residual_dense[index](nodes)
            nodes = residual + self._messages(projections, grid, training)
        return nodes

    def _messages(self, projections, grid, training):
        """`dropout(act(messages))` of one round from its projections."""
        message = 0.0
        if "grid" in projections:
            message = message + ops.matmul(grid, projections["grid"])
        if "learned" in projections:
            attention = self._attention(projections["query"], projections["key"])
            message = message + ops.matmul(attention, projections["learned"])
        if "self" in projections:
            message = message + projections["self"]
        return self.message_dropout(self.activation(message), training=training)

    def _attention(self, query, key):
        scores = ops.matmul(query, ops.swapaxes(key, -1, -2))
        scores = scores / ops.sqrt(ops.cast(self.attention_dim, scores.dtype))
        return ops.softmax(scores, axis=-1)

    def _round_sublayers(self, index):
        """`[(name, dense, takes_coordinates)]` of round `index`."""
        sublayers = []
        if self.adjacency in ("grid", "both"):
            sublayers.append(("grid", self.grid_dense[index], True))
        if self.adjacency in ("learned", "both"):
            sublayers.append(("learned", self.learned_dense[index], True))
            sublayers.append(("query", self.query_dense[index], True))
            sublayers.append(("key", self.key_dense[index], True))
        if self.node_update == "sage":
            sublayers.append(("self", self.self_dense[index], True))
        if self.residual_dense[index] is not None:
            sublayers.append(("residual", self.residual_dense[index], False))
        return sublayers

    def _propagate_fused(self, nodes, grid, training, defer_residual=False, static=None):
        """`propagate` with one matmul per round (see `fused_projection`).

        With `defer_residual`, the last round leaves its residual projection
        out and returns `(messages, (inputs, offset, static))`: the round's
        output is `([inputs, static] + offset) Wr + messages` (`offset` the
        position embedding and `static` the per-frame channels when it is
        the first round, else None), for `_pool_deferred`."""
        dtype = nodes.dtype
        # A per-region term added to every frame's nodes before a round:
        # the position embedding (first round only); folded into the
        # projection as `offset @ kernel` instead of materialised.
        offset = None
        if self.position_embedding:
            offset = ops.cast(self.position_embeddings, dtype)
        coordinates = ops.cast(self.coordinate_matrix, dtype)
        for index in range(self.num_layers):
            channels = ops.shape(nodes)[-1]
            static_channels = 0 if static is None else ops.shape(static)[-1]
            inputs = channels + static_channels
            sublayers = self._round_sublayers(index)
            deferring = defer_residual and index == self.num_layers - 1
            if deferring:
                sublayers = [s for s in sublayers if s[0] != "residual"]
            kernels, coordinate_kernels, biases, widths = [], [], [], []
            for _, dense, takes_coordinates in sublayers:
                kernel = ops.cast(dense.kernel, dtype)
                width = dense.units
                kernels.append(kernel[:inputs])
                if self.coordinates:
                    coordinate_kernels.append(
                        kernel[inputs:]
                        if takes_coordinates
                        else ops.zeros((2, width), dtype)
                    )
                biases.append(
                    ops.cast(dense.bias, dtype)
                    if dense.use_bias
                    else ops.zeros((width,), dtype)
                )
                widths.append(width)
            kernel = ops.concatenate(kernels, axis=-1)  # (C + S, total)
            region_term = ops.concatenate(biases, axis=-1)  # (total,)
            if offset is not None:
                region_term = region_term + ops.matmul(offset, kernel)
            if self.coordinates:
                region_term = region_term + ops.matmul(
                    coordinates, ops.concatenate(coordinate_kernels, axis=-1)
                )
            if static is not None:  # (B, T, 1, total), once per frame
                region_term = region_term + ops.matmul(static, kernel[channels:])
            projected = ops.matmul(nodes, kernel[:channels]) + region_term
            splits = [int(s) for s in np.cumsum(widths)[:-1]]
            parts = ops.split(projected, splits, axis=-1) if splits else [projected]
            projections = {
                name: part for (name, _, _), part in zip(sublayers, parts)
            }
            if deferring:
                return self._messages(projections, grid, training), (nodes, offset, static)
            residual = projections.pop("residual", None)
            if residual is None:  # `units` == channels: the nodes themselves
                residual = self._with_static(nodes, static)
                residual = residual if offset is None else residual + offset
            nodes = residual + self._messages(projections, grid, training)
            offset = static = None
        return nodes

    def pool(self, nodes):
        """Pools nodes `(..., N, units)` to `(..., units)` (per `pooling`)."""
        if self.pooling is None:
            return nodes
        if self.pooling == "mean":
            return ops.mean(nodes, axis=-2)
        if self.pooling == "max":
            return ops.max(nodes, axis=-2)
        weights = self.head_weights(nodes)  # (..., N, heads)
        if self.pooling == "keypoints":
            summary = ops.max if self.keypoint_summary == "max" else ops.mean
            return ops.concatenate(
                [summary(nodes, axis=-2), self.keypoints(weights)], axis=-1
            )
        # (..., heads, N) x (..., N, units) -> (..., heads, units)
        return self._attention_readout(
            ops.matmul(ops.swapaxes(weights, -1, -2), nodes), weights
        )

    def _pool_deferred(self, messages, inputs, offset, static=None):
        """`pool(([inputs, static] + offset) Wr + messages)` with `Wr`
        applied after the pooling (see `pooled_residual`); same numbers as
        `pool`."""
        dtype = messages.dtype
        full = ops.cast(self.residual_dense[-1].kernel, dtype)  # (C + S, units)
        channels = ops.shape(inputs)[-1]
        kernel = full[:channels]
        region_term = None  # (N, units): the offset's residual, per region
        if offset is not None:
            region_term = ops.matmul(offset, full)
        frame_term = None  # (..., 1, units): static's, the same for every region
        if static is not None:
            frame_term = ops.matmul(static, full[channels:])
        if self.pooling == "mean":
            pooled = ops.matmul(ops.mean(inputs, axis=-2), kernel)
            pooled = pooled + ops.mean(messages, axis=-2)
            if region_term is not None:
                pooled = pooled + ops.mean(region_term, axis=0)
            if frame_term is not None:
                pooled = pooled + ops.squeeze(frame_term, -2)
            return pooled
        score_kernel = ops.cast(self.pool_score.kernel, dtype)  # (units, heads)
        scores = (
            ops.matmul(messages, score_kernel)
            + ops.matmul(inputs, ops.matmul(kernel, score_kernel))
            + ops.cast(self.pool_score.bias, dtype)
        )
        if region_term is not None:
            scores = scores + ops.matmul(region_term, score_kernel)
        if frame_term is not None:  # one shift per frame: softmax unchanged
            scores = scores + ops.matmul(frame_term, score_kernel)
        weights = ops.softmax(scores, axis=-2)  # (..., N, heads)
        transposed = ops.swapaxes(weights, -1, -2)  # (..., heads, N)
        pooled = ops.matmul(ops.matmul(transposed, inputs), kernel)
        pooled = pooled + ops.matmul(transposed, messages)
        if region_term is not None:
            pooled = pooled + ops.matmul(transposed, region_term)
        if frame_term is not None:  # the weights sum to 1 over the regions
            pooled = pooled + frame_term
        return self._attention_readout(pooled, weights)

    def _attention_readout(self, pooled, weights):
        """The heads' pooled nodes `(..., heads, units)` -> `(..., units)`."""
        if self.pool_output is None:
            return ops.squeeze(pooled, -2)
        if self.coordinates:
            pooled = ops.concatenate([pooled, self._where(weights)], axis=-1)
        shape = ops.shape(pooled)
        pooled = ops.reshape(pooled, tuple(shape[:-2]) + (shape[-2] * shape[-1],))
        return self.pool_output(pooled)

    def _where(self, weights):
        """Weights `(..., N, heads)` -> each head's weighted `(x, y)`,
        `(..., heads, 2)`."""
        return ops.matmul(
            ops.swapaxes(weights, -1, -2),
            ops.cast(self.coordinate_matrix, weights.dtype),
        )

    def keypoints(self, weights):
        """Where each head looked: weights `(..., N, heads)` ->
        `(..., 2 * heads)`, the weighted `(x, y)` of every head in turn."""
        where = self._where(weights)
        shape = ops.shape(where)
        return ops.reshape(where, tuple(shape[:-2]) + (shape[-2] * 2,))

    def head_weights(self, nodes):
        """Attention-pooling weights `(..., N, heads)`; each head sums to 1."""
        return ops.softmax(self.pool_score(nodes), axis=-2)

    def region_weights(self, nodes):
        """Attention-pooling weights over regions `(..., N)`, the heads'
        mean; sum to 1."""
        return ops.mean(self.head_weights(nodes), axis=-1)

    def compute_output_shape(self, nodes_shape, adjacency_shape=None):
        if self.pooling is None:
            return tuple(nodes_shape[:-1]) + (self.units,)
        return tuple(nodes_shape[:-2]) + (self.output_dim,)

    @property
    def output_dim(self):
        """Channels of the pooled output: `units`, plus `2 * pooling_heads`
        keypoint coordinates with `pooling="keypoints"`."""
        if self.pooling == "keypoints":
            return self.units + 2 * self.pooling_heads
        return self.units

    def compute_mask(self, nodes, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "grid_shape": list(self.grid_shape) if self.grid_shape else None,
                "adjacency": self.adjacency,
                "num_layers": self.num_layers,
                "neighbourhood": self.neighbourhood,
                "attention_dim": self.attention_dim,
                "position_embedding": self.position_embedding,
                "coordinates": self.coordinates,
                "node_update": self.node_update,
                "pooling": self.pooling,
                "pooling_heads": self.pooling_heads,
                "keypoint_summary": self.keypoint_summary,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "fused_projection": self.fused_projection,
                "pooled_residual": self.pooled_residual,
            }
        )
        return config
