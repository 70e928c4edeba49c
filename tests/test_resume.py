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
    from keras_pvc.training.runs import train_run

    root, out, kill_epoch, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    tear_epoch = int(sys.argv[5]) if len(sys.argv) > 5 else -1

    # Tear the backup mid-write: at the end of epoch `tear_epoch`, write half
    # of the weights file the backup is writing, then die (SIGKILL).
    original_save_weights = keras.Model.save_weights

    def save_weights(self, filepath, *args, **kwargs):
        original_save_weights(self, filepath, *args, **kwargs)
        if os.sep + "backup" + os.sep in str(filepath) and tear_epoch >= 0:
            saves = getattr(self, "_backup_saves", 0) + 1
            self._backup_saves = saves
            if saves == tear_epoch + 1:
                with open(filepath, "r+b") as handle:
                    handle.truncate(os.path.getsize(filepath) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

    keras.Model.save_weights = save_weights

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


def _run(root, out, kill_epoch, resume, tear_epoch=-1):
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, root, out, str(kill_epoch), "1" if resume else "0",
         str(tear_epoch)],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _weights(run_dir):
    import keras_pvc

    return [np.asarray(w) for w in keras_pvc.from_preset(os.path.join(run_dir, "model")).weights]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The dataset and the run never interrupted that both tests compare with."""
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    folder = tmp_path_factory.mktemp("uninterrupted")
    root, straight = str(folder / "data"), str(folder / "straight")
    generate_procedural_dataset(root, num_clips=30, num_frames=8, seed=1)
    done = _run(root, straight, kill_epoch=-1, resume=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, straight


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(uninterrupted, tmp_path):
    root, straight = uninterrupted
    resumed = str(tmp_path / "resumed")
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


@pytest.mark.slow
def test_sigkill_while_writing_the_backup_then_resume_matches_uninterrupted(
    uninterrupted, tmp_path
):
    """Killed mid-write of the backup after epoch 3 (half the file on disk),
    then resumed: the same final weights as a run never interrupted. A copy
    whose `latest.weights.h5` is then torn in place (as Keras' own
    `BackupAndRestore` leaves it) falls back to the previous epoch, says so,
    and ends the same."""
    import shutil

    root, straight = uninterrupted
    torn = str(tmp_path / "torn")
    killed = _run(root, torn, kill_epoch=-1, resume=False, tear_epoch=2)
    assert killed.returncode == -9, killed.stderr[-3000:]
    backup = os.path.join(torn, "backup")
    assert any(".partial-" in name for name in os.listdir(backup))  # the torn write
    in_place = str(tmp_path / "torn_in_place")
    shutil.copytree(torn, in_place)
    latest = os.path.join(in_place, "backup", "latest.weights.h5")
    with open(latest, "r+b") as handle:
        handle.truncate(os.path.getsize(latest) // 2)

    for run_dir, fell_back in ((torn, False), (in_place, True)):
        finished = _run(root, run_dir, kill_epoch=-1, resume=True)
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert ("resumed from the previous backup" in finished.stderr) == fell_back
        assert "Traceback" not in finished.stderr
        for a, b in zip(_weights(straight), _weights(run_dir)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


# --- CrashSafeBackup: torn backups fall back to the last good state --------
# (plain Keras models, so these run on every backend and in seconds)


def _dense_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _dense_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


class _Snapshots:
    """Weights after each epoch, recorded by a callback."""

    def __init__(self):
        import keras

        self.weights = {}
        snapshots = self.weights

        class Record(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                snapshots[epoch + 1] = [np.array(w) for w in self.model.get_weights()]

        self.callback = Record()


def _fit(model, backup, epochs, extra=()):
    from keras_pvc.training import CrashSafeBackup

    x, y = _dense_data()
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[CrashSafeBackup(str(backup)), *extra])


def _resume_from(backup):
    """A fresh model that resumes from `backup`: `(epoch it starts at, weights)`."""
    import keras

    from keras_pvc.training import CrashSafeBackup

    model = _dense_model(seed=99)
    seen = {}

    class Start(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if "epoch" not in seen:
                seen["epoch"] = epoch
                seen["weights"] = [np.array(w) for w in self.model.get_weights()]

    x, y = _dense_data()
    model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
              callbacks=[CrashSafeBackup(str(backup)), Start()])
    return seen["epoch"], seen["weights"]


def _assert_same(a, b):
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def test_a_good_backup_resumes_at_the_next_epoch(tmp_path):
    snapshots = _Snapshots()
    _fit(_dense_model(), tmp_path / "backup", 3, [snapshots.callback])
    epoch, weights = _resume_from(tmp_path / "backup")
    assert epoch == 3
    _assert_same(weights, snapshots.weights[3])


@pytest.mark.parametrize(
    "damage, damaged",
    [
        ("truncate_weights", "latest.weights.h5"),
        ("garbage_weights", "latest.weights.h5"),
        ("truncate_metadata", "training_metadata.json"),
        ("new_weights_old_metadata", "latest.weights.h5 does not match"),
    ],
)
def test_a_torn_backup_falls_back_to_the_previous_epoch(tmp_path, damage, damaged):
    snapshots = _Snapshots()
    backup = tmp_path / "backup"
    _fit(_dense_model(), backup, 3, [snapshots.callback])
    weights, metadata = backup / "latest.weights.h5", backup / "training_metadata.json"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garbage_weights":
        weights.write_bytes(b"\x00" * 100)
    elif damage == "truncate_metadata":
        metadata.write_text('{"epoch": 3, "ba')
    else:
        # A kill after the weights of epoch 3 replaced the file but before
        # the metadata did: new weights with epoch 2's metadata.
        import shutil

        shutil.copyfile(backup / "previous_training_metadata.json", metadata)
    with pytest.warns(UserWarning, match="resumed from the previous backup") as record:
        epoch, restored = _resume_from(backup)
    assert damaged in str(record[0].message)
    assert epoch == 2
    _assert_same(restored, snapshots.weights[2])


def test_no_usable_backup_is_a_clear_error_and_keeps_the_files(tmp_path):
    backup = tmp_path / "backup"
    _fit(_dense_model(), backup, 2)
    for name in ("latest.weights.h5", "previous.weights.h5"):
        (backup / name).write_bytes(b"torn")
    with pytest.raises(ValueError, match=r"No usable backup in .*backup.*Delete the folder"):
        _resume_from(backup)
    assert (backup / "latest.weights.h5").read_bytes() == b"torn"


def test_a_stale_partial_file_from_a_killed_write_is_ignored(tmp_path):
    snapshots = _Snapshots()
    backup = tmp_path / "backup"
    _fit(_dense_model(), backup, 2, [snapshots.callback])
    partial = backup / "latest.partial-12345.weights.h5"
    partial.write_bytes(b"half a file")
    epoch, weights = _resume_from(backup)
    assert epoch == 2 and not partial.exists()
    _assert_same(weights, snapshots.weights[2])
