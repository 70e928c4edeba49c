"""Precise BatchNorm re-estimation and the train/inference check."""

import json
import os

import keras
import numpy as np
import pytest

from keras_pvc.training import batch_norm
from keras_pvc.layers import FrameCNN


def _layer_inputs_by_hand(network, images):
    """Inputs of every BatchNorm layer, calling the layers one by one in
    inference mode (independent of the functional sub-models the library
    builds)."""
    inputs, x = [], keras.ops.convert_to_tensor(images, "float32")
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs.append(keras.ops.convert_to_numpy(x).astype(np.float64))
        x = layer(x, training=False)
    return inputs


def _short_run(steps_per_epoch=10, epochs=25):
    """A frame CNN trained for 250 optimizer steps (momentum 0.99)."""
    keras.utils.set_random_seed(0)  # weights and shuffling: the same run every time
    rng = np.random.default_rng(0)
    clips = steps_per_epoch * 4
    # Low-contrast frames: the first BatchNorm's inputs have a variance far
    # below the running variance's initial 1, as real frames do.
    frames = rng.uniform(90, 150, size=(clips, 2, 16, 16, 3)).astype("float32")
    targets = (frames[:, :, :8].mean(axis=(1, 2, 3, 4)) > frames.mean()).astype("int32")
    cnn = FrameCNN("simple", filters=(4, 8), normalization="batch", name="frame_cnn")
    inputs = keras.Input((2, 16, 16, 3))
    pooled = keras.ops.mean(cnn(inputs), axis=(1, 2))
    model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(frames, targets, batch_size=4, epochs=epochs, verbose=0, shuffle=True)
    return cnn, frames, model, targets


def _relative_errors(cnn, frames):
    network = cnn.backbone_model
    layers = [l for l in network.layers if isinstance(l, keras.layers.BatchNormalization)]
    images = frames.reshape((-1,) + frames.shape[2:])
    errors = []
    for layer, x in zip(layers, _layer_inputs_by_hand(network, images)):
        mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        moving_variance = keras.ops.convert_to_numpy(layer.moving_variance)
        moving_mean = keras.ops.convert_to_numpy(layer.moving_mean)
        errors.append(
            (
                float(np.max(np.abs(moving_variance / variance - 1))),
                float(np.max(np.abs(moving_mean - mean) / np.sqrt(variance))),
            )
        )
    return errors


@pytest.mark.slow
def test_recalibration_makes_statistics_of_a_short_run_exact_and_the_check_sees_it():
    cnn, frames, model, targets = _short_run()
    batches = [(frames[i : i + 8], targets[i : i + 8], None) for i in range(0, len(frames), 8)]
    before = _relative_errors(cnn, frames)
    # 250 steps at momentum 0.99 leave the running variance far off...
    assert before[0][0] > 0.5, before
    # ...and inference mode far worse than training mode on training data
    # (seed 0: gap 0.375 on one 2-core machine, 0.175 on another with the
    # same packages; the warning's threshold is 0.05).
    gap = batch_norm.train_inference_gap(model, batches, num_batches=len(batches))
    assert gap["training"] > 0.75 and gap["gap"] > 2 * batch_norm.GAP_WARNING_THRESHOLD, gap
    with pytest.warns(UserWarning, match="inference mode"):
        assert batch_norm.warn_if_inference_differs(gap)
    # The check itself left the statistics as they were.
    assert _relative_errors(cnn, frames) == before

    report = batch_norm.recalibrate_batch_norm(cnn, frames, batch_size=7)
    assert len(report) == 4  # two blocks of two normalised convs
    assert next(iter(report.values()))["variance_ratio"] > 1.5
    after = _relative_errors(cnn, frames)
    for variance_error, mean_error in after:
        assert variance_error < 1e-3 and mean_error < 1e-3, after
    gap = batch_norm.train_inference_gap(model, batches, num_batches=len(batches))
    assert abs(gap["gap"]) <= batch_norm.GAP_WARNING_THRESHOLD, gap
    assert not batch_norm.warn_if_inference_differs(gap)


