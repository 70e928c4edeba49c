import keras
from keras import ops

STATIC_MODES = (None, "pooled", "salient", "contrast", "still", "unmoved", "figure", "objects", "roles")
# Sharpness of the `"contrast"` / `"still"` softmax over regions (as
# `track_geometry`).
CONTRAST_TEMPERATURE = 4.0


def _distance(features, reference):
    """`|features - reference|` over channels, `(..., 1)`."""
    return ops.sqrt(ops.sum(ops.square(features - reference), -1, keepdims=True) + 1e-6)


def _unit_mean(values):
    """`values (B, ., N, 1)` divided by their mean over the regions."""
    return values / (ops.mean(values, axis=2, keepdims=True) + 1e-6)


def _change(nodes, clip_mean, valid, count):
    """Each region's mean distance from its clip mean over the real frames,
    `(B, 1, N, 1)`: how much it changes over the clip."""
    return ops.sum(_distance(nodes, clip_mean) * valid, axis=1, keepdims=True) / count


def _join(centred, pooled):
    """`[centred, pooled]`, the static part broadcast over the regions."""
    shape = tuple(ops.shape(centred)[:-1]) + (ops.shape(pooled)[-1],)
    return ops.concatenate([centred, ops.broadcast_to(pooled, shape)], axis=-1)


def temporal_centering(nodes, static=None, center=True, region_scores=None):
    """Each region's features minus that region's mean over the clip.

    What stays put over a clip (the background texture, a static shape)
    cancels; what moves, grows or shrinks is left. All-zero frames (padding,
    as the data pipeline writes it) are left out of the clip's mean and stay
    zero.

    Args:
        nodes: float tensor `(B, T, N, C)`.
        static: None, or `"pooled"` to append to every region the clip's
            static part pooled over regions (the mean over the real frames
            and all regions, `C` numbers per clip, the same in every frame):
            a "what" with no "where"; or `"salient"` to append the clip
            means pooled with the weights `softmax(region_scores(mean))`
            over regions instead of uniformly (the static object the scores
            pick, not the background that fills most regions); or
            `"contrast"` to pool them with `softmax(4 d)`, `d` each region's
            distance from the frame-wide average of the clip means (mean 1
            over regions), with no weights to learn; or `"still"`, the same
            less each region's mean change over the clip (also mean 1), so
            that a mover's trail, which stands out in the clip mean too,
            does not count as the still object; or `"unmoved"`, the clip
            means pooled with `softmax(-c^2)`, `c` each region's change over
            the clip (mean 1 over regions): near-uniform over the regions
            that do not change, and without the mover's trail, so a pair's
            still object is not mixed with the mover's colour; or
            `"figure"`, the same less the median of the clip means over
            regions (the background, which fills most of them), so what is
            left is the still objects' contrast with their background and
            not the background by which a clip can be told apart; or
            `"objects"`, two parts side by side: the `"pooled"` mean (where
            the mover's appearance is read) and the clip means pooled with
            `softmax(4 d - c^2)`, `d` each region's distance from the median
            region's clip mean (mean 1 over regions) and `c` its change as
            for `"unmoved"`: the region that stands out from the background
            and does not move, a pair's still object (`2 C` numbers).
        center: bool. False leaves the regions as they are (only the
            pooled static part is appended): the control that tells the
            centring's effect from the pooled "what"'s.
        region_scores: with `"salient"`, a callable from the clip means
            `(B, 1, N, C)` to one score per region `(B, 1, N, 1)`.

    Returns:
        float tensor `(B, T, N, C)`, or `(B, T, N, 2 * C)` with a `static`
        part (`(B, T, N, 3 * C)` with `"objects"` or `"roles"`).
    """
    centred, pooled = centring_parts(nodes, static, center, region_scores)
    return centred if pooled is None else _join(centred, pooled)


