"""BatchNorm statistics that match the data at the end of any run.

A `BatchNormalization` layer normalises with the batch's statistics while it
trains and with running averages (`moving_mean`, `moving_variance`, updated
with momentum 0.99 per step) at inference. Over a short run those averages
are wrong: they start at 0 and 1 and lag behind layers whose inputs change
as the network learns. A from-scratch frame CNN trained for ~400 steps ended
with a first-layer running variance 3.5-5x the true one, and its inference-
mode captions collapsed (issue 15).

`recalibrate_batch_norm` fixes that after training ("precise BatchNorm",
Wu & Johnson, *Rethinking "Batch" in BatchNorm*, 2021): it sets every
trainable BatchNorm layer of a model's frame CNN to the exact mean and
variance of the inputs that layer sees at inference on the training clips.
Layers are set in order, each from inputs computed with the layers before
it already set, so the statistics are those of the recalibrated network.

`train_inference_gap` is the check that catches the fault: teacher-forced
next-word accuracy on training clips with `training=True` and with
`training=False`. A network whose inference mode is sound scores about the
same in both (dropout costs training mode a little); mis-estimated running
statistics make inference mode much worse.
"""

import warnings

import keras
import numpy as np

from keras_pvc.layers.frame_cnn import FrameCNN

# `train_run` warns when teacher-forced token accuracy on training clips is
# this much lower (absolute) in inference mode than in training mode. Dropout
# makes training mode the *worse* one on a sound model; issue 15's
# mis-estimated model showed 0.88 vs 0.71 (a gap of 0.17).
GAP_WARNING_THRESHOLD = 0.05


def frame_cnns(model):
    """The `FrameCNN` layers of a `VideoCaptioner`, its backbone, or itself."""
    if isinstance(model, FrameCNN):
        return [model]
    found = []
    for name in ("frame_cnn", "backbone"):
        child = getattr(model, name, None)
        if child is not None and child is not model:
            found.extend(frame_cnns(child))
    return found


def _batch_norm_layers(network):
    layers = []
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.trainable:  # frozen ones run in inference mode anyway
                layers.append(layer)
        elif isinstance(layer, keras.Model):
            layers.extend(_batch_norm_layers(layer))
    return layers


def _frame_batches(data, batch_size, num_batches):
    """Batches of images `(n, H, W, 3)` (valid frames only) from `data`."""
    if isinstance(data, dict):
        frames, mask = np.asarray(data["frames"]), data.get("frame_mask")
        mask = np.ones(frames.shape[:2], bool) if mask is None else np.asarray(mask, bool)
        images = frames[mask]
        starts = range(0, len(images), batch_size)
        for count, start in enumerate(starts):
            if num_batches is not None and count >= num_batches:
                return
            yield images[start : start + batch_size]
        return
    if isinstance(data, np.ndarray):
        yield from _frame_batches({"frames": data}, batch_size, num_batches)
        return
    for count, batch in enumerate(data):  # e.g. a tf.data.Dataset of (x, y, w)
        if num_batches is not None and count >= num_batches:
            return
        x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
        x = {key: _numpy(value) for key, value in x.items()}
        yield from _frame_batches(x, 1 << 30, None)


def _numpy(value):
    # tf.data yields TensorFlow tensors whatever the Keras backend.
    return value.numpy() if hasattr(value, "numpy") else keras.ops.convert_to_numpy(value)


class _Moments:
    """Per-channel mean and variance over batches (Chan et al.'s merge)."""

    def __init__(self):
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, values):
        values = values.reshape(-1, values.shape[-1]).astype(np.float64)
        count, mean = len(values), values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * count / total
        self.m2 = self.m2 + m2 + delta**2 * self.count * count / total
        self.count = total

    @property
    def variance(self):
        return self.m2 / self.count


def recalibrate_batch_norm(model, data, batch_size=32, num_batches=None):
    """Sets BatchNorm running statistics to the data's exact ones.

    Every trainable `BatchNormalization` layer of the model's frame CNN(s)
    gets `moving_mean` / `moving_variance` equal to the mean and (biased)
    variance of its inputs over `data`, computed in inference mode with the
    layers before it already recalibrated — what it sees when the model
    captions. Other weights are untouched. Runs eagerly; costs one forward
    pass of the CNN up to each BatchNorm layer.

    Args:
        model: a `VideoCaptioner`, `VideoCaptionerBackbone` or `FrameCNN`.
        data: the training frames: a uint8/float array `(clips, T, H, W, 3)`,
            a dict with `"frames"` and optionally `"frame_mask"` (masked
            frames are left out), or an iterable of `(x, y, sample_weight)`
            batches whose `x` is such a dict (a `tf.data.Dataset`).
        batch_size: int. Images per forward pass (array or dict `data`).
        num_batches: int or None. Use at most this many batches (None: all).

    Returns:
        dict `{layer path: {"variance_ratio": old / new moving variance
        (median over channels), "mean_shift": max |old - new| moving mean}}`;
        empty when the model has no such layer (e.g. a feature preset).

    Example:
    ```python
    model.fit(train_ds, epochs=60)
    recalibrate_batch_norm(model, {"frames": train_frames, "frame_mask": masks})
    ```
    """
    targets = []
    for cnn in frame_cnns(model):
        network = cnn.backbone_model
        if isinstance(network, keras.Model):
            targets.extend((network, layer) for layer in _batch_norm_layers(network))
    report = {}
    for network, layer in targets:
        inputs = network.inputs[0] if len(network.inputs) == 1 else network.inputs
        prefix = keras.Model(inputs, layer.input)
        moments = _Moments()
        for images in _frame_batches(data, batch_size, num_batches):
            values = prefix(keras.ops.convert_to_tensor(images, "float32"), training=False)
            values = np.moveaxis(keras.ops.convert_to_numpy(values), layer.axis, -1)
            moments.add(values)
        if moments.count == 0:
            raise ValueError("recalibrate_batch_norm got no frames.")
        old_mean = keras.ops.convert_to_numpy(layer.moving_mean)
        old_variance = keras.ops.convert_to_numpy(layer.moving_variance)
        layer.moving_mean.assign(moments.mean.astype(old_mean.dtype))
        layer.moving_variance.assign(moments.variance.astype(old_variance.dtype))
        report[layer.path] = {
            "variance_ratio": float(np.median(old_variance / np.maximum(moments.variance, 1e-12))),
            "mean_shift": float(np.max(np.abs(old_mean - moments.mean))),
        }
    return report