def test_recalibration_leaves_masked_frames_out_and_caps_batches():
    cnn = FrameCNN("simple", filters=(4,), normalization="batch")
    rng = np.random.default_rng(1)
    frames = rng.uniform(0, 255, size=(3, 2, 8, 8, 3)).astype("float32")
    mask = np.array([[True, True], [True, False], [True, False]])
    frames[~mask] = 255.0  # padding that must not count
    cnn(frames)
    batch_norm.recalibrate_batch_norm(cnn, {"frames": frames, "frame_mask": mask})
    first = cnn.backbone_model.get_layer("block0_conv_bn")
    x = _layer_inputs_by_hand(cnn.backbone_model, frames[mask])[0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first.moving_mean), x.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
    )
    # num_batches=1 with batch_size=2: the first two valid frames alone.
    batch_norm.recalibrate_batch_norm(
        cnn, {"frames": frames, "frame_mask": mask}, batch_size=2, num_batches=1
    )
    x = _layer_inputs_by_hand(cnn.backbone_model, frames[mask][:2])[0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first.moving_variance), x.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-7
    )


def test_frozen_and_absent_batch_norm_is_left_alone():
    cnn = FrameCNN("simple", filters=(4,), normalization="group")
    cnn(np.zeros((1, 1, 8, 8, 3), "float32"))
    assert batch_norm.recalibrate_batch_norm(cnn, np.zeros((1, 1, 8, 8, 3))) == {}
    frozen = FrameCNN("simple", filters=(4,), normalization="batch", trainable_backbone=False)
    frozen(np.zeros((1, 1, 8, 8, 3), "float32"))
    assert batch_norm.recalibrate_batch_norm(frozen, np.ones((1, 1, 8, 8, 3))) == {}


@pytest.fixture(scope="module")
def procedural_root(tmp_path_factory):
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    root = str(tmp_path_factory.mktemp("procedural"))
    generate_procedural_dataset(root, num_clips=24, num_frames=4, seed=3)
    return root


TINY = {
    "hidden_dim": 16,
    "embedding_dim": 8,
    "graph": None,
    "frame_cnn": {"backbone": "simple", "filters": (4, 8), "normalization": "batch"},
    "num_frames": 3,
    "batch_size": 4,
    "checkpoint_every": 100,
}


@pytest.mark.slow
def test_train_run_recalibrates_and_records_both_accuracies(procedural_root, tmp_path):
    import keras_pvc
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.datasets.pipeline import read_clip_videos
    from keras_pvc.training.runs import train_run

    clips = load_msvd(procedural_root)
    out = str(tmp_path / "run")
    summary = train_run(clips, out, overrides=TINY, epochs=3, verbose=0)
    with open(os.path.join(out, "metrics.json")) as handle:
        recorded = json.load(handle)["batch_norm"]
    assert recorded == json.loads(json.dumps(summary["batch_norm"]))
    assert len(recorded["recalibrated"]) == 4
    for key in ("token_accuracy_before", "token_accuracy"):
        assert set(recorded[key]) == {"training", "inference", "gap"}
        assert 0.0 <= recorded[key]["inference"] <= 1.0
    assert recorded["warned"] == (recorded["token_accuracy"]["gap"] > recorded["gap_threshold"])

    # The saved model holds the training frames' exact statistics.
    model = keras_pvc.from_preset(os.path.join(out, "model"))
    train = [clip for clip in clips if clip.split == "train"]
    arrays = read_clip_videos(train, TINY["num_frames"], (64, 64), verbose=False)
    errors = _relative_errors(model.backbone.frame_cnn, arrays.videos.astype("float32"))
    for variance_error, mean_error in errors:
        assert variance_error < 1e-3 and mean_error < 1e-3, errors

    measured_only = batch_norm.recalibrate_after_training(model, arrays, 4, recalibrate=False)
    assert measured_only["recalibrated"] == {}
    assert measured_only["token_accuracy"] == measured_only["token_accuracy_before"]
    assert _relative_errors(model.backbone.frame_cnn, arrays.videos.astype("float32")) == errors
