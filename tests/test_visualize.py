import csv
import html
import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.datasets.procedural import generate_procedural_dataset
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.models import VideoCaptionerPreprocessor
from keras_pvc.presets import build_video_captioner
from keras_pvc.presets import preset_config
from keras_pvc.apps.report import HEADER_COLOR
from keras_pvc.apps.report import write_report
from keras_pvc.video import read_frames
from keras_pvc.apps.visualize import DPI
from keras_pvc.apps.visualize import FIGURE_WIDTH
from keras_pvc.apps.visualize import explain_clip
from keras_pvc.apps.visualize import graph_region_weights
from keras_pvc.apps.visualize import plot_clip
from keras_pvc.apps.visualize import visualize_run

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
METRICS = {
    "BLEU-1": 0.6543, "BLEU-2": 0.5, "BLEU-3": 0.4, "BLEU-4": 0.4321,
    "METEOR": 0.25, "ROUGE-L": 0.5, "CIDEr": 1.2346,
}


def read_png_rgb(path):
    """A PNG as uint8 RGB, read by OpenCV (BGR) and turned around."""
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def box_centre(image, box):
    left, top, right, bottom = box
    return image[(top + bottom) // 2, (left + right) // 2]


def assert_colour(pixel, expected, tolerance=40):
    assert np.all(np.abs(pixel.astype(int) - np.array(expected)) <= tolerance), (
        pixel,
        expected,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run folder in `keras-pvc demo`'s layout with a tiny untrained model."""
    run_dir = tmp_path_factory.mktemp("run")
    data_root = run_dir / "data"
    generate_procedural_dataset(data_root, num_clips=12, num_frames=8, frame_size=64)
    clips = load_msvd(data_root)
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in clips for reference in clip.references]
    )
    config = preset_config(
        "procedural",
        vocabulary=vocabulary,
        frame_cnn={"backbone": "simple", "filters": (4, 6, 8)},
        graph={"units": 8, "adjacency": "both", "pooling": "attention", "attention_dim": 4},
        hidden_dim=8,
        embedding_dim=6,
        caption_length=6,
    )
    model = build_video_captioner(config)
    model.save_to_preset(str(run_dir / "model"))
    summary = {
        "preset": "procedural",
        "epochs": 3,
        "parameters": int(model.count_params()),
        "metrics": {"all": dict(METRICS, info={"num_clips": 2})},
    }
    with open(run_dir / "metrics.json", "w") as handle:
        json.dump(summary, handle)
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "val_loss", "reward", "baseline"])
        for epoch in range(3):
            writer.writerow([epoch, 3 - epoch, 3.2 - epoch, 0.1 * epoch, 0.05 * epoch])
    return run_dir, model


# === Drawing ===


def test_plot_clip_keeps_rgb_and_size(tmp_path):
    frames = np.zeros((4, 32, 32, 3), "uint8")
    frames[0], frames[1], frames[2] = RED, GREEN, BLUE
    frame_mask = np.array([True, True, True, False])
    attention = np.array(
        [[0.1, 0.2, 0.7, 0.0], [0.2, 0.2, 0.6, 0.0], [0.3, 0.3, 0.4, 0.0]], "float32"
    )
    region_weights = np.full((4, 16), 1 / 16, "float32")
    path = str(tmp_path / "clip.png")
    layout = plot_clip(
        frames,
        frame_mask,
        "a red square",
        ["a red square is here", "a square"],
        attention=attention,
        words=["a", "red", "square"],
        region_weights=region_weights,
        grid_shape=(4, 4),
        path=path,
        title="clip_0_1",
    )
    image = read_png_rgb(path)
    assert image.shape == (layout["height"], layout["width"], 3)
    assert layout["width"] == int(FIGURE_WIDTH * DPI)
    # Only real frames in the strip; regions over the most attended one.
    assert sorted(layout["frame_boxes"]) == [0, 1, 2]
    assert layout["region_frame"] == 2
    boxes = layout["frame_boxes"]
    assert_colour(box_centre(image, boxes[0]), RED)
    assert_colour(box_centre(image, boxes[1]), GREEN)
    assert_colour(box_centre(image, boxes[2]), BLUE)
    # The frame fills its box: a red patch, not a red pixel.
    left, top, right, bottom = boxes[0]
    patch = image[top + 5 : bottom - 5, left + 5 : right - 5].astype(int)
    assert np.mean((patch[..., 0] > 200) & (patch[..., 1] < 60) & (patch[..., 2] < 60)) > 0.9


