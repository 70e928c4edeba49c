"""Caption rewards scored on the host (BLEU, ROUGE-L, CIDEr-D, mixtures)."""

import keras
import numpy as np
from keras import ops

from keras_pvc.metrics.bleu import corpus_bleu
from keras_pvc.metrics.cider import CiderD
from keras_pvc.metrics.cider import document_frequency as text_document_frequency
from keras_pvc.metrics.rouge import corpus_rouge_l
from keras_pvc.rewards.token_ids import BOS_ID
from keras_pvc.rewards.token_ids import EOS_ID
from keras_pvc.rewards.token_ids import PAD_ID
from keras_pvc.rewards.token_ids import clean_token_ids
from keras_pvc.rewards.token_ids import ids_to_text
from keras_pvc.rewards.token_ids import reference_rows

REWARD_NAMES = ("cider_d", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l")


class HostCaptionReward:
    """A weighted mix of caption metrics, scored in numpy on the host.

    Token ids are detokenised with `vocabulary` (index = id) and scored with
    the coco-caption metrics of `keras_pvc.metrics`: `"cider_d"` (document
    frequencies from the training references), `"bleu_1"`..`"bleu_4"`
    (coco-caption's sentence BLEU) and `"rouge_l"`. The graph waits for
    Python, so prefer `CiderDReward` when the reward is CIDEr-D alone.

    On every backend, inside compiled steps too: a `tf.numpy_function` on
    TensorFlow, a `jax.pure_callback` on JAX, a plain call on PyTorch (which
    runs eagerly).

    Args:
        weights: dict or str. Reward name → weight, e.g.
            `{"cider_d": 1.0, "bleu_4": 0.5}`; a str means weight 1.
        vocabulary: list of str or None. Word of each id; None joins the ids.
        train_reference_ids: training references as token ids (see
            `cider_d_document_frequency`); for `"cider_d"`, or:
        document_frequency: dict with `codes`, `counts`, `num_documents`
            (`cider_d_document_frequency`'s output, as a self-critical config
            stores it) instead of `train_reference_ids`.
        pad_id: int.
        bos_id: int.
        eos_id: int.

    Call arguments: as `CiderDReward`.

    Example:

    >>> reward_fn = HostCaptionReward({"cider_d": 1.0, "bleu_4": 0.5},
    ...     vocabulary=["<pad>", "<unk>", "<bos>", "<eos>", "a", "dog"],
    ...     train_reference_ids=[[[4, 5]], [[5]]])
    >>> reward_fn(tf.constant([[4, 5, 3]]), tf.constant([[[2, 4, 5, 3]]])).shape
    TensorShape([1])
    """

    def __init__(
        self, weights, vocabulary=None, train_reference_ids=None,
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, document_frequency=None,
    ):
        if isinstance(weights, str):
            weights = {weights: 1.0}
        unknown = [name for name in weights if name not in REWARD_NAMES]
        if unknown or not weights:
            raise ValueError(f"Unknown rewards {unknown}; choose from {list(REWARD_NAMES)}.")
        self.weights = {name: float(weight) for name, weight in weights.items()}
        self.vocabulary = None if vocabulary is None else list(vocabulary)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self._cider_d = None
        if "cider_d" in self.weights and document_frequency is not None:
            if self.vocabulary is None:
                raise ValueError("`document_frequency` (n-gram codes) needs the `vocabulary`.")
            frequency = _frequency_of_codes(
                document_frequency["codes"],
                document_frequency["counts"],
                len(self.vocabulary),
                self._word,
            )
            self._cider_d = CiderD(frequency, int(document_frequency["num_documents"]))
        elif "cider_d" in self.weights:
            if train_reference_ids is None:
                raise ValueError('"cider_d" needs train_reference_ids for its document frequencies.')
            train_texts = [
                [self._text(row) for row in reference_rows(clip, pad_id)]
                for clip in train_reference_ids
            ]
            frequency, num_documents = text_document_frequency(train_texts)
            self._cider_d = CiderD(frequency, num_documents)

    def _word(self, token_id):
        return str(token_id) if self.vocabulary is None else self.vocabulary[token_id]

    def _text(self, token_ids):
        words = clean_token_ids(token_ids, self.pad_id, self.bos_id, self.eos_id)
        return ids_to_text(words, self.vocabulary)

    def score_numpy(self, candidate_ids, reference_ids, video_index):
        """The rewards of numpy token ids: float32 array `(num_candidates,)`."""
        candidates = [self._text(row) for row in np.asarray(candidate_ids)]
        references_per_video = [
            [self._text(row) for row in reference_rows(clip, self.pad_id)]
            for clip in np.asarray(reference_ids)
        ]
        references = [references_per_video[index] for index in np.asarray(video_index).tolist()]
        for index, clip_references in zip(np.asarray(video_index).tolist(), references):
            if not clip_references:
                raise ValueError(f"Video {index} of the batch has no reference captions.")
        total = np.zeros(len(candidates), dtype=np.float64)
        bleu = None
        for name, weight in self.weights.items():
            if name == "cider_d":
                total += weight * self._cider_d.score(references, candidates)[1]
            elif name.startswith("bleu"):
                if bleu is None:
                    bleu = corpus_bleu(references, candidates)[1]
                total += weight * bleu[:, int(name[-1]) - 1]
            elif name == "rouge_l":
                total += weight * corpus_rouge_l(references, candidates)[1]
        return total.astype(np.float32)

    def __call__(self, candidate_ids, reference_ids, video_index=None):
        candidate_ids = ops.convert_to_tensor(candidate_ids)
        reference_ids = ops.convert_to_tensor(reference_ids)
        if len(candidate_ids.shape) != 2 or len(reference_ids.shape) != 3:
            raise ValueError(
                "candidate_ids must be (num_candidates, length) and reference_ids "
                f"(batch, max_refs, length); got {candidate_ids.shape} and {reference_ids.shape}."
            )
        if video_index is None:
            batch_size = ops.shape(reference_ids)[0]
            video_index = ops.repeat(
                ops.arange(batch_size), ops.shape(candidate_ids)[0] // batch_size
            )
        video_index = ops.cast(video_index, "int32")
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            rewards = tf.numpy_function(
                self.score_numpy,
                [candidate_ids, reference_ids, video_index],
                tf.float32,
                stateful=False,
            )
            rewards.set_shape(candidate_ids.shape[:1])
            return rewards
        if backend == "jax":
            import jax

            shape = jax.ShapeDtypeStruct(candidate_ids.shape[:1], "float32")
            return jax.pure_callback(
                self.score_numpy, shape, candidate_ids, reference_ids, video_index
            )
        return ops.convert_to_tensor(
            self.score_numpy(
                ops.convert_to_numpy(candidate_ids),
                ops.convert_to_numpy(reference_ids),
                ops.convert_to_numpy(video_index),
            )
        )


def _frequency_of_codes(codes, counts, vocabulary_size, word):
    """n-gram codes (base-V numbers of ids >= 1) -> {word tuple: count}.

    A code's digits are its n-gram's ids, most significant first; no id is 0
    (`<pad>`), so the number of digits is the order.
    """
    frequency = {}
    for code, count in zip(np.asarray(codes).tolist(), np.asarray(counts).tolist()):
        ids = []
        while code > 0:
            code, token_id = divmod(code, vocabulary_size)
            ids.append(token_id)
        frequency[tuple(word(token_id) for token_id in reversed(ids))] = int(count)
    return frequency
