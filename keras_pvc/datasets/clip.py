"""The unit every dataset loader returns: one captioned clip."""

import dataclasses
import os
import warnings

from keras_pvc.errors import FileError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Clip:
    """One clip with its reference captions.

    Args:
        clip_id: str. `<VideoID>_<Start>_<End>` as MSVD names its clips
            (other datasets use their own ids, e.g. MSR-VTT's `video123`).
        references: list of str. The English reference captions.
        split: str. One of `"train"`, `"val"`, `"test"`.
        video_path: str or None. The video file holding the clip.
        features_path: str or None. A cached feature file (`.npy`).
        start: float or None. Segment start in seconds within `video_path`
            (None: from the beginning).
        end: float or None. Segment end in seconds (None: to the end).
    """

    clip_id: str
    references: list
    split: str
    video_path: str = None
    features_path: str = None
    start: float = None
    end: float = None

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(
                f"Clip {self.clip_id!r}: split must be one of {SPLITS}, "
                f"got {self.split!r}."
            )


class DatasetError(FileError):
    """A dataset file cannot be used: the message names the file and why.

    Every loader in `keras_pvc.datasets` raises this (or a `VideoReadError`
    for a video; both are `keras_pvc.errors.FileError`s) for a file it cannot
    read, so a caller can catch one type.

    Args:
        path: str or path-like. The file (or folder) at fault.
        reason: str. What is wrong with it.

    Attributes:
        path: str. The file.
        reason: str. What is wrong.
    """


class DatasetWarning(UserWarning):
    """Rows or clips of a dataset were skipped; the message says which and why."""


def clip_id_problem(clip_id, folder=None):
    """Why `clip_id` cannot name a file in `folder`, or None when it can.

    The one rule every loader, `keras-pvc extract`, `keras-pvc train` and the
    feature readers apply before joining a clip id to a folder: the id must
    be a plain file name (no path separator, not `.` or `..`, no NUL, no
    control characters, not empty) and `folder/<clip_id>` must stay inside
    `folder` once symbolic links are resolved. So a `video_corpus.csv` row
    whose VideoID is `../../escape` is skipped, and no file outside the
    dataset's folders is ever opened for it.

    Args:
        clip_id: str. The id.
        folder: str, path-like or None. The folder the id is joined to; None
            checks the name only.

    Returns:
        str (the reason) or None.

    Example:

    >>> clip_id_problem("-_hbPLsZvvo_18_25") is None
    True
    >>> clip_id_problem("../../escape_0_1")
    'the clip id is not a plain file name (it holds a path separator)'
    """
    if not isinstance(clip_id, str):
        return f"the clip id is a {type(clip_id).__name__}, not a str"
    if not clip_id or not clip_id.strip():
        return "the clip id is empty"
    if "/" in clip_id or "\\" in clip_id or (os.altsep and os.altsep in clip_id):
        return "the clip id is not a plain file name (it holds a path separator)"
    if clip_id in (".", ".."):
        return f"the clip id {clip_id!r} names a folder, not a file"
    if any(ord(char) < 32 or ord(char) == 127 for char in clip_id):
        return "the clip id holds a control character"
    if len(clip_id.encode("utf-8", "surrogatepass")) > 200:
        return "the clip id is too long for a file name (over 200 bytes)"
    if folder is not None:
        folder = os.path.realpath(os.fspath(folder))
        target = os.path.realpath(os.path.join(folder, clip_id))
        if os.path.commonpath([folder, target]) != folder or target == folder:
            return f"the clip id resolves outside {folder!r} (to {target!r})"
    return None


def clip_file(folder, clip_id, suffix=""):
    """`folder/<clip_id><suffix>`, after checking the id with `clip_id_problem`.

    Raises:
        DatasetError: the id is not a plain file name or leaves `folder`;
            the message names the folder, the id and the reason.
    """
    problem = clip_id_problem(clip_id, folder) or clip_id_problem(clip_id + suffix, folder)
    if problem is not None:
        raise DatasetError(folder, f"clip {clip_id!r} skipped: {problem}")
    return os.path.join(os.fspath(folder), clip_id + suffix)


def report_skipped(source, skipped, what="clip", stacklevel=3, limit=20):
    """Warns once, naming every skipped item (up to `limit`) with its reason.

    Args:
        source: str. The file or folder the items came from.
        skipped: list of `(name, reason)`.
        what: str. What an item is ("clip", "row").
    """
    if not skipped:
        return
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:limit])
    more = f"; and {len(skipped) - limit} more" if len(skipped) > limit else ""
    plural = "" if len(skipped) == 1 else "s"
    warnings.warn(
        f"{source}: skipped {len(skipped)} {what}{plural}: {shown}{more}.",
        DatasetWarning,
        stacklevel=stacklevel,
    )
