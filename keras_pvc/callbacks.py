"""Training callbacks."""

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="keras_pvc")
class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training with a clear error when a logged value is not finite.

    After every training batch it reads the running values `fit` logs
    (`loss`, and in self-critical mode `reward`, `baseline`, `advantage`);
    the first time one is NaN or infinite it sets `model.stop_training` and
    raises `FloatingPointError` naming the values, the epoch and the batch.
    Keras' own `TerminateOnNaN` watches only `loss` and stops silently.

    Args:
        monitor: tuple of str. Log keys to check; keys missing from the logs
            are skipped.

    Example:
    ```python
    model.enable_self_critical(train_references=train_references)
    model.fit(train_ds, epochs=10, callbacks=[NonFiniteGuard()])
    # FloatingPointError: Non-finite reward=nan, advantage=nan at epoch 1,
    # batch 3 ...
    ```
    """

    def __init__(self, monitor=("loss", "reward", "baseline", "advantage")):
        super().__init__()
        self.monitor = tuple(monitor)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {}
        for name in self.monitor:
            if name not in logs or logs[name] is None:
                continue
            value = float(np.asarray(logs[name]))
            if not math.isfinite(value):
                bad[name] = value
        if not bad:
            return
        if self.model is not None:
            self.model.stop_training = True
        values = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise FloatingPointError(
            f"Non-finite {values} at epoch {self._epoch + 1}, batch {batch + 1} "
            "(running means over the epoch so far). Training stopped. Check "
            "the reward function, the learning rate and the inputs."
        )

    def get_config(self):
        return {"monitor": list(self.monitor)}