def test_plot_clip_without_attention(tmp_path):
    frames = np.full((3, 16, 16, 3), 128, "uint8")
    layout = plot_clip(frames, None, "", [], path=str(tmp_path / "plain.png"))
    assert os.path.exists(layout["path"])
    assert layout["region_frame"] is None
    with pytest.raises(ValueError, match="attention"):
        plot_clip(frames, None, "x", [], attention=np.ones((2, 5)), path=str(tmp_path / "bad.png"))


# === Computing ===


def test_graph_region_weights_are_the_layers_pooling_weights():
    regions = np.random.default_rng(0).normal(size=(2, 3, 16, 5)).astype("float32")
    layer = SpatialGraphConv(6, adjacency="both", num_layers=2, attention_dim=4)
    layer(regions)
    seen = []
    original = layer.region_weights

    def recording(nodes):
        weights = original(nodes)
        seen.append(keras.ops.convert_to_numpy(weights))
        return weights

    layer.region_weights = recording
    layer(regions)
    weights = graph_region_weights(layer, regions)
    assert weights.shape == (2, 3, 16)
    np.testing.assert_allclose(weights, seen[0], atol=1e-6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="attention or keypoint pooling"):
        graph_region_weights(SpatialGraphConv(6, pooling="mean"), regions)


def test_graph_region_weights_of_keypoint_pooling_are_the_heads_mean():
    regions = np.random.default_rng(1).normal(size=(2, 3, 16, 5)).astype("float32")
    layer = SpatialGraphConv(6, pooling="keypoints", pooling_heads=3)
    weights = graph_region_weights(layer, regions)
    heads = layer.head_weights(layer.propagate(regions))  # (2, 3, 16, 3)
    np.testing.assert_allclose(
        weights, keras.ops.convert_to_numpy(heads).mean(-1), atol=1e-6
    )
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


