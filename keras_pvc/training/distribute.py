"""Training past one device with the backends' own engines.

`keras-pvc train --distribute NAME` and `train_run(..., distribute=NAME)`
pick one of:

| name | backend | engine |
|---|---|---|
| `mirrored` | TensorFlow | `tf.distribute.MirroredStrategy`: the devices of one host |
| `multi-worker` | TensorFlow | `tf.distribute.MultiWorkerMirroredStrategy`: hosts named by `TF_CONFIG` |
| `data-parallel` | JAX | `keras.distribution.DataParallel` over all devices; several processes through `keras.distribution.initialize` (`KERAS_DISTRIBUTION_*` variables) |

PyTorch: Keras 3.15 has no distribution for `fit` on torch (no
`keras.distribution` backend, no `tf.distribute`), so none is offered.

The batch size is the global batch: every replica takes its share. Losses
are normalised over the global batch's words, so N replicas make one
device's update: JAX's global-view steps see the whole batch; on TensorFlow
`prepare_dataset` preprocesses each global batch and adds its word count
(`global_words`), which `VideoCaptioner.compute_loss` divides by (no
collective in the loss), and the self-critical loss sums its samples' words
over the replicas. With several workers only the chief writes the
run folder; the others write to `workertemp_<index>` inside it, removed at
the end, as TensorFlow's multi-worker guide does. See docs/distributed.md.
"""

import contextlib
import json
import os
import shutil

import keras

STRATEGIES = {
    "tensorflow": ("mirrored", "multi-worker"),
    "jax": ("data-parallel",),
    "torch": (),
}
ALL_STRATEGIES = ("mirrored", "multi-worker", "data-parallel")
ENGINES = {
    "mirrored": "tf.distribute.MirroredStrategy",
    "multi-worker": "tf.distribute.MultiWorkerMirroredStrategy",
    "data-parallel": "keras.distribution.DataParallel",
}


