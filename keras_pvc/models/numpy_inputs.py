"""`VideoCaptioner.fit` on a dict of numpy arrays: shuffled batches.

With the model (tier 2) because its `fit` calls it; the data tier's
pipelines (`keras_pvc.datasets.pipeline`) build their own `tf.data` datasets.
"""


def shuffled_numpy_dataset(inputs, batch_size=None, seed=None):
    """A `tf.data.Dataset` over a dict of arrays, reshuffled every epoch.

    `VideoCaptioner.fit` on a dict of numpy arrays goes through this:
    keras-hub turns such a dict into a `tf.data.Dataset` without shuffling
    (and Keras then ignores `shuffle=True` with a warning), so the examples
    are shuffled here, before batching.

    Args:
        inputs: dict of arrays (or lists) with one row per example, e.g.
            `{"features": (N, T, ...), "frame_mask": (N, T), "caption": [N str]}`.
        batch_size: int or None (32, `fit`'s default).
        seed: int or None. None follows the global seed
            (`keras.utils.set_random_seed`).

    Raises:
        ValueError: the arrays do not all have the same number of rows.
    """
    import tensorflow as tf

    lengths = {key: len(value) for key, value in inputs.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"The inputs' arrays must have one row per example; got lengths {lengths}."
        )
    count = next(iter(lengths.values()))
    dataset = tf.data.Dataset.from_tensor_slices(dict(inputs))
    dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size or 32)
