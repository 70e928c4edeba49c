"""Training callbacks: checkpoints, resume, loss plots, a non-finite guard,
and the run folder every `keras-pvc train`/`demo` writes.

A run folder holds:
- `model/` — the final model as a preset folder (`keras_pvc.from_preset(it)`),
- `checkpoints/epoch_NNN.weights.h5` — weights every `checkpoint_every` epochs,
- `backup/` — `CrashSafeBackup` state for `--resume` (double-buffered,
  each file written atomically: a kill never loses the last good epoch),
- `history.csv` and `loss_imgs/loss.png` — losses, redrawn every epoch,
- `metrics.json`, `samples.txt` — held-out scores and captions.
"""

import hashlib
import json
import math
import os
import shutil
import warnings

import keras
import numpy as np


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves the model's weights every `every` epochs (the seed saved every 10).

    Args:
        directory: str. Where `epoch_NNN.weights.h5` files go.
        every: int. Epoch interval.
    """

    def __init__(self, directory, every=10):
        super().__init__()
        self.directory = directory
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if self.every and (epoch + 1) % self.every == 0:
            os.makedirs(self.directory, exist_ok=True)
            path = os.path.join(self.directory, f"epoch_{epoch + 1:03d}.weights.h5")
            save_weights_atomically(self.model, path)


def save_weights_atomically(model, path):
    """`model.save_weights(path)` under a temporary name, then `os.replace`.

    A kill during the write leaves the previous file (or none), never half
    of one.
    """
    temporary = path[: -len(".weights.h5")] + f".partial-{os.getpid()}.weights.h5"
    model.save_weights(temporary)
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_text_atomically(path, text):
    temporary = f"{path}.partial-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _file_sha1(path):
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CrashSafeBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup survives a kill at any moment.

    Keras' callback (even with `double_checkpoint=True`) overwrites
    `latest.weights.h5` in place, and writes the epoch to
    `training_metadata.json` after the weights: a kill during the write
    leaves a torn file that `--resume` fails on with a raw h5py `OSError`,
    and a kill between the two writes pairs new weights with the old epoch.
    Here every save is double-buffered and atomic:

    1. the last good pair is copied to `previous.weights.h5` /
       `previous_training_metadata.json` (each copy atomic);
    2. the weights are written under a temporary name and moved over
       `latest.weights.h5` (`os.replace`);
    3. the metadata, with the SHA-1 of the weights file it belongs to, is
       written the same way.

    On resume, the latest pair is used if its metadata parses, the weights'
    SHA-1 matches and they load; otherwise the previous pair, with a
    warning naming the damaged file; if neither is usable, a `ValueError`
    names the folder and says how to start over (the backup is left as it
    is). Backups written by Keras' own callback (no SHA-1) still load.

    Args:
        backup_dir: str. The backup folder.
        save_freq: `"epoch"` or int, as in `BackupAndRestore`.
    """

    def __init__(self, backup_dir, save_freq="epoch"):
        super().__init__(
            backup_dir, save_freq=save_freq, double_checkpoint=True, delete_checkpoint=False
        )
        # Keras loads weights only from names ending in `.weights.h5`, so the
        # previous pair is not Keras' `latest.weights.h5.bkp`.
        self._prev_weights_path = os.path.join(backup_dir, "previous.weights.h5")
        self._prev_training_metadata_path = os.path.join(
            backup_dir, "previous_training_metadata.json"
        )

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(
                "CrashSafeBackup needs a built model before `fit()`; call it "
                "on a batch first."
            )
        pairs = [
            (self._weights_path, self._training_metadata_path),
            (self._prev_weights_path, self._prev_training_metadata_path),
        ]
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if ".partial-" in name:  # a write a kill interrupted
                    os.remove(os.path.join(self.backup_dir, name))
        if not any(os.path.exists(path) for pair in pairs for path in pair):
            return  # a fresh run
        problems = []
        for weights_path, metadata_path in pairs:
            problem = self._restore(weights_path, metadata_path)
            if problem is None:
                if problems:
                    warnings.warn(
                        f"Backup {problems[0]}; resumed from the previous backup "
                        f"{weights_path} (epoch {self.model._initial_epoch}).",
                        stacklevel=2,
                    )
                return
            problems.append(problem)
        raise ValueError(
            f"No usable backup in {self.backup_dir}: " + "; ".join(problems)
            + ". Delete the folder (or run without --resume) to start over."
        )

    def _restore(self, weights_path, metadata_path):
        """Loads one (weights, metadata) pair; returns why not, or None."""
        if not os.path.isfile(weights_path):
            return f"{weights_path} is missing"
        try:
            with open(metadata_path, encoding="utf-8") as handle:
                metadata = json.load(handle)
            epoch = int(metadata["epoch"])
        except FileNotFoundError:
            return f"{metadata_path} is missing"
        except (ValueError, KeyError, TypeError) as error:
            return f"{metadata_path} is damaged ({type(error).__name__}: {error})"
        expected = metadata.get("weights_sha1")
        if expected is not None and _file_sha1(weights_path) != expected:
            return (
                f"{weights_path} does not match {metadata_path} (torn or from an "
                "interrupted save)"
            )
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(weights_path)
        except Exception as error:  # h5py raises OSError, KeyError, ValueError...
            return f"{weights_path} cannot be loaded ({type(error).__name__}: {error})"
        self.model._initial_epoch = epoch
        return None

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        for current, previous in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        ):
            if os.path.exists(current):
                temporary = f"{previous}.partial-{os.getpid()}"
                shutil.copyfile(current, temporary)
                os.replace(temporary, previous)
        save_weights_atomically(self.model, self._weights_path)
        metadata = {
            "epoch": self._current_epoch,
            "batch": self._last_batch_seen,
            "weights_sha1": _file_sha1(self._weights_path),
        }
        _write_text_atomically(self._training_metadata_path, json.dumps(metadata))


