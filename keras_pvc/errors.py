"""The package's base error for a file that cannot be used.

Imports nothing from keras_pvc, so any module may import it.
"""


class FileError(ValueError):
    """A file (or folder) cannot be used; the message names it and why.

    The base of `keras_pvc.presets.PresetError`,
    `keras_pvc.datasets.clip.DatasetError` and `keras_pvc.video.VideoReadError`,
    so a caller can catch one type for every bad input file. It is a
    `ValueError`.

    Args:
        path: str or path-like. The file (or folder) at fault.
        reason: str. What is wrong with it, the root cause first.

    Attributes:
        path: str. The file.
        reason: str. What is wrong.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(self._message())

    def _message(self):
        # A subclass words the message its own way by overriding this.
        return f"{self.path}: {self.reason}"

    def __reduce__(self):
        # Picklable with its arguments (multiprocessing workers raise it
        # across processes; the default would pass only the message).
        return (type(self), (self.path, self.reason))
