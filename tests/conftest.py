import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests import keras before keras_pvc; run them with the kernels the
# package turns on (keras_pvc/__init__.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