class HistoryLogger(keras.callbacks.Callback):
    """Writes one CSV row per epoch, safe across phases and resumes.

    Unlike `keras.callbacks.CSVLogger`, columns may change between fits (the
    self-critical phase logs rewards the cross-entropy phase did not), and a
    resumed run replaces rows of epochs it redoes instead of duplicating
    them. The file is rewritten atomically each epoch (it is small).

    Args:
        path: str. The CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        import csv

        rows = []
        if os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8", errors="replace") as handle:
                for row in csv.DictReader(handle):
                    try:
                        if int(row["epoch"]) < epoch:
                            rows.append(row)
                    except (KeyError, TypeError, ValueError):
                        warnings.warn(
                            f"{self.path}: dropped a damaged row {row!r}.", stacklevel=2
                        )
        row = {"epoch": epoch}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        rows.append(row)
        columns = ["epoch"] + sorted({key for r in rows for key in r} - {"epoch"})
        temporary = self.path + ".tmp"
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.path)


class LossPlot(keras.callbacks.Callback):
    """Redraws the training and validation loss curves after every epoch.

    Reads the run's `history.csv` (written by `HistoryLogger` before this
    callback runs), so a resumed run's plot covers all epochs.

    Args:
        history_csv: str. The CSV log.
        path: str. The PNG to write.
        keys: tuple of str. Columns to plot (those present are drawn).
    """

    def __init__(self, history_csv, path, keys=("loss", "val_loss")):
        super().__init__()
        self.history_csv = history_csv
        self.path = path
        self.keys = keys

    def on_epoch_end(self, epoch, logs=None):
        plot_history(self.history_csv, self.path, self.keys)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the lowest `monitor` on disk.

    Like `EarlyStopping(restore_best_weights=True)` without the stopping, and
    crash-safe: the best weights are a file (`path`), and the best value so
    far is read back from the run's `history.csv`, so a resumed run keeps
    comparing against the epochs it did before the crash. Call `restore()`
    after `fit` to load them (it returns the best epoch, or None).

    Args:
        path: str. The `.weights.h5` file.
        history_csv: str or None. The run's history, for resuming.
        monitor: str. A logged quantity to minimise (`val_loss`).
    """

    def __init__(self, path, history_csv=None, monitor="val_loss"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best, self.best_epoch = float("inf"), None
        # Without the file there is nothing to compare against.
        history = read_history(history_csv) if history_csv and os.path.exists(path) else {}
        for epoch, value in zip(history.get("epoch", []), history.get(monitor, [])):
            if value < self.best:
                self.best, self.best_epoch = value, int(epoch)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value < self.best:
            return
        self.best, self.best_epoch = float(value), epoch
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        save_weights_atomically(self.model, self.path)

    def restore(self, model):
        """Loads the best weights into `model`; returns their epoch or None."""
        if self.best_epoch is None or not os.path.exists(self.path):
            return None
        model.load_weights(self.path)
        return self.best_epoch


def read_history(history_csv):
    """`{column: [floats]}` from a history CSV (empty if none)."""
    import csv

    if not os.path.exists(history_csv):
        return {}
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def plot_history(history_csv, path, keys=("loss", "val_loss"), title="Loss"):
    """Draws columns of a history CSV against epochs into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_history(history_csv)
    if not history.get("epoch"):
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    epochs = [int(epoch) + 1 for epoch in history["epoch"]]
    # Self-critical epochs (those with a `reward`) log the policy-gradient
    # loss as `loss`: not on the scale of cross-entropy, so left out here
    # (their `val_loss` is still cross-entropy).
    rewards = history.get("reward", [float("nan")] * len(epochs))
    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = 0
    for key in keys:
        if key in history:
            values = history[key]
            if key == "loss":
                values = [v if r != r else float("nan") for v, r in zip(values, rewards)]
            axis.plot(epochs, values, marker="o", label=key)
            drawn += 1
    if not drawn:
        plt.close(figure)
        return
    axis.set_xlabel("epoch")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def cosine_learning_rate(learning_rate, epochs, final_fraction=0.05):
    """A per-epoch cosine decay from `learning_rate` to `final_fraction` of it.

    Epoch `e` of `epochs` trains at `lr * (f + (1 - f) * (1 + cos(pi * e /
    epochs)) / 2)`. A function of the epoch alone, so a resumed run picks up
    the same rate; the rate of each epoch is logged as `learning_rate`.

    Args:
        learning_rate: float. The first epoch's rate.
        epochs: int. Epochs over which it decays.
        final_fraction: float. The floor, as a fraction of `learning_rate`.

    Returns:
        A `keras.callbacks.LearningRateScheduler`.
    """

    def schedule(epoch, current=None):
        progress = min(epoch / max(epochs, 1), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return float(learning_rate * (final_fraction + (1.0 - final_fraction) * cosine))

    return keras.callbacks.LearningRateScheduler(schedule)


@keras.saving.register_keras_serializable(package="keras_pvc")
class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training with a clear error when a logged value is not finite.

    After every training batch it reads the running values `fit` logs
    (`loss`, and in self-critical mode `reward`, `baseline`, `advantage`);
    the first time one is NaN or infinite it sets `model.stop_training` and
    raises `FloatingPointError` naming the values, the epoch and the batch.
    Keras' own `TerminateOnNaN` watches only `loss` and stops silently.

    Args:
        monitor: tuple of str. Log keys to check; keys missing from the logs
            are skipped.

    Example:
    ```python
    model.enable_self_critical(train_references=train_references)
    model.fit(train_ds, epochs=10, callbacks=[NonFiniteGuard()])
    # FloatingPointError: Non-finite reward=nan, advantage=nan at epoch 1,
    # batch 3 ...
    ```
    """

    def __init__(self, monitor=("loss", "reward", "baseline", "advantage")):
        super().__init__()
        self.monitor = tuple(monitor)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {}
        for name in self.monitor:
            if name not in logs or logs[name] is None:
                continue
            value = float(np.asarray(logs[name]))
            if not math.isfinite(value):
                bad[name] = value
        if not bad:
            return
        if self.model is not None:
            self.model.stop_training = True
        values = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise FloatingPointError(
            f"Non-finite {values} at epoch {self._epoch + 1}, batch {batch + 1} "
            "(running means over the epoch so far). Training stopped. Check "
            "the reward function, the learning rate and the inputs."
        )

    def get_config(self):
        return {"monitor": list(self.monitor)}


def training_callbacks(run_dir, checkpoint_every=10, resume=False, phase="xe"):
    """Checkpoints, crash-safe backup, history, loss plot and a NaN guard.

    Args:
        run_dir: str. The run folder.
        checkpoint_every: int. Save weights every this many epochs (0: never).
        resume: bool. Continue from the phase's backup if a run was
            interrupted; without it an old backup is discarded and the phase
            starts over.
        phase: str. `"xe"` (cross-entropy) or `"rl"` (self-critical): each
            phase has its own backup folder; the RL phase appends to the
            history the XE phase wrote.
    """
    backup = os.path.join(run_dir, "backup" if phase == "xe" else f"backup_{phase}")
    history_csv = os.path.join(run_dir, "history.csv")
    if not resume:
        if os.path.exists(backup):
            shutil.rmtree(backup)
        if phase == "xe" and os.path.exists(history_csv):
            os.remove(history_csv)
    return [
        NonFiniteGuard(),
        CrashSafeBackup(backup),
        HistoryLogger(history_csv),
        LossPlot(history_csv, os.path.join(run_dir, "loss_imgs", "loss.png")),
        PeriodicCheckpoint(os.path.join(run_dir, "checkpoints"), checkpoint_every),
    ]


def write_json(path, data):
    """Writes JSON atomically (a crash never leaves half a file)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
    os.replace(temporary, path)
