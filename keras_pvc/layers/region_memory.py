import keras
from keras import ops

from keras_pvc.layers.motion_tracks import unit_distances


def region_change(regions, frame_mask=None):
    """How far each region is from its own clip mean, frame by frame.

    Args:
        regions: float tensor `(B, T, N, C)`.
        frame_mask: bool tensor `(B, T)` or None (every frame real).

    Returns:
        `(change, mean_change)`: `(B, T, N)` the distance of each region
        from that region's mean over the clip's real frames, divided by the
        clip's mean distance (so a clip's numbers have mean 1 over its real
        frames and regions, whatever the features' scale), zero on padding
        frames; and `(B, T, N)` each region's mean of that over the clip,
        the same in every frame: high where something moves through.
    """
    regions = ops.convert_to_tensor(regions)
    if frame_mask is None:
        frame_mask = ops.ones(ops.shape(regions)[:2], "bool")
    valid = ops.cast(frame_mask, regions.dtype)[:, :, None, None]  # (B, T, 1, 1)
    count = ops.maximum(ops.sum(valid, axis=1, keepdims=True), 1.0)  # (B, 1, 1, 1)
    clip_mean = ops.sum(regions * valid, axis=1, keepdims=True) / count
    change = unit_distances(regions, clip_mean, valid, count)  # (B, T, N)
    mean_change = ops.sum(change, axis=1, keepdims=True) / count[..., 0]
    return change, ops.broadcast_to(mean_change, ops.shape(change)) * valid[..., 0]


@keras.saving.register_keras_serializable(package="keras_pvc")
class RegionMemory(keras.layers.Layer):
    """Every region of every frame as an entry the caption decoder attends to.

    A spatial graph and a temporal LSTM hand the decoder one vector a frame,
    in which a clip's objects are mixed: which colour goes with which shape,
    and which object moves, must survive that mixing. This layer keeps them
    apart instead. Each region of each frame becomes a memory entry

        tanh(x W + p_n + [c, c_bar] W_c)

    (`x` the region's features, `p_n` a learned embedding of its place in
    the grid, `c` how far it is from its own clip mean in that frame and
    `c_bar` that distance's mean over the clip, both parameter-free, from
    `region_change`), and the decoder attends over the frames' states and
    these entries together. A word then reads one place: the colour and
    the shape of an object come from the same entries, and the change
    numbers tell the object that moves from the one that stays.

    `VideoCaptionerBackbone(region_memory=RegionMemory(...))` appends the
    entries to the encoder's sequence (its `units` must equal the
    encoder's); any layer with the same call contract plugs in.

    Args:
        units: int. Size of an entry (the temporal encoder's hidden size).
        change: bool. Add the change numbers `[c, c_bar]`.
        dropout: float. Dropout on the entries in training.
        **kwargs: Standard layer arguments.

    Call arguments:
        regions: float tensor `(B, T, N, C)`.
        frame_mask: bool or int tensor `(B, T)` or None.
        training: bool.

    Returns:
        `(memory, memory_mask)`: float `(B, T * N, units)` (frame-major:
        entry `t * N + n` is region n of frame t) and bool `(B, T * N)`,
        False for the regions of padding frames.

    Example:
    ```python
    memory, mask = keras_pvc.layers.RegionMemory(8)(np.ones((2, 3, 4, 5)))
    memory.shape, mask.shape  # (2, 12, 8), (2, 12)
    ```

    Reference:
    - [Xu et al., 2015](https://arxiv.org/abs/1502.03044), attention over
      a frame's regions; [Zhang et al., 2020](https://arxiv.org/abs/2002.11566),
      object regions as the captioner's memory (ORG-TRL).
    """

    def __init__(self, units, change=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.change = change
        self.dropout = dropout
        self.projection = keras.layers.Dense(
            units, name="projection", dtype=self.dtype_policy
        )
        self.change_projection = None
        if change:
            self.change_projection = keras.layers.Dense(
                units, use_bias=False, name="change_projection", dtype=self.dtype_policy
            )
        self.entry_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, regions_shape, frame_mask_shape=None):
        if len(regions_shape) != 4 or regions_shape[2] is None:
            raise ValueError(
                "RegionMemory needs region features (B, T, N, C) with a known "
                f"number of regions N; got shape {tuple(regions_shape)}."
            )
        self.projection.build((None, regions_shape[-1]))
        self.position_embedding = self.add_weight(
            shape=(regions_shape[2], self.units),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )
        if self.change_projection is not None:
            self.change_projection.build((None, 2))

    def call(self, regions, frame_mask=None, training=None):
        if frame_mask is None:
            frame_mask = ops.ones(ops.shape(regions)[:2], "bool")
        frame_mask = ops.cast(frame_mask, "bool")
        entries = self.projection(regions) + ops.cast(
            self.position_embedding, self.compute_dtype
        )
        if self.change_projection is not None:
            change, mean_change = region_change(
                ops.cast(regions, "float32"), frame_mask
            )
            numbers = ops.cast(ops.stack([change, mean_change], -1), self.compute_dtype)
            entries = entries + self.change_projection(numbers)
        entries = self.entry_dropout(ops.tanh(entries), training=training)
        shape = ops.shape(regions)
        batch, frames, count = shape[0], shape[1], shape[2]
        memory = ops.reshape(entries, (batch, frames * count, self.units))
        mask = ops.broadcast_to(frame_mask[:, :, None], (batch, frames, count))
        return memory, ops.reshape(mask, (batch, frames * count))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"units": self.units, "change": self.change, "dropout": self.dropout}
        )
        return config