class Distribution:
    """A chosen strategy and this process's place in it.

    Build it with `setup_distribution(name)`, as early as the program can
    (TensorFlow's collectives and JAX's processes must be set up before
    the first tensor).

    Attributes:
        name: str or None. `"mirrored"`, `"multi-worker"`,
            `"data-parallel"`, or None (one device).
        strategy: the `tf.distribute.Strategy` (TensorFlow) or None.
        num_replicas: int. Replicas over all workers.
        num_workers: int. Hosts (TensorFlow) or processes (JAX).
        worker_index: int. This worker's index (the chief's is 0).
    """

    def __init__(self, name=None, strategy=None, num_replicas=1, num_workers=1, worker_index=0):
        self.name = name
        self.strategy = strategy
        self.num_replicas = int(num_replicas)
        self.num_workers = int(num_workers)
        self.worker_index = int(worker_index)

    @property
    def is_chief(self):
        """True for the worker that writes the run folder."""
        return self.worker_index == 0

    def scope(self):
        """Where the model (its variables) must be built."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()

    def prepare_dataset(self, dataset, batch_size=None, training=True, preprocessor=None):
        """`dataset` (batched at the global `batch_size`) ready for `fit`.

        With a `preprocessor` (the model's), a TensorFlow strategy's
        batches are preprocessed here, on the whole global batch, and carry
        its word count (`with_global_word_count`), so cross-entropy is the
        global batch's mean; without one it is Keras' mean of the
        replicas' means.

        Keras splits each global batch between replicas (and between
        processes). An epoch's last, short batch is dropped
        (`Dataset.rebatch(batch_size, drop_remainder=True)`, which keeps the
        batch size visible to Keras' per-process sharding): split, it
        could leave a replica no rows (a BatchNorm over an empty batch
        fails), and JAX's `DataParallel` refuses a batch that does not
        split evenly between devices. Under `MultiWorkerMirroredStrategy`
        each worker keeps its share of every global batch
        (`AutoShardPolicy.DATA`: the pipelines are built in memory, not
        from files). Validation data (`training=False`) keeps its short
        batch on TensorFlow (no BatchNorm statistics are computed from it).
        """
        if dataset is None or self.name is None:
            return dataset
        import tensorflow as tf

        if batch_size is None:
            raise ValueError("`prepare_dataset` needs the global `batch_size`.")
        if self.name == "data-parallel" and batch_size % self.num_replicas:
            raise ValueError(
                f"--distribute data-parallel splits each batch between "
                f"{self.num_replicas} devices: the batch size ({batch_size}) "
                f"must be a multiple of {self.num_replicas} (--batch-size)."
            )
        if training or self.name == "data-parallel":
            dataset = dataset.rebatch(batch_size, drop_remainder=True)
        if preprocessor is not None and self.name in STRATEGIES["tensorflow"]:
            dataset = with_global_word_count(dataset.map(preprocessor))
        if self.name != "multi-worker":
            return dataset
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        return dataset.with_options(options)

    def write_folder(self, out, resume=False):
        """The folder this worker writes: `out` for the chief, else
        `out/workertemp_<index>` (holding a copy of the chief's backups
        and history when resuming, so every worker restores the same epoch:
        the run folder must be on storage all workers see)."""
        if self.is_chief:
            return out
        folder = os.path.join(out, f"workertemp_{self.worker_index}")
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        if resume and os.path.isdir(out):
            for name in os.listdir(out):
                source = os.path.join(out, name)
                if name.startswith("backup") and os.path.isdir(source):
                    shutil.copytree(source, os.path.join(folder, name))
                elif name in ("history.csv", "best.weights.h5"):
                    shutil.copyfile(source, os.path.join(folder, name))
        return folder

    def finish(self, folder):
        """Removes a non-chief worker's temporary folder."""
        if not self.is_chief and os.path.basename(folder).startswith("workertemp_"):
            shutil.rmtree(folder, ignore_errors=True)

    def describe(self):
        """One line for the log."""
        if self.name is None:
            return "one device"
        role = "chief" if self.is_chief else f"worker {self.worker_index}"
        return (
            f"{self.name} ({self.engine}): {self.num_replicas} replicas on "
            f"{self.num_workers} worker(s); this process is the {role}"
        )

    @property
    def engine(self):
        return ENGINES.get(self.name)

    def record(self):
        """What `metrics.json["distribution"]` holds."""
        return {
            "strategy": self.name,
            "engine": self.engine,
            "replicas": self.num_replicas,
            "workers": self.num_workers,
        }


def unsupported_message(name, backend):
    """Why `name` cannot run on `backend`, and what can."""
    offered = STRATEGIES.get(backend, ())
    if not offered:
        return (
            f"--distribute {name}: the {backend!r} backend has no distributed "
            "`fit` in Keras 3.15 (keras.distribution supports JAX only, "
            "tf.distribute TensorFlow only). Use KERAS_BACKEND=tensorflow "
            "(mirrored, multi-worker) or KERAS_BACKEND=jax (data-parallel); "
            "see docs/distributed.md."
        )
    others = [f"{b}: {', '.join(s)}" for b, s in STRATEGIES.items() if s and b != backend]
    return (
        f"--distribute {name} is not available on the {backend!r} backend, "
        f"which offers {', '.join(offered)} (other backends: {'; '.join(others)}); "
        "see docs/distributed.md."
    )


def setup_distribution(name, backend=None):
    """Sets up a strategy by name; returns a `Distribution`.

    Args:
        name: str or None. `"mirrored"`, `"multi-worker"` (TensorFlow),
            `"data-parallel"` (JAX), or None (no distribution).
        backend: str. Defaults to `keras.backend.backend()`.

    Raises:
        ValueError: the name is unknown or the backend lacks it (the
            message names the backend and the alternatives).
    """
    backend = backend or keras.backend.backend()
    if name is None:
        return Distribution()
    if name not in ALL_STRATEGIES:
        raise ValueError(
            f"Unknown distribution strategy {name!r}: use one of {ALL_STRATEGIES}."
        )
    if name not in STRATEGIES.get(backend, ()):
        raise ValueError(unsupported_message(name, backend))
    if name == "data-parallel":
        return _jax_data_parallel()
    return _tensorflow_strategy(name)


def _tensorflow_strategy(name):
    import tensorflow as tf

    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        return Distribution(name, strategy, strategy.num_replicas_in_sync)
    if "TF_CONFIG" not in os.environ:
        raise ValueError(
            "--distribute multi-worker needs the cluster in the TF_CONFIG "
            "environment variable, e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
            "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", "
            "\"index\": 0}}' (see docs/distributed.md)."
        )
    try:
        config = json.loads(os.environ["TF_CONFIG"])
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}).") from None
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy could not start ({error}). It must be "
            "created before any TensorFlow tensor: call "
            "`keras_pvc.training.distribute.setup_distribution('multi-worker')` first "
            "and pass it to `train_run(distribute=...)`."
        ) from error
    resolver = strategy.cluster_resolver
    cluster = config.get("cluster", {})
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return Distribution(
        name,
        strategy,
        strategy.num_replicas_in_sync,
        num_workers=max(workers, 1),
        worker_index=_tensorflow_worker_index(resolver.task_type, resolver.task_id, cluster),
    )


def _tensorflow_worker_index(task_type, task_id, cluster):
    """0 for the chief (the `chief` task, or worker 0 when there is none),
    as in TensorFlow's multi-worker guide; others count from 1."""
    if task_type is None or task_type == "chief":
        return 0
    offset = 1 if cluster.get("chief") else 0
    return int(task_id) + offset


def _jax_data_parallel():
    """`keras.distribution.DataParallel` over every device of every process.

    With `KERAS_DISTRIBUTION_JOB_ADDRESSES` / `_NUM_PROCESSES` /
    `_PROCESS_ID` set, `keras.distribution.initialize()` joins the
    processes first (it must run before JAX computes anything).
    """
    num_processes = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1)
    if num_processes > 1:
        keras.distribution.initialize()
    import jax

    distribution = keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()
    )
    keras.distribution.set_distribution(distribution)
    return Distribution(
        "data-parallel",
        num_replicas=jax.device_count(),
        num_workers=jax.process_count(),
        worker_index=jax.process_index(),
    )


def with_global_word_count(dataset):
    """Adds `global_words` to each batch of preprocessed `(x, y, weights)`.

    The count is the sum of the batch's sample weights (1 on each real
    caption word), taken before a strategy splits the batch between
    replicas, and repeated for every row: `VideoCaptioner.compute_loss`
    divides each replica's summed word losses by it, so the replicas'
    summed gradients are the global batch's mean, however its words fall
    between replicas.
    """
    import tensorflow as tf

    from keras_pvc.models.video_captioner_preprocessor import GLOBAL_WORDS

    def add(x, y, weights):
        x = dict(x)
        rows = tf.shape(y)[0]
        x[GLOBAL_WORDS] = tf.fill([rows], tf.reduce_sum(tf.cast(weights, tf.float32)))
        return x, y, weights

    return dataset.map(add)
