"""The features folder's files, as `keras-pvc extract` writes them and
`keras_pvc.datasets.features` reads them back.

`<clip_id>.npy` (features), `<clip_id>.mask.npy` (frame mask) and
`extract_report.json` (clips whose video could not be read); the writer is
`keras_pvc.training.extract`, which imports this module (data is a lower tier than
the apps and training around it, so the reader never imports the writer).
"""

import json
import os

import numpy as np

REPORT_NAME = "extract_report.json"
FEATURES_SUFFIX = ".npy"
MASK_SUFFIX = ".mask.npy"


def features_path(out_dir, clip_id):
    """`<out_dir>/<clip_id>.npy`: a clip's features."""
    return os.path.join(os.fspath(out_dir), clip_id + FEATURES_SUFFIX)


def mask_path(out_dir, clip_id):
    """`<out_dir>/<clip_id>.mask.npy`: a clip's frame mask."""
    return os.path.join(os.fspath(out_dir), clip_id + MASK_SUFFIX)


def mask_path_for(features_file):
    """The mask file beside a features file: `x.npy` -> `x.mask.npy`."""
    features_file = os.fspath(features_file)
    stem = features_file[: -len(FEATURES_SUFFIX)] if features_file.endswith(
        FEATURES_SUFFIX
    ) else features_file
    return stem + MASK_SUFFIX


def read_npy_header(path):
    """Shape, dtype and data offset of a `.npy` file, reading only its header.

    Returns:
        `(shape tuple, np.dtype, header_bytes int)`.

    Raises:
        ValueError: not a `.npy` file, or an object dtype.
    """
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(file)
        offset = file.tell()
    if dtype.hasobject:
        raise ValueError(f"{path!r} holds Python objects.")
    return tuple(shape), dtype, offset


def is_complete(path, shape, dtype):
    """Whether `path` is a whole `.npy` array of `shape` and `dtype`."""
    return feature_file_problem(path, shape, dtype)[0] is None


def extract_failures(out_dir):
    """`{clip_id: reason}` of the clips `extract_report.json` lists as failed.

    Empty when the folder has no report (features from elsewhere).

    Raises:
        ValueError: the report is not JSON of the layout `extract_features`
            writes; the message names the file.
    """
    path = os.path.join(os.fspath(out_dir), REPORT_NAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            failed = json.load(file).get("failed", [])
        return {str(entry["clip_id"]): str(entry["reason"]) for entry in failed}
    except (ValueError, AttributeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not an extraction report ({error}).") from None


def feature_file_problem(path, shape=None, dtype=None, require_mask=False, failed_reason=None):
    """Why the feature file `path` is not usable, or None: the one check both
    `keras-pvc extract` (is a clip done?) and the feature readers of
    `keras-pvc train` (`keras_pvc.datasets.features.scan_features`) apply.

    Args:
        path: str. The `<clip_id>.npy` file.
        shape: tuple or None. The shape it must have (None: any `(T, D)` or
            `(T, N, C)`).
        dtype: dtype or None. The dtype it must have (None: any number).
        require_mask: bool. The `<clip_id>.mask.npy` file must exist.
        failed_reason: str or None. Why extraction failed for this clip
            (`extract_failures`), given as the reason when the file is missing.

    Returns:
        `(problem, shape, dtype)`: the reason (None when usable) and the
        file's shape and dtype from its header (None when unreadable).
    """
    if not os.path.isfile(path):
        if failed_reason is not None:
            return (
                f"no features: `keras-pvc extract` could not read its video "
                f"({failed_reason}; see {REPORT_NAME})",
                None,
                None,
            )
        return f"feature file {path!r} not found", None, None
    try:
        found_shape, found_dtype, offset = read_npy_header(path)
        size = os.path.getsize(path)
    except (OSError, ValueError) as error:
        return f"feature file {path!r}: {error}", None, None
    except Exception as error:  # EOFError, SyntaxError in the header dict...
        return (
            f"feature file {path!r}: not a .npy file ({type(error).__name__}: {error})",
            None,
            None,
        )
    expected = offset + int(np.prod(found_shape, dtype=np.int64)) * found_dtype.itemsize
    problem = None
    if size != expected:
        problem = "the file is truncated"
    elif not np.issubdtype(found_dtype, np.number) or len(found_shape) not in (2, 3):
        problem = f"expected (T, D) or (T, N, C) numbers, got {found_shape} {found_dtype}"
    elif shape is not None and found_shape != tuple(shape):
        problem = f"shape {found_shape} differs from the other clips' {tuple(shape)}"
    elif dtype is not None and found_dtype != np.dtype(dtype):
        problem = f"dtype {found_dtype} is not {np.dtype(dtype)}"
    elif require_mask and not os.path.isfile(mask_path_for(path)):
        problem = "its frame mask file is missing"
    if problem is not None:
        return f"feature file {path!r}: {problem}", found_shape, found_dtype
    return None, found_shape, found_dtype
