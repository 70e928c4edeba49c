"""Caption rewards for self-critical training: CIDEr-D in keras.ops and host mixtures."""

from keras_pvc.rewards.cider_d_reward import CiderDReward
from keras_pvc.rewards.cider_d_reward import cider_d_document_frequency
from keras_pvc.rewards.host_reward import REWARD_NAMES
from keras_pvc.rewards.host_reward import HostCaptionReward
from keras_pvc.rewards.token_ids import clean_token_ids
from keras_pvc.rewards.token_ids import ids_to_text


def build_reward(reward, train_reference_ids, vocabulary_size, vocabulary=None, **kwargs):
    """Builds the reward function a self-critical `train_step` calls.

    CIDEr-D alone runs in `keras.ops` on every backend (`CiderDReward`,
    scaled by its weight); any other name or mix runs on the host
    (`HostCaptionReward`: a `tf.numpy_function` on TensorFlow, a
    `jax.pure_callback` on JAX, a plain call on PyTorch).

    Args:
        reward: str or dict. `"cider_d"`, or weights such as
            `{"cider_d": 1.0, "bleu_4": 0.5}`.
        train_reference_ids: training references as token ids.
        vocabulary_size: int.
        vocabulary: list of str or None. Needed for readable host rewards.
        **kwargs: `pad_id`, `bos_id`, `eos_id`.

    Returns:
        A callable `(candidate_ids, reference_ids, video_index=None) -> rewards`.

    Example:

    >>> reward_fn = build_reward("cider_d", [[[4, 5, 3]], [[6, 3]]], vocabulary_size=8)
    """
    weights = {reward: 1.0} if isinstance(reward, str) else dict(reward)
    if set(weights) == {"cider_d"}:
        scale = float(weights["cider_d"])
        in_graph = CiderDReward.from_references(train_reference_ids, vocabulary_size, **kwargs)
        if scale == 1.0:
            return in_graph
        return lambda *args, **call_kwargs: scale * in_graph(*args, **call_kwargs)
    return HostCaptionReward(weights, vocabulary, train_reference_ids, **kwargs)


__all__ = [
    "REWARD_NAMES",
    "CiderDReward",
    "HostCaptionReward",
    "build_reward",
    "cider_d_document_frequency",
    "clean_token_ids",
    "ids_to_text",
]
