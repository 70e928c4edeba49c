"""The four swappable components of a video captioner."""

from keras_pvc.layers.caption_decoder import CaptionDecoder
from keras_pvc.layers.fast_lstm import FastLSTM
from keras_pvc.layers.frame_cnn import FrameCNN
from keras_pvc.layers.motion_tracks import MotionTracks
from keras_pvc.layers.region_memory import RegionMemory
from keras_pvc.layers.spatial_graph_conv import SpatialGraphConv
from keras_pvc.layers.spatial_graph_conv import grid_adjacency
from keras_pvc.layers.temporal_centering import TemporalCentering
from keras_pvc.layers.temporal_lstm_encoder import TemporalLSTMEncoder

__all__ = [
    "CaptionDecoder",
    "FastLSTM",
    "FrameCNN",
    "MotionTracks",
    "RegionMemory",
    "SpatialGraphConv",
    "TemporalCentering",
    "TemporalLSTMEncoder",
    "grid_adjacency",
]
