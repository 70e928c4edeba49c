"""Training helpers: the learning-rate schedule."""

import math

import keras
import numpy as np
import pytest

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
