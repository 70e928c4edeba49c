"""Helpers of the held-out renderers' tests (`test_heldout*.py`)."""

import json
import os

import cv2
import numpy as np


def read_metadata(root):
    """A held-out folder's `metadata.json`."""
    with open(os.path.join(root, "metadata.json")) as handle:
        return json.load(handle)


def read_all_frames(path):
    """Every frame of a video, RGB `(T, H, W, 3)` uint8, decoded by OpenCV
    (independent of the package's frame sampling)."""
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
