"""Training past one device: strategy choice, two workers, JAX DataParallel.

The multi-process tests start subprocesses on free loopback ports (two
TensorFlow workers with TF_CONFIG, two JAX processes with
KERAS_DISTRIBUTION_*) and compare against one process on the same global
batch.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_pvc.training.distribute import Distribution
from keras_pvc.training.distribute import _tensorflow_worker_index
from keras_pvc.training.distribute import setup_distribution
from layer_testing import BACKEND
from layer_testing import slow_on_jax
from layer_testing import tensorflow_only

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
TIMEOUT = 900


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("localhost", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def environment(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT + os.pathsep + TESTS)
    env.update(extra)
    return env


def run_together(commands, timeout=TIMEOUT):
    """Starts processes `[(argv, env)]` at once; returns their (rc, out, err)."""
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for argv, env in commands
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


def tf_config(ports, index):
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


# === Choosing a strategy ===


def test_a_strategy_the_backend_lacks_names_the_backend_and_the_alternatives():
    with pytest.raises(ValueError, match="'jax' backend.*data-parallel.*tensorflow: mirrored"):
        setup_distribution("multi-worker", backend="jax")
    with pytest.raises(ValueError, match="'tensorflow' backend.*mirrored, multi-worker.*jax"):
        setup_distribution("data-parallel", backend="tensorflow")
    with pytest.raises(ValueError, match="'torch' backend has no distributed `fit`"):
        setup_distribution("mirrored", backend="torch")
    with pytest.raises(ValueError, match="Unknown distribution strategy 'ddp'"):
        setup_distribution("ddp", backend="torch")
    assert setup_distribution(None).record() == {
        "strategy": None, "engine": None, "replicas": 1, "workers": 1,
    }


def test_cli_refuses_a_strategy_of_another_backend(tmp_path, capsys):
    from keras_pvc.apps.cli import main

    other = "multi-worker" if BACKEND == "jax" else "data-parallel"
    code = main(["train", "--root", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--distribute", other])
    assert code == 1
    error = capsys.readouterr().err
    assert f"'{BACKEND}' backend" in error and "docs/distributed.md" in error
    assert not (tmp_path / "run").exists()


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    if BACKEND != "tensorflow":
        pytest.skip("multi-worker is TensorFlow's")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        setup_distribution("multi-worker")


def test_the_chief_is_the_chief_task_or_worker_zero(tmp_path):
    assert _tensorflow_worker_index("worker", 0, {"worker": ["a", "b"]}) == 0
    assert _tensorflow_worker_index("worker", 1, {"worker": ["a", "b"]}) == 1
    assert _tensorflow_worker_index("chief", 0, {"chief": ["c"], "worker": ["a"]}) == 0
    assert _tensorflow_worker_index("worker", 0, {"chief": ["c"], "worker": ["a"]}) == 1
    # A worker writes a temporary folder holding the chief's backups to resume from.
    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    (out / "backup" / "latest.weights.h5").write_bytes(b"weights")
    (out / "history.csv").write_text("epoch,loss\n0,1.0\n")
    worker = Distribution("multi-worker", num_replicas=2, num_workers=2, worker_index=1)
    folder = worker.write_folder(str(out), resume=True)
    assert folder == str(out / "workertemp_1")
    assert (out / "workertemp_1" / "backup" / "latest.weights.h5").read_bytes() == b"weights"
    assert (out / "workertemp_1" / "history.csv").exists()
    worker.finish(folder)
    assert not os.path.exists(folder)
    chief = Distribution("multi-worker", num_replicas=2, num_workers=2)
    assert chief.write_folder(str(out)) == str(out)


# === Cross-entropy over the global batch's words ===


@slow_on_jax
def test_replica_shares_of_the_loss_add_up_to_the_global_word_mean():
    """Split a batch whose halves hold different numbers of words, as two
    replicas would: each half's `compute_loss`, given the whole batch's
    `global_words`, is its share, and the shares add up to the whole batch's
    mean over words (Keras' loss on one device), by numpy as well. A mean of
    the halves' own means would not (asserted, so the case can tell)."""
    import keras
    from keras import ops

    from keras_pvc.training.distribute import with_global_word_count
    from keras_pvc.models.video_captioner_preprocessor import GLOBAL_WORDS
    from test_models import CAPTIONS, tiny_model
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = tiny_model()
    features = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype("float32")
    raw = {"features": features, "frame_mask": np.ones((4, 3), "int32"),
           "caption": tf.constant(CAPTIONS)}
    x, y, weights = next(iter(with_global_word_count(
        tf.data.Dataset.from_tensors(raw).map(model.preprocessor)
    )))
    # Fitted a little, so words differ in loss (an untrained model's are all
    # about log(vocabulary), and any normalisation would look alike).
    model.fit({"features": features, "frame_mask": raw["frame_mask"], "caption": CAPTIONS},
              batch_size=4, epochs=10, verbose=0)
    x = {key: ops.convert_to_tensor(value.numpy()) for key, value in x.items()}
    y, weights = ops.convert_to_tensor(y.numpy()), ops.convert_to_tensor(weights.numpy())
    assert float(x[GLOBAL_WORDS][0]) == float(np.sum(ops.convert_to_numpy(weights)))

    def loss(rows, carry_words=True):
        part = {key: value[rows] for key, value in x.items()}
        if not carry_words:
            del part[GLOBAL_WORDS]
        predictions = model(part, training=False)
        return float(ops.convert_to_numpy(model.compute_loss(part, y[rows], predictions, weights[rows])))

    # Parts as uneven as replicas can hold: the short caption on its own.
    whole = loss(slice(0, 4), carry_words=False)
    halves = loss(slice(0, 2)) + loss(slice(2, 3)) + loss(slice(3, 4))
    np.testing.assert_allclose(halves, whole, rtol=1e-5)
    # numpy: the mean over real words of -log softmax at the label.
    logits = ops.convert_to_numpy(model(x, training=False)).astype("float64")
    labels, mask = ops.convert_to_numpy(y), ops.convert_to_numpy(weights)
    log_probs = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) - logits.max(-1, keepdims=True)
    picked = np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(whole, -np.sum(picked * mask) / np.sum(mask), rtol=1e-5)
    assert float(np.sum(mask[2])) < float(np.sum(mask[3]))
    means = [loss(slice(0, 2), False), loss(slice(2, 3), False), loss(slice(3, 4), False)]
    # 100 times the tolerance above.
    assert abs(np.mean(means) - whole) > 1e-3 * whole


