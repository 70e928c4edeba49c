import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Run the tests with the oneDNN kernels the `keras-pvc` CLI turns on
# (keras_pvc/apps/cli.py `_speed_defaults`; importing keras_pvc sets nothing).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Runs score METEOR with nltk + WordNet instead of starting the METEOR 1.5
# jar's JVM (~10 s) in every training run; the jar's own tests in
# tests/test_metrics.py ask for it by name.
os.environ.setdefault("KERAS_PVC_METEOR", "nltk-wordnet")
