"""The unit every dataset loader returns: one captioned clip."""

import dataclasses

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
