"""Caption rewards scored on the host (BLEU, ROUGE-L, CIDEr-D, mixtures)."""

import numpy as np
import tensorflow as tf

from keras_pvc.metrics.bleu import corpus_bleu
from keras_pvc.metrics.cider import CiderD
from keras_pvc.metrics.cider import document_frequency
from keras_pvc.metrics.rouge import corpus_rouge_l
from keras_pvc.rewards.token_ids import BOS_ID
from keras_pvc.rewards.token_ids import EOS_ID
from keras_pvc.rewards.token_ids import PAD_ID
from keras_pvc.rewards.token_ids import clean_token_ids
from keras_pvc.rewards.token_ids import ids_to_text
from keras_pvc.rewards.token_ids import reference_rows

REWARD_NAMES = ("cider_d", "bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l")


class HostCaptionReward:
    """A weighted mix of caption metrics, scored in numpy via `tf.numpy_function`.

    Token ids are detokenised with `vocabulary` (index = id) and scored with
    the coco-caption metrics of `keras_pvc.metrics`: `"cider_d"` (document
    frequencies from the training references), `"bleu_1"`..`"bleu_4"`
    (coco-caption's sentence BLEU) and `"rouge_l"`. The graph waits for
    Python, so prefer `CiderDReward` when the reward is CIDEr-D alone.

    Args:
        weights: dict or str. Reward name → weight, e.g.
            `{"cider_d": 1.0, "bleu_4": 0.5}`; a str means weight 1.
        vocabulary: list of str or None. Word of each id; None joins the ids.
        train_reference_ids: training references as token ids (see
            `cider_d_document_frequency`); needed for `"cider_d"`.
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
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID,
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
        if "cider_d" in self.weights:
            if train_reference_ids is None:
                raise ValueError('"cider_d" needs train_reference_ids for its document frequencies.')
            train_texts = [
                [self._text(row) for row in reference_rows(clip, pad_id)]
                for clip in train_reference_ids
            ]
            frequency, num_documents = document_frequency(train_texts)
            self._cider_d = CiderD(frequency, num_documents)

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
        candidate_ids = tf.convert_to_tensor(candidate_ids)
        reference_ids = tf.convert_to_tensor(reference_ids)
        if candidate_ids.shape.rank != 2 or reference_ids.shape.rank != 3:
            raise ValueError(
                "candidate_ids must be (num_candidates, length) and reference_ids "
                f"(batch, max_refs, length); got {candidate_ids.shape} and {reference_ids.shape}."
            )
        if video_index is None:
            batch_size = tf.shape(reference_ids)[0]
            video_index = tf.repeat(
                tf.range(batch_size), tf.shape(candidate_ids)[0] // batch_size
            )
        rewards = tf.numpy_function(
            self.score_numpy,
            [candidate_ids, reference_ids, tf.cast(video_index, tf.int32)],
            tf.float32,
            stateful=False,
        )
        rewards.set_shape(candidate_ids.shape[:1])
        return rewards
