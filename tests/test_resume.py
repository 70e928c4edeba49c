"""A run killed mid-epoch (SIGKILL) and resumed ends with the same weights as
an uninterrupted one."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.runs import train_run

    root, out, kill_epoch, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"

    class KillMidEpoch(keras.callbacks.Callback):
        epoch = -1

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == kill_epoch and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    overrides = {
        "hidden_dim": 16, "embedding_dim": 8, "batch_size": 6, "num_frames": 4,
        "graph": {"units": 16, "adjacency": "both", "attention_dim": 8},
    }
    train_run(load_msvd(root), out, overrides=overrides, epochs=4, seed=5,
              resume=resume, callbacks=[KillMidEpoch()], verbose=0)
    """
)


def _run(root, out, kill_epoch, resume):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, root, out, str(kill_epoch), "1" if resume else "0"],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _weights(run_dir):
    import keras_pvc

    return [np.asarray(w) for w in keras_pvc.from_preset(os.path.join(run_dir, "model")).weights]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    root = str(tmp_path / "data")
    generate_procedural_dataset(root, num_clips=30, num_frames=8, seed=1)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")

    done = _run(root, straight, kill_epoch=-1, resume=False)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = _run(root, resumed, kill_epoch=2, resume=False)
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL, mid epoch 3
    assert not os.path.exists(os.path.join(resumed, "model"))
    finished = _run(root, resumed, kill_epoch=-1, resume=True)
    assert finished.returncode == 0, finished.stderr[-3000:]

    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # The resumed history has each epoch once.
    with open(os.path.join(resumed, "history.csv")) as handle:
        epochs = [line.split(",")[0] for line in handle.read().split()[1:]]
    assert epochs == ["0", "1", "2", "3"]
