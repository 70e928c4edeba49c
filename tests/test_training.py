"""Training helpers: the learning-rate schedule."""

import math

import keras
import numpy as np
import pytest

from keras_pvc.training import BestWeights
from keras_pvc.training import HistoryLogger
from keras_pvc.training import cosine_learning_rate


def test_cosine_learning_rate_by_hand():
    callback = cosine_learning_rate(2e-3, epochs=30, final_fraction=0.05)
    schedule = callback.schedule
    assert schedule(0) == pytest.approx(2e-3)
    assert schedule(15) == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5))
    assert schedule(10) == pytest.approx(2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 3))))
    assert schedule(30) == pytest.approx(1e-4)
    assert schedule(40) == pytest.approx(1e-4)  # past the end: the floor
    rates = [schedule(epoch) for epoch in range(31)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_cosine_learning_rate_sets_the_optimizer_each_epoch():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    history = model.fit(
        x, y, epochs=4, verbose=0, callbacks=[cosine_learning_rate(0.1, 4), Record()]
    )
    expected = [cosine_learning_rate(0.1, 4).schedule(epoch) for epoch in range(4)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-6)


class _ValLoss(keras.callbacks.Callback):
    """Logs a scripted `val_loss` per epoch (runs before the callbacks under test)."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_best_weights_keeps_the_lowest_validation_loss_epoch(tmp_path):
    model = _tiny_model()
    x, y = np.ones((4, 2), "float32"), np.full((4, 1), 3.0, "float32")
    weights_by_epoch = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_by_epoch.append([w.copy() for w in self.model.get_weights()])

    best = BestWeights(str(tmp_path / "best.weights.h5"))
    model.fit(
        x, y, epochs=5, verbose=0,
        callbacks=[_ValLoss([0.9, 0.5, 0.7, 0.4, 0.6]), Record(), best],
    )
    assert best.best_epoch == 3 and best.best == pytest.approx(0.4)
    assert best.restore(model) == 3
    for ours, expected in zip(model.get_weights(), weights_by_epoch[3]):
        np.testing.assert_array_equal(ours, expected)


def test_best_weights_resumes_from_the_history(tmp_path):
    # A run that crashed after epoch 2 (best val_loss 0.4 at epoch 1) and
    # resumes: a worse epoch must not replace the best weights on disk.
    history = str(tmp_path / "history.csv")
    path = str(tmp_path / "best.weights.h5")
    model = _tiny_model()
    x, y = np.ones((4, 2), "float32"), np.full((4, 1), 3.0, "float32")
    model.fit(
        x, y, epochs=2, verbose=0,
        callbacks=[_ValLoss([0.9, 0.4]), HistoryLogger(history), BestWeights(path, history)],
    )
    saved = [w.copy() for w in model.get_weights()]
    resumed = BestWeights(path, history)
    assert resumed.best == pytest.approx(0.4) and resumed.best_epoch == 1
    model.fit(
        x, y, initial_epoch=2, epochs=4, verbose=0,
        callbacks=[_ValLoss([None, None, 0.6, 0.5]), HistoryLogger(history), resumed],
    )
    assert resumed.best_epoch == 1
    assert resumed.restore(model) == 1
    for ours, expected in zip(model.get_weights(), saved):
        np.testing.assert_array_equal(ours, expected)
    # Without a saved file there is nothing to restore.
    assert BestWeights(str(tmp_path / "none.weights.h5"), history).restore(model) is None
