"""keras_pvc: a Keras 3 model zoo for video captioning.

```python
import keras_pvc
model = keras_pvc.from_preset("procedural")
model.fit(train_ds, validation_data=val_ds, epochs=20)
model.generate(batch)  # -> list of str
```

The public API is what `__all__` lists. Submodules load on first use, so
`import keras_pvc` (and the `keras-pvc` CLI's `--help`) stays fast.
"""

import importlib

__version__ = "0.1.0"

# Public name -> module that defines it.
_PUBLIC = {
    "from_preset": "keras_pvc.presets",
    "list_presets": "keras_pvc.presets",
    "VideoCaptioner": "keras_pvc.models.video_captioner",
    "VideoCaptionerBackbone": "keras_pvc.models.video_captioner_backbone",
    "VideoCaptionerPreprocessor": "keras_pvc.models.video_captioner_preprocessor",
    "read_frames": "keras_pvc.video",
}
_SUBMODULES = (
    "backbones",
    "datasets",
    "layers",
    "metrics",
    "models",
    "rewards",
    "video",
)

__all__ = sorted(_PUBLIC) + list(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_pvc.{name}")
    raise AttributeError(f"module 'keras_pvc' has no attribute {name!r}")


def __dir__():
    return __all__