# === TensorFlow: two workers on loopback ===

# One optimizer step on one global batch of 4 clips whose captions differ in
# length (so the replicas hold different numbers of words), as one process
# (argv[1] == "one") or as a worker of MultiWorkerMirroredStrategy.
STEP_SCRIPT = """
import sys
mode, phase, out = sys.argv[1:4]
from keras_pvc.training.distribute import Distribution, setup_distribution
distribution = setup_distribution("multi-worker") if mode == "worker" else Distribution()
import keras, numpy as np
from keras import ops
from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.pipeline import ClipArrays, caption_dataset, reference_ids
from test_models import CAPTIONS, tiny_model
from layer_testing import use_split_independent_decode

if phase == "self_critical":
    use_split_independent_decode()
with distribution.scope():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    # Cross-entropy over captions of different lengths (9, 9, 5 and 9
    # words), so the two workers hold different numbers of words: their
    # update equals one process's only if the loss is normalised over the
    # global batch's words.
    if phase == "cross_entropy":
        clips = [Clip(f"c{i}", [CAPTIONS[i]], "train") for i in range(4)]
    else:
        clips = [Clip(f"c{i}", [c, CAPTIONS[(i + 1) % 4]], "train") for i, c in enumerate(CAPTIONS)]
    if phase == "self_critical":
        # No cross-entropy mixed in: the cross_entropy phase tests that.
        model.enable_self_critical(
            train_references=reference_ids(clips, model.preprocessor),
            num_samples=3, baseline="mean", seed=1,
        )
features = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype("float32")
arrays = ClipArrays(clips, features, np.ones((4, 3), bool), [])
dataset = caption_dataset(arrays, model.preprocessor, "features", 4, shuffle=False,
                          references=phase == "self_critical")
if distribution.is_chief:
    np.savez(out + ".before.npz", *[ops.convert_to_numpy(v) for v in model.trainable_variables])
dataset = distribution.prepare_dataset(dataset, 4, preprocessor=model.preprocessor)
history = model.fit(dataset, epochs=1, verbose=0).history
if distribution.is_chief:
    np.savez(out, *[ops.convert_to_numpy(v) for v in model.trainable_variables])
    print("LOGS" + __import__("json").dumps({k: float(v[0]) for k, v in history.items()}))
"""


def load_weights(path):
    with np.load(path) as saved:
        return [saved[f"arr_{index}"] for index in range(len(saved.files))]


@pytest.mark.slow
@tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")
@pytest.mark.parametrize("phase", ["cross_entropy", "self_critical"])
def test_two_workers_make_one_process_update(tmp_path, phase):
    script = textwrap.dedent(STEP_SCRIPT)
    ports = free_ports(2)
    one = str(tmp_path / "one.npz")
    two = str(tmp_path / "two.npz")
    commands = [
        ([sys.executable, "-c", script, "one", phase, one], environment()),
    ] + [
        ([sys.executable, "-c", script, "worker", phase, two if index == 0 else "-"],
         environment(TF_CONFIG=tf_config(ports, index)))
        for index in range(2)
    ]
    results = run_together(commands)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    one_weights, two_weights = load_weights(one), load_weights(two)
    initial = load_weights(one + ".before.npz")
    update = max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, initial))
    assert update > 1e-3  # the step moved the weights
    for a, b in zip(one_weights, two_weights):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    logs = [json.loads(line[4:]) for _, out, _ in results for line in out.splitlines()
            if line.startswith("LOGS")]
    np.testing.assert_allclose(logs[1]["loss"], logs[0]["loss"], rtol=1e-4)


