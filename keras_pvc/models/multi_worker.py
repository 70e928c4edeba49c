"""Two Keras 3.15 TensorFlow-trainer workarounds `VideoCaptioner` applies
under `tf.distribute` (multi-worker training: `keras_pvc.training.distribute`).

They live with the model (tier 2) because its `train_step`/`test_step` and
`_maybe_symbolic_build` call them; the strategies themselves are set up by
the training tier.
"""

import keras


def symbolic_build_batch(strategy, iterator):
    """The first batch of a distributed iterator, one replica's part of it.

    Works around Keras 3.15's TensorFlow trainer
    (`TensorFlowTrainer._maybe_symbolic_build`), which mean-reduces the
    first distributed batch with `strategy.reduce` to build the model:
    under `MultiWorkerMirroredStrategy` that fails on a dict of inputs
    ("Attempt to convert a value ({'features': PerReplica:{...}, ...}) with
    an unsupported type (<class 'dict'>) to a Tensor"; keras-team/keras
    issue 20329), and it would average integer ids and masks. The build
    needs shapes and dtypes only: the first local replica's tensors give
    them.
    """
    import tensorflow as tf

    for _, _, batches in iterator:
        batch = next(batches)
        break
    else:
        return None

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(local, batch)


def multi_worker_logs(logs):
    """A step's logs, each given a leading axis under multi-worker training.

    Works around Keras 3.15's TensorFlow trainer, which reduces a step's
    logs across workers with `strategy.reduce("MEAN", value, axis=0)`
    (`reduce_per_replica`, whatever `distribute_reduction_method` says):
    on a scalar, which every metric result is, that fails with "Invalid
    reduction dimension 0 for input with 0 dimensions". Shaped `(1,)`, the
    reduction is the mean over replicas, a scalar again. Elsewhere the logs
    are returned as they are.
    """
    if keras.backend.backend() != "tensorflow":
        return logs
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    # Keras' own test for the multi-worker branch of `reduce_per_replica`.
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    ):
        return logs
    return {key: tf.reshape(value, (1,)) for key, value in logs.items()}
