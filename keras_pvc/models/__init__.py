"""Backbone, task and preprocessor of the video captioner."""

from keras_pvc.models.video_captioner import VideoCaptioner
from keras_pvc.models.video_captioner_backbone import VideoCaptionerBackbone
from keras_pvc.models.video_captioner_preprocessor import VideoCaptionerPreprocessor

__all__ = ["VideoCaptioner", "VideoCaptionerBackbone", "VideoCaptionerPreprocessor"]