@pytest.mark.slow
@tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")
def test_keras_pvc_train_on_two_workers_with_self_critical(tmp_path):
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    root = str(tmp_path / "data")
    generate_procedural_dataset(root, num_clips=12, num_frames=4, seed=3)
    out = tmp_path / "run"
    ports = free_ports(2)
    argv = [sys.executable, "-m", "keras_pvc", "train", "--root", root, "--out", str(out),
            "--distribute", "multi-worker", "--epochs", "1", "--rl-epochs", "1",
            "--rl-samples", "2", "--set", "hidden_dim=8", "--set", "embedding_dim=8",
            "--set", "graph=null", "--set", "batch_size=4", "--set", "caption_length=6",
            "--set", 'frame_cnn={"backbone": "simple", "filters": [4], "normalization": "batch"}']
    results = run_together(
        [(argv, environment(TF_CONFIG=tf_config(ports, index))) for index in range(2)]
    )
    for code, _, err in results:
        assert code == 0, err[-3000:]
    chief_log, worker_log = results[0][1], results[1][1]
    assert "2 replicas on 2 worker(s); this process is the chief" in chief_log
    assert "this process is the worker 1" in worker_log
    assert "Self-critical training" in chief_log
    with open(out / "metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["distribution"] == {
        "strategy": "multi-worker",
        "engine": "tf.distribute.MultiWorkerMirroredStrategy",
        "replicas": 2,
        "workers": 2,
    }
    assert metrics["rl_epochs"] == 1 and "XE+RL" in metrics["phases"]
    # Only the chief's folder is left; the worker's temporary one is gone.
    assert not (out / "workertemp_1").exists()
    assert (out / "model").is_dir() and (out / "backup_rl").is_dir()


# Two workers train 2 epochs; with a kill epoch, both SIGKILL themselves
# mid-way through it (after the same step, so neither waits on a dead
# peer); with "resume" they go on from the chief's backup.
RESUME_SCRIPT = """
import os, signal, sys
from keras_pvc.training.distribute import setup_distribution
distribution = setup_distribution("multi-worker")
import keras
import tensorflow as tf
tf.config.experimental.enable_op_determinism()
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.training.runs import train_run

root, out, kill_epoch, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"

class KillMidEpoch(keras.callbacks.Callback):
    epoch = -1

    def on_epoch_begin(self, epoch, logs=None):
        if self.epoch == -1:  # The first epoch this process trains.
            with open(f"{out}.first_epoch.{distribution.worker_index}", "w") as handle:
                handle.write(str(epoch))
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == kill_epoch and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

overrides = {"hidden_dim": 8, "embedding_dim": 8, "graph": None, "batch_size": 4,
             "caption_length": 6, "num_frames": 4,
             "frame_cnn": {"backbone": "simple", "filters": [4], "normalization": "batch"}}
train_run(load_msvd(root), out, overrides=overrides, epochs=2, seed=5, resume=resume,
          callbacks=[KillMidEpoch()], verbose=0, distribute=distribution)
"""