def centring_parts(nodes, static=None, center=True, region_scores=None):
    """`temporal_centering`'s two parts: the centred regions `(B, T, N, C)`
    and the static part `(B, T, 1, C)` (the same for every region of a real
    frame, zero in padding frames), or None without `static`."""
    if static not in STATIC_MODES:
        raise ValueError(
            f"temporal_centering: `static` must be one of {STATIC_MODES}, got {static!r}."
        )
    nodes = ops.convert_to_tensor(nodes)
    # (B, T, 1, 1): 1 for real frames, 0 for all-zero padding frames.
    valid = ops.cast(
        ops.max(ops.abs(nodes), axis=(2, 3), keepdims=True) > 0, nodes.dtype
    )
    count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)
    clip_mean = ops.sum(nodes * valid, axis=1, keepdims=True) / count  # (B, 1, N, C)
    centred = (nodes - clip_mean) * valid if center else nodes
    if static is None:
        return centred, None
    if static == "salient":
        if region_scores is None:
            raise ValueError("temporal_centering: `static='salient'` needs `region_scores`.")
        weights = ops.softmax(region_scores(clip_mean), axis=2)  # (B, 1, N, 1)
        pooled = ops.sum(weights * clip_mean, axis=2, keepdims=True)
    elif static in ("unmoved", "figure"):
        change = _unit_mean(_change(nodes, clip_mean, valid, count))
        weights = ops.softmax(-ops.square(change), axis=2)  # (B, 1, N, 1)
        pooled = ops.sum(weights * clip_mean, axis=2, keepdims=True)
        if static == "figure":
            pooled = pooled - ops.median(clip_mean, axis=2, keepdims=True)
    elif static == "objects":
        background = ops.median(clip_mean, axis=2, keepdims=True)
        stands_out = _unit_mean(_distance(clip_mean, background))
        change = _unit_mean(_change(nodes, clip_mean, valid, count))
        weights = ops.softmax(CONTRAST_TEMPERATURE * stands_out - ops.square(change), axis=2)
        still = ops.sum(weights * clip_mean, axis=2, keepdims=True)
        pooled = ops.concatenate([ops.mean(clip_mean, axis=2, keepdims=True), still], axis=-1)
    elif static == "roles":
        moving = _unit_mean(_distance(nodes, clip_mean))  # (B, T, N, 1)
        weights = ops.softmax(CONTRAST_TEMPERATURE * moving, axis=2)
        mover = ops.sum(weights * nodes, axis=2, keepdims=True)  # (B, T, 1, C)
        pooled = ops.broadcast_to(ops.mean(clip_mean, axis=2, keepdims=True), ops.shape(mover))
        pooled = ops.concatenate([pooled, mover], axis=-1)
    elif static in ("contrast", "still"):
        # How far each region's clip mean stands out from the frame-wide
        # average of the clip means (B, 1, N, 1), mean 1 over regions.
        score = _unit_mean(_distance(clip_mean, ops.mean(clip_mean, axis=2, keepdims=True)))
        if static == "still":
            # Less how much the region changes over the clip (its mean
            # distance from its clip mean over the real frames, mean 1 over
            # regions): the mover's trail stands out too, but it changes.
            score = score - _unit_mean(_change(nodes, clip_mean, valid, count))
        weights = ops.softmax(CONTRAST_TEMPERATURE * score, axis=2)  # (B, 1, N, 1)
        pooled = ops.sum(weights * clip_mean, axis=2, keepdims=True)
    else:
        pooled = ops.mean(clip_mean, axis=2, keepdims=True)  # (B, 1, 1, C)
    return centred, pooled * valid


