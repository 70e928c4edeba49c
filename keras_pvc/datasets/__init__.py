"""Datasets: loaders that return `Clip`s, and the embedded procedural one."""

from keras_pvc.datasets.clip import SPLITS
from keras_pvc.datasets.clip import Clip