@pytest.mark.slow
@tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")
def test_two_workers_killed_mid_epoch_resume_to_the_uninterrupted_weights(tmp_path):
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    root = str(tmp_path / "data")
    generate_procedural_dataset(root, num_clips=16, num_frames=4, seed=3)
    script = textwrap.dedent(RESUME_SCRIPT)

    def two_workers(out, kill_epoch, resume):
        ports = free_ports(2)
        argv = [sys.executable, "-c", script, root, out, str(kill_epoch),
                "resume" if resume else "new"]
        return run_together(
            [(argv, environment(TF_CONFIG=tf_config(ports, index))) for index in range(2)]
        )

    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    for code, _, err in two_workers(straight, -1, False):
        assert code == 0, err[-3000:]
    for code, _, err in two_workers(resumed, 1, False):
        assert code == -9, err[-3000:]  # SIGKILL, mid epoch 2
    assert not os.path.exists(os.path.join(resumed, "model"))
    for code, _, err in two_workers(resumed, -1, True):
        assert code == 0, err[-3000:]
    # Both workers went on from the chief's backup of epoch 0.
    for index in range(2):
        with open(f"{resumed}.first_epoch.{index}") as handle:
            assert handle.read() == "1"
    for a, b in zip(load_run_weights(straight), load_run_weights(resumed)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    with open(os.path.join(resumed, "history.csv")) as handle:
        epochs = [line.split(",")[0] for line in handle.read().split()[1:]]
    assert epochs == ["0", "1"]
    assert not os.path.exists(os.path.join(resumed, "workertemp_1"))


def load_run_weights(run):
    import keras_pvc
    from keras import ops

    model = keras_pvc.from_preset(os.path.join(run, "model"))
    return [ops.convert_to_numpy(w) for w in model.weights]


# === JAX: DataParallel over two CPU devices, and two processes ===

DATA_PARALLEL_SCRIPT = """
import json
import keras, numpy as np
from keras import ops
from keras_pvc.training.distribute import setup_distribution
from keras_pvc.datasets.clip import Clip
from keras_pvc.datasets.pipeline import ClipArrays, caption_dataset, reference_ids
from test_models import CAPTIONS, tiny_model

def one_step(phase, distribute):
    distribution = setup_distribution("data-parallel" if distribute else None)
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
    clips = [Clip(f"c{i}", [c, CAPTIONS[(i + 1) % 4]], "train") for i, c in enumerate(CAPTIONS)]
    if phase == "self_critical":
        model.enable_self_critical(
            train_references=reference_ids(clips, model.preprocessor),
            num_samples=3, baseline="mean", xe_weight=0.5, seed=1,
        )
    features = np.random.default_rng(0).normal(size=(4, 3, 4, 5)).astype("float32")
    arrays = ClipArrays(clips, features, np.ones((4, 3), bool), [])
    dataset = caption_dataset(arrays, model.preprocessor, "features", 4, shuffle=False,
                              references=phase == "self_critical")
    before = [ops.convert_to_numpy(v).copy() for v in model.trainable_variables]
    logs = model.fit(distribution.prepare_dataset(dataset, 4), epochs=1, verbose=0).history
    after = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    keras.distribution.set_distribution(None)
    return distribution, before, after, {k: float(v[0]) for k, v in logs.items()}

results = {}
for phase in ("cross_entropy", "self_critical"):
    _, before, one, one_logs = one_step(phase, False)
    distribution, _, two, two_logs = one_step(phase, True)
    results[phase] = {
        "update": max(float(np.max(np.abs(a - b))) for a, b in zip(one, before)),
        "difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
        "one": one_logs, "two": two_logs, "replicas": distribution.num_replicas,
    }
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.slow
@pytest.mark.every_backend
def test_jax_data_parallel_step_equals_one_device():
    if BACKEND != "jax":
        pytest.skip("keras.distribution.DataParallel runs on JAX")
    (code, out, err), = run_together([(
        [sys.executable, "-c", textwrap.dedent(DATA_PARALLEL_SCRIPT)],
        environment(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"),
    )])
    assert code == 0, err[-3000:]
    line = [row for row in out.splitlines() if row.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS"):])
    for phase in ("cross_entropy", "self_critical"):
        result = results[phase]
        assert result["replicas"] == 2
        assert result["update"] > 1e-3, result
        assert result["difference"] < 1e-5, result
        for key, value in result["one"].items():
            np.testing.assert_allclose(result["two"][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    assert results["self_critical"]["one"]["reward"] > 0.0


@pytest.mark.slow
@pytest.mark.every_backend
def test_jax_two_processes_train_through_keras_distribution_initialize(tmp_path):
    if BACKEND != "jax":
        pytest.skip("keras.distribution.initialize runs on JAX")
    from keras_pvc.datasets.procedural import generate_procedural_dataset

    root = str(tmp_path / "data")
    generate_procedural_dataset(root, num_clips=12, num_frames=4, seed=3)
    port, = free_ports(1)
    commands = []
    for index in range(2):
        out = tmp_path / f"run{index}"
        argv = [sys.executable, "-m", "keras_pvc", "train", "--root", root,
                "--out", str(out), "--distribute", "data-parallel", "--epochs", "1",
                "--set", "hidden_dim=8", "--set", "embedding_dim=8", "--set", "graph=null",
                "--set", "batch_size=4", "--set", "caption_length=6",
                "--set", 'frame_cnn={"backbone": "simple", "filters": [4], "normalization": "batch"}']
        commands.append((argv, environment(
            KERAS_BACKEND="jax",
            KERAS_DISTRIBUTION_JOB_ADDRESSES=f"localhost:{port},localhost:{port + 1}",
            KERAS_DISTRIBUTION_NUM_PROCESSES="2",
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
        )))
    results = run_together(commands)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    assert "2 replicas on 2 worker(s); this process is the chief" in results[0][1]
    with open(tmp_path / "run0" / "metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["distribution"]["replicas"] == 2
    assert metrics["distribution"]["workers"] == 2