@keras.saving.register_keras_serializable(package="keras_pvc")
class TemporalCentering(keras.layers.Layer):
    """A spatial graph that sees only what changes over the clip.

    Wraps any spatial graph layer (`SpatialGraphConv` or another with its
    contract, `(B, T, N, C)` -> `(B, T, D)`) and feeds it the region features
    centred in time (`temporal_centering`): each region minus its mean over
    the clip's real frames. Parameter-free; what is static in a clip — on a
    few hundred clips, the background texture by which a captioner can tell
    its training clips apart and memorise their captions (issue 15) — is
    removed before any weight sees it, and what moves is kept. With
    `static="pooled"` the graph also gets the clip's static part averaged
    over regions (a "what" with no "where"), appended to every region; with
    `static="salient"` that average is a learned softmax over regions (one
    `Dense(1)` score per region of the clip mean), so that a small static
    object — the second shape of "a moves toward b" — is not averaged away
    by the background; `static="contrast"` weighs the regions by how far
    their clip mean stands out from the frame's, with no weights to learn,
    and `static="still"` the same less how much each region changes over the
    clip (the still object, not the mover's trail); `static="unmoved"` pools
    near-uniformly over the regions that do not change (the background and
    a pair's still object, without the mover), and `static="figure"` the
    same less the background (the median region); `static="objects"` gives
    both the pooled mean and the region that stands out and stays put, and
    `static="roles"` the pooled mean and, frame by frame, what moves.

    **Input**: region features `(B, T, N, C)`. **Output**: the graph's,
    `(B, T, D)`. The graph is built on `C` channels, or `2 * C` with
    a `static` part (`3 * C` with `"objects"` or `"roles"`).

    Args:
        graph: layer or layer config. The spatial graph that reads the
            centred regions.
        static: None, `"pooled"`, `"salient"`, `"contrast"`, `"still"`,
            `"unmoved"`, `"figure"`, `"objects"` or `"roles"` (see above).
        center: bool. False skips the centring and only appends the pooled
            static part (a control; needs `static="pooled"`).
        **kwargs: Standard layer arguments.

    Example:
    ```python
    regions = np.random.rand(2, 8, 49, 32).astype("float32")
    centred = TemporalCentering(SpatialGraphConv(16, pooling="mean"))
    centred(regions).shape  # (2, 8, 16)
    ```
    """

    def __init__(self, graph, static=None, center=True, **kwargs):
        super().__init__(**kwargs)
        if static not in STATIC_MODES:
            raise ValueError(
                f"TemporalCentering: `static` must be one of {STATIC_MODES}, got {static!r}."
            )
        if not center and static is None:
            raise ValueError(
                "TemporalCentering: `center=False` with `static=None` would "
                "leave the regions unchanged; pass `static='pooled'`."
            )
        if not isinstance(graph, keras.layers.Layer):
            graph = keras.layers.deserialize(graph)
        self.graph = graph
        self.static = static
        self.center = bool(center)

    def _inner_shape(self, nodes_shape):
        channels = nodes_shape[-1]
        if self.static is not None and channels is not None:
            channels = (3 if self.static in ("objects", "roles") else 2) * channels
        return tuple(nodes_shape[:-1]) + (channels,)

    def build(self, nodes_shape):
        if len(nodes_shape) != 4:
            raise ValueError(
                "TemporalCentering: expected region features (B, T, N, C), got "
                f"shape {tuple(nodes_shape)}."
            )
        self.salience = None
        if self.static == "salient":
            self.salience = keras.layers.Dense(
                1, name="salience", dtype=self.dtype_policy
            )
            self.salience.build(tuple(nodes_shape[:1]) + (1,) + tuple(nodes_shape[2:]))
        # A graph deserialized from a config with its build config is built.
        if not self.graph.built:
            self.graph.build(self._inner_shape(nodes_shape))

    def call(self, nodes, training=None):
        centred, pooled = centring_parts(nodes, self.static, self.center, self.salience)
        if pooled is not None and getattr(self.graph, "accepts_static", False):
            # The graph projects the static part once per frame, not per region.
            return self.graph(centred, static=pooled, training=training)
        return self.graph(centred if pooled is None else _join(centred, pooled), training=training)

    @property
    def units(self):
        return self.graph.units

    @property
    def output_dim(self):
        return getattr(self.graph, "output_dim", self.graph.units)

    def compute_output_shape(self, nodes_shape):
        return self.graph.compute_output_shape(self._inner_shape(nodes_shape))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "graph": keras.layers.serialize(self.graph),
                "static": self.static,
                "center": self.center,
            }
        )
        return config