def test_explain_clip(tiny_run):
    run_dir, model = tiny_run
    clip = next(c for c in load_msvd(run_dir / "data") if c.split == "test")
    frames, frame_mask = read_frames(clip.video_path, 8, size=(64, 64))
    frame_mask[-2:] = False  # pretend the clip is short
    explained = explain_clip(model, frames, frame_mask)
    inputs = {"frames": frames[None].astype("float32"), "frame_mask": frame_mask[None]}
    assert explained["caption"] == model.generate(inputs)[0]
    attention = explained["attention"]
    assert attention.shape == (len(explained["words"]), 8)
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(attention[:, -2:], 0.0, atol=1e-6)
    region_weights = explained["region_weights"]
    assert region_weights.shape == (8, 64)
    assert explained["grid_shape"] == (8, 8)
    np.testing.assert_allclose(region_weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(region_weights >= 0)


# === Run folder and report ===


def test_visualize_run_and_report(tiny_run):
    run_dir, _ = tiny_run
    index = visualize_run(run_dir, num_clips=2)
    test_ids = [c.clip_id for c in load_msvd(run_dir / "data") if c.split == "test"]
    assert [entry["clip_id"] for entry in index] == test_ids[:2]
    for entry in index:
        image = read_png_rgb(str(run_dir / "visuals" / entry["image"]))
        assert image.shape[1] == int(FIGURE_WIDTH * DPI)
    with open(run_dir / "visuals" / "index.json") as handle:
        assert json.load(handle) == index

    path = write_report(run_dir, num_clips=2)
    assert path == os.path.join(str(run_dir), "report.html")
    with open(path, encoding="utf-8") as handle:
        page = handle.read()
    for value in ("65.4", "43.2", "123.5"):  # x100
        assert value in page
    for entry in index:
        assert html.escape(entry["clip_id"]) in page
        assert html.escape(entry["caption"] or "(empty)") in page
        assert html.escape(entry["references"][0]) in page
    assert 'alt="reward"' in page and 'alt="loss"' in page
    # Self-contained: no links out, no scripts, no external style sheets.
    assert "://" not in page
    assert "<script" not in page and "<link" not in page
    assert page.count("data:image/png;base64,") == 2 + 2  # loss, reward, clips


def test_report_without_model_or_history(tmp_path):
    with open(tmp_path / "metrics.json", "w") as handle:
        json.dump({"metrics": {"all": METRICS}}, handle)
    with open(write_report(tmp_path), encoding="utf-8") as handle:
        page = handle.read()
    assert "43.2" in page and "No clips" in page and "No loss curves" in page


def _screenshot(report, tmp_path):
    """Headless Chromium's screenshot of `report`, as RGB."""
    screenshot = tmp_path / "screenshot.png"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}", "--window-size=1200,1600",
            "file://" + os.path.abspath(report),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return read_png_rgb(str(screenshot))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    report = write_report(run_dir, out_path=str(tmp_path / "report.html"), num_clips=2)
    image = _screenshot(report, tmp_path)
    assert image.std() > 20, "blank screenshot"
    # The header bar, in the page's accent colour, spans the top.
    header = np.array([int(HEADER_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    top = image[5:40, 50:500].reshape(-1, 3).astype(int)
    assert np.mean(np.all(np.abs(top - header) <= 6, axis=-1)) > 0.5


def _copy_run(tiny_run, destination, keep_data=True):
    run_dir, _ = tiny_run
    shutil.copytree(run_dir, destination, ignore=shutil.ignore_patterns("visuals", "report.html"))
    if not keep_data:
        shutil.rmtree(destination / "data")
    clips = [c for c in load_msvd(run_dir / "data") if c.split == "test"][:2]
    with open(destination / "predictions.json", "w") as handle:
        json.dump({c.clip_id: f"caption of {c.clip_id}" for c in clips}, handle)
    with open(destination / "samples.txt", "w") as handle:
        for c in clips:
            handle.write(f"{c.clip_id}\n  generated: x\n  reference: {c.references[0]}\n")
    return clips


def test_report_of_a_train_run_without_data(tiny_run, tmp_path):
    clips = _copy_run(tiny_run, tmp_path / "run", keep_data=False)
    with open(write_report(tmp_path / "run", num_clips=2), encoding="utf-8") as handle:
        page = handle.read()
    assert "Captions only: the run folder has no data/" in page
    for clip in clips:
        assert html.escape(f"caption of {clip.clip_id}") in page
        assert html.escape(clip.references[0]) in page


def _features_run(tmp_path):
    """A train run of a features preset: model/, predictions, nltk METEOR."""
    config = preset_config(
        "s2vt", vocabulary=VideoCaptionerPreprocessor.build_vocabulary(["a b c"]),
        input_shape=(6,), hidden_dim=4, embedding_dim=4, caption_length=5, num_frames=3,
    )
    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)
    build_video_captioner(config).save_to_preset(str(run_dir / "model"))
    with open(run_dir / "predictions.json", "w") as handle:
        json.dump({"clip_0_1": "a b c"}, handle)
    with open(run_dir / "metrics.json", "w") as handle:
        json.dump({"metrics": {"all": dict(METRICS, meteor_backend="nltk-wordnet")}}, handle)
    return write_report(run_dir)


def test_report_of_a_features_run(tmp_path):
    with open(_features_run(tmp_path), encoding="utf-8") as handle:
        page = handle.read()
    assert "Captions only: the model reads cached features" in page
    assert "a b c" in page and "clip_0_1" in page
    # nltk's METEOR is not METEOR 1.5: the table says which it is.
    assert "<th>METEOR (nltk)</th>" in page and "<th>METEOR</th>" not in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_features_run_report_renders_in_headless_chromium(tmp_path):
    image = _screenshot(_features_run(tmp_path), tmp_path)
    assert image.std() > 20, "blank screenshot"
    header = np.array([int(HEADER_COLOR[i : i + 2], 16) for i in (1, 3, 5)])
    top = image[5:40, 50:500].reshape(-1, 3).astype(int)
    assert np.mean(np.all(np.abs(top - header) <= 6, axis=-1)) > 0.5
