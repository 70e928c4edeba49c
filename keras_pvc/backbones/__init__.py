"""Image backbones for `FrameCNN`, with weights that need no download."""

from keras_pvc.backbones.efficientnet_lite import efficientnet_lite0
from keras_pvc.backbones.torch_pickle import load_torch_state_dict

__all__ = ["efficientnet_lite0", "load_torch_state_dict"]
