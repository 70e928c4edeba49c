import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run the tests with the oneDNN kernels the `keras-pvc` CLI turns on
# (keras_pvc/apps/cli.py `_speed_defaults`; importing keras_pvc sets nothing).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
