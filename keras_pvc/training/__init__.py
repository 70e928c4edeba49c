"""Tier 4, training: callbacks, run folders, distribution, BatchNorm
recalibration and the feature cache.

| module | what it owns |
|---|---|
| `callbacks` | periodic checkpoints, crash-safe backup, history CSV, loss plot, best weights, cosine schedule, `NonFiniteGuard`, atomic writes |
| `runs` | `train_run`: one run folder from a dataset and a preset |
| `distribute` | `setup_distribution`: `tf.distribute` / `keras.distribution` strategies |
| `batch_norm` | exact BatchNorm statistics after training, the train/inference gap |
| `extract` | `extract_features`: videos -> cached frame-CNN features |

```python
from keras_pvc.training import BestWeights, cosine_learning_rate, train_run
```

The names below load their module on first use, so importing this package
imports neither Keras nor TensorFlow.
"""

import importlib

# Public name -> submodule that defines it.
_PUBLIC = {
    "BestWeights": "callbacks",
    "CrashSafeBackup": "callbacks",
    "HistoryLogger": "callbacks",
    "LossPlot": "callbacks",
    "NonFiniteGuard": "callbacks",
    "PeriodicCheckpoint": "callbacks",
    "cosine_learning_rate": "callbacks",
    "plot_history": "callbacks",
    "read_history": "callbacks",
    "save_weights_atomically": "callbacks",
    "training_callbacks": "callbacks",
    "write_json": "callbacks",
    "train_run": "runs",
    "setup_distribution": "distribute",
    "recalibrate_batch_norm": "batch_norm",
    "extract_features": "extract",
}
_SUBMODULES = ("batch_norm", "callbacks", "distribute", "extract", "runs")

__all__ = sorted(_PUBLIC) + list(_SUBMODULES)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f"{__name__}.{_PUBLIC[name]}")
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