def token_accuracy(model, batches, training):
    """Accuracy of `argmax(model(x))` against `y`, weighted by the sample
    weights, over `(x, y, sample_weight)` batches: for a `VideoCaptioner`
    on preprocessed batches, teacher-forced next-word accuracy with padding
    left out."""
    right = total = 0.0
    for batch in batches:
        x, y, weight = keras.utils.unpack_x_y_sample_weight(batch)
        x = {k: _numpy(v) for k, v in x.items()} if isinstance(x, dict) else _numpy(x)
        logits = model(x, training=training)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        y = _numpy(y)
        weight = np.ones(y.shape) if weight is None else _numpy(weight)
        right += float(((predicted == y) * weight).sum())
        total += float(weight.sum())
    return right / max(total, 1.0)


def train_inference_gap(model, dataset, num_batches=4):
    """Token accuracy on training batches in training and inference mode.

    Side-effect free: BatchNorm running statistics that a training-mode call
    updates are put back afterwards.

    Args:
        model: `VideoCaptioner` (or any model whose outputs' argmax is
            compared with `y`).
        dataset: iterable of `(x, y, sample_weight)` batches of training
            clips (for a captioner: `caption_dataset(train, ...,
            shuffle=False)` mapped through its preprocessor).
        num_batches: int. Batches to use.

    Returns:
        dict: `training` and `inference` accuracies and `gap` (training minus
        inference).
    """
    batches = []
    for batch in dataset:
        batches.append(batch)
        if len(batches) >= num_batches:
            break
    saved = [(v, keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
    try:
        in_training = token_accuracy(model, batches, training=True)
    finally:
        for variable, value in saved:
            variable.assign(value)
    in_inference = token_accuracy(model, batches, training=False)
    return {
        "training": round(in_training, 4),
        "inference": round(in_inference, 4),
        "gap": round(in_training - in_inference, 4),
    }


def warn_if_inference_differs(gap, threshold=GAP_WARNING_THRESHOLD):
    """Warns (and returns True) when inference mode is worse than training
    mode by more than `threshold` (a `train_inference_gap` result)."""
    if gap["gap"] <= threshold:
        return False
    warnings.warn(
        "In inference mode the model predicts the next word of its own "
        f"training captions right {gap['inference']:.0%} of the time, in "
        f"training mode {gap['training']:.0%}: its normalisation statistics "
        "(or another train/inference difference) do not match the data. "
        "Captions will be worse than training suggests; "
        "`keras_pvc.training.batch_norm.recalibrate_batch_norm` re-estimates "
        "BatchNorm statistics.",
        stacklevel=2,
    )
    return True


def recalibrate_after_training(model, train_arrays, batch_size, recalibrate=True, say=None):
    """What `train_run` does after cross-entropy on a frames model.

    Measures `train_inference_gap` on the first batches of the training
    clips (each clip's first reference), recalibrates BatchNorm on all
    training frames (`recalibrate`), measures the gap again and warns if it
    is still above `GAP_WARNING_THRESHOLD`.

    Args:
        model: `VideoCaptioner` taking frames.
        train_arrays: `ClipArrays` of the training clips.
        batch_size: int.
        recalibrate: bool. False only measures (and warns).
        say: callable or None. Prints progress lines.

    Returns:
        dict for `metrics.json`: `token_accuracy_before` and
        `token_accuracy` (each `{training, inference, gap}`: before and after
        recalibration), `recalibrated` (`recalibrate_batch_norm`'s report),
        `warned` (bool).
    """
    from keras_pvc.datasets.pipeline import caption_dataset

    say = say or (lambda message: None)
    check = caption_dataset(
        train_arrays, model.preprocessor, "frames", batch_size, shuffle=False, captions="first"
    ).map(model.preprocessor)
    before = train_inference_gap(model, check)
    report = {}
    if recalibrate:
        report = recalibrate_batch_norm(
            model, train_arrays.model_inputs("frames"), batch_size=batch_size
        )
    after = train_inference_gap(model, check) if report else before
    if report:
        ratios = ", ".join(f"{v['variance_ratio']:.2f}" for v in report.values())
        say(
            f"Re-estimated {len(report)} BatchNorm layers on the training frames "
            f"(old/new variance {ratios}); teacher-forced token accuracy on "
            f"training clips, training/inference mode: {before['training']:.3f}/"
            f"{before['inference']:.3f} before, {after['training']:.3f}/"
            f"{after['inference']:.3f} after"
        )
    warned = warn_if_inference_differs(after)
    if warned:
        say(
            f"WARNING: inference-mode token accuracy on training clips "
            f"{after['inference']:.3f} < training mode {after['training']:.3f}"
        )
    return {
        "token_accuracy_before": before,
        "token_accuracy": after,
        "recalibrated": report,
        "warned": warned,
        "gap_threshold": GAP_WARNING_THRESHOLD,
    }
