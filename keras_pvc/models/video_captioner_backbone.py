import keras
import keras_hub
from keras import ops

# Registers the components, so their configs deserialize.
import keras_pvc.layers  # noqa: F401


def _as_layer(layer_or_config):
    if layer_or_config is None or isinstance(layer_or_config, keras.layers.Layer):
        return layer_or_config
    return keras.layers.deserialize(layer_or_config)


@keras.saving.register_keras_serializable(package="keras_pvc")
class VideoCaptionerBackbone(keras_hub.models.Backbone):
    """A video captioner's network: frames -> regions -> graph -> time -> words.

    A functional model composed of four swappable components, each a Keras
    layer passed as an instance or a config (any registered layer with the
    same call signature plugs in):

    - `frame_cnn` (e.g. `FrameCNN`): frames `(B, T, H, W, 3)` -> regions
      `(B, T, N, C)` or pooled `(B, T, D)`. Used only when `input_kind` is
      `"frames"`; with cached features it is kept as the recipe that turns
      videos into those features (`build_feature_extractor`).
    - `spatial_graph` (e.g. `SpatialGraphConv`) or None: regions
      `(B, T, N, C)` -> `(B, T, D)`. Without it, regions are mean-pooled.
    - `temporal_encoder` (e.g. `TemporalLSTMEncoder`): `(features,
      frame_mask)` -> `(sequence, hidden, cell)`.
    - `caption_decoder` (e.g. `CaptionDecoder`): teacher-forced logits, plus
      `initial_cache`/`step` for sampling.
    - `region_memory` (e.g. `RegionMemory`) or None: `(regions, frame_mask)`
      -> `(memory (B, M, H_enc), memory_mask (B, M))`, entries the decoder
      attends to beside the encoder's frame states (the regions the graph
      reads, kept apart, so that a word can read one object).

    Args:
        temporal_encoder: layer or config.
        caption_decoder: layer or config.
        frame_cnn: layer, config or None.
        spatial_graph: layer, config or None.
        region_memory: layer, config or None.
        input_kind: str. `"features"` (cached features) or `"frames"`.
        input_shape: tuple. Shape of one frame's input after the time axis:
            `(D,)` pooled features, `(N, C)` region features, or
            `(H, W, 3)` frames.
        **kwargs: Standard model arguments.

    Inputs (a dict): `features` or `frames`, `frame_mask` `(B, T)` (1 for
    real frames), `token_ids` `(B, L)` int, `padding_mask` `(B, L)` (1 for
    real tokens); masks are int32 (bool arrays are accepted and cast).
    Output: next-word logits `(B, L, vocabulary_size)`.

    Example:
    ```python
    backbone = VideoCaptionerBackbone(
        temporal_encoder=TemporalLSTMEncoder(16),
        caption_decoder=CaptionDecoder(10, embedding_dim=8, hidden_dim=16),
        input_kind="features", input_shape=(32,))
    ```
    """

    def __init__(
        self,
        temporal_encoder,
        caption_decoder,
        frame_cnn=None,
        spatial_graph=None,
        region_memory=None,
        input_kind="features",
        input_shape=(4096,),
        dtype=None,
        **kwargs,
    ):
        if input_kind not in ("features", "frames"):
            raise ValueError(
                f"`input_kind` must be 'features' or 'frames', got {input_kind!r}."
            )
        if input_kind == "frames" and frame_cnn is None:
            raise ValueError("`input_kind='frames'` needs a `frame_cnn`.")
        input_shape = tuple(input_shape)
        if input_kind == "frames" and len(input_shape) != 3:
            raise ValueError(
                f"Frames need `input_shape=(H, W, 3)`, got {input_shape}."
            )
        # === Layers ===
        frame_cnn = _as_layer(frame_cnn)
        if input_kind == "frames":
            self.frame_cnn = frame_cnn
        self.spatial_graph = _as_layer(spatial_graph)
        self.temporal_encoder = _as_layer(temporal_encoder)
        self.caption_decoder = _as_layer(caption_decoder)
        self.region_memory = _as_layer(region_memory)

        # === Functional Model ===
        video_input = keras.Input(
            shape=(None,) + input_shape, name=input_kind
        )
        # Masks are int32 inputs, as in keras-hub (bool tensors do not survive
        # every tf.distribute path), and cast to bool where they are used.
        frame_mask_input = keras.Input(
            shape=(None,), dtype="int32", name="frame_mask"
        )
        token_ids_input = keras.Input(
            shape=(None,), dtype="int32", name="token_ids"
        )
        padding_mask_input = keras.Input(
            shape=(None,), dtype="int32", name="padding_mask"
        )
        sequence, memory_mask, hidden, cell = self._encode(
            video_input, frame_mask_input, input_kind
        )
        logits = self.caption_decoder(
            token_ids_input,
            sequence,
            memory_mask,
            initial_state=(hidden, cell),
        )
        super().__init__(
            inputs={
                input_kind: video_input,
                "frame_mask": frame_mask_input,
                "token_ids": token_ids_input,
                "padding_mask": padding_mask_input,
            },
            outputs=logits,
            dtype=dtype,
            **kwargs,
        )

        # === Config ===
        if input_kind == "features":
            # Recorded for `build_feature_extractor`, not part of the graph:
            # tracked only now, so that the functional build does not take
            # the unbuilt frame CNN for unbuilt state of its own (a Keras
            # warning on every features model).
            self.frame_cnn = frame_cnn
        self.input_kind = input_kind
        self.video_input_shape = input_shape

    def _regions(self, video, input_kind, training=None):
        if input_kind == "frames":
            return self.frame_cnn(video, training=training)
        return video

    def _frame_features(self, regions, training=None):
        features = regions
        if self.spatial_graph is not None:
            if len(features.shape) != 4:
                raise ValueError(
                    "A spatial graph needs region features (B, T, N, C); got "
                    f"shape {features.shape}. Use region features or drop "
                    "the graph (`spatial_graph=None`)."
                )
            features = self.spatial_graph(features, training=training)
        elif len(features.shape) == 4:
            features = ops.mean(features, axis=2)
        return features

    def _encode(self, video, frame_mask, input_kind, training=None):
        """`(memory, memory_mask, hidden, cell)`: what the decoder attends to
        (the frame states, then any region memory) and its initial state."""
        regions = self._regions(video, input_kind, training)
        features = self._frame_features(regions, training)
        sequence, hidden, cell = self.temporal_encoder(
            features, frame_mask, training=training
        )
        if self.region_memory is None:
            return sequence, frame_mask, hidden, cell
        if len(regions.shape) != 4:
            raise ValueError(
                "A region memory needs region features (B, T, N, C); got "
                f"shape {regions.shape}. Use region features or drop it "
                "(`region_memory=None`)."
            )
        memory, memory_mask = self.region_memory(
            regions, frame_mask, training=training
        )
        memory = ops.concatenate([sequence, ops.cast(memory, sequence.dtype)], 1)
        memory_mask = ops.concatenate(
            [ops.cast(frame_mask, "int32"), ops.cast(memory_mask, "int32")], 1
        )
        return memory, memory_mask, hidden, cell

    @property
    def vocabulary_size(self):
        return self.caption_decoder.vocabulary_size

    def encode(self, inputs, training=False):
        """Runs the video side: inputs dict -> `(memory, memory_mask, hidden,
        cell)`.

        `memory (B, M, H_enc)` is what the decoder attends to: the temporal
        encoder's states of the `T` frames, then, with a `region_memory`,
        its entries (`M = T` without one); `memory_mask (B, M)` marks the
        real entries. `hidden` and `cell` start the decoder.
        """
        video = inputs[self.input_kind]
        frame_mask = inputs.get("frame_mask")
        if frame_mask is None:
            frame_mask = ops.ones(ops.shape(video)[:2], "bool")
        return self._encode(video, frame_mask, self.input_kind, training)

    def build_feature_extractor(self):
        """A `FrameCNN` that turns videos into this model's `features`.

        For a model trained on cached features this is the frame CNN the
        features were made with; for a frames model it is its own.
        """
        if self.frame_cnn is None:
            raise ValueError(
                "This model has no frame CNN recorded, so it cannot caption "
                "video files; it takes precomputed `features` only."
            )
        return self.frame_cnn

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temporal_encoder": keras.layers.serialize(self.temporal_encoder),
                "caption_decoder": keras.layers.serialize(self.caption_decoder),
                "frame_cnn": keras.layers.serialize(self.frame_cnn)
                if self.frame_cnn is not None
                else None,
                "spatial_graph": keras.layers.serialize(self.spatial_graph)
                if self.spatial_graph is not None
                else None,
                "region_memory": keras.layers.serialize(self.region_memory)
                if self.region_memory is not None
                else None,
                "input_kind": self.input_kind,
                "input_shape": list(self.video_input_shape),
            }
        )
        return config
