import collections
import unicodedata

import keras
import keras_hub
import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# A preprocessed batch's inputs may carry this under a distribution
# strategy: the number of real caption words (summed sample weights) in the
# global batch, on every row (`keras_pvc.training.distribute.with_global_word_count`).
# `VideoCaptioner.compute_loss` divides by it.
GLOBAL_WORDS = "global_words"


def normalize_caption(caption):
    """Lower-cases a caption and turns punctuation into spaces.

    Letters and digits of any script and the apostrophe are kept ("don't",
    "café"); everything else separates words. The TensorFlow path in
    `VideoCaptionerPreprocessor` does the same with RE2's `\\p{L}\\p{N}`.
    """
    if not isinstance(caption, str):
        raise TypeError(
            f"A caption must be a str, got {type(caption).__name__}: {caption!r}"
        )
    kept = [
        char
        if char == "'" or unicodedata.category(char)[0] in "LN"
        else " "
        for char in unicodedata.normalize("NFC", caption.lower())
    ]
    return " ".join("".join(kept).split())


def caption_words(caption):
    """The words of a caption after `normalize_caption`."""
    return normalize_caption(caption).split()


@keras.saving.register_keras_serializable(package="keras_pvc")
class VideoCaptionerPreprocessor(keras_hub.models.Preprocessor):
    """Turns captions into token ids and frames into padded, masked clips.

    A word-level vocabulary (`word2idx`): index 0 is `<pad>`, 1 `<unk>` (any
    word not in the vocabulary), 2 `<bos>`, 3 `<eos>`, then words. Captions
    are lower-cased, stripped of punctuation, truncated to `caption_length`
    words, wrapped in `<bos> ... <eos>` and padded, so a sequence holds
    `caption_length + 2` ids. For `fit`, `call` makes the teacher-forcing
    triple: inputs `token_ids = ids[:-1]` with `padding_mask`, labels
    `ids[1:]` and `sample_weight` 1 on real labels.

    The vocabulary lives in the config, so it is saved with the model (in the
    `.keras` file and in a preset's `preprocessor.json`).

    Args:
        vocabulary: list of str or None. Index = id; must start with
            `<pad>`, `<unk>`, `<bos>`, `<eos>`. Build one with
            `build_vocabulary`.
        caption_length: int. Words per caption, excluding `<bos>`/`<eos>`.
        num_frames: int. Frames per clip; shorter clips are padded and
            masked, longer ones sampled uniformly.
        frame_size: tuple `(height, width)` or None. The size frames are
            resized to when read from video files (for the model's frame CNN,
            or the one that made its cached features).
        **kwargs: Standard layer arguments.

    Call arguments:
        x: dict with `features` or `frames`, optional `frame_mask`, and either
            `caption` (string tensor `(B,)`) or `caption_ids` (int
            `(B, caption_length + 2)`, from `tokenize`). A dict that already
            has `token_ids` passes through unchanged.
        y, sample_weight: must be None when captions are given; they are made
            here.

    Example:
    ```python
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(
        ["a red circle is left of a blue square"])
    preprocessor = VideoCaptionerPreprocessor(vocabulary, caption_length=8)
    preprocessor.tokenize(["A red circle!"])  # [[2, 4, 5, 6, 3, 0, ...]]
    ```
    """

    def __init__(
        self,
        vocabulary=None,
        caption_length=20,
        num_frames=80,
        frame_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.caption_length = caption_length
        self.num_frames = num_frames
        self.frame_size = tuple(frame_size) if frame_size else None
        self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary):
        """Sets the vocabulary (list of str, index = id) or clears it (None)."""
        self._lookup_table = None
        if vocabulary is None:
            self.vocabulary = None
            self.word2idx = {}
            return
        vocabulary = list(vocabulary)
        if tuple(vocabulary[:4]) != SPECIAL_TOKENS:
            raise ValueError(
                f"A vocabulary must start with {list(SPECIAL_TOKENS)}, got "
                f"{vocabulary[:4]}. Build one with "
                "`VideoCaptionerPreprocessor.build_vocabulary(captions)`."
            )
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("The vocabulary has duplicate words.")
        self.vocabulary = vocabulary
        self.word2idx = {word: index for index, word in enumerate(vocabulary)}

    @staticmethod
    def build_vocabulary(captions, min_count=1, max_size=None):
        """A vocabulary from training captions, most frequent words first.

        Args:
            captions: iterable of str.
            min_count: int. Words seen fewer times become `<unk>`.
            max_size: int or None. Cap on the vocabulary size, specials
                included.

        Returns:
            list of str, starting with the four special tokens. Ties in
            frequency are broken alphabetically, so it is deterministic.
        """
        counts = collections.Counter()
        for caption in captions:
            counts.update(caption_words(caption))
        words = sorted(
            (word for word, count in counts.items() if count >= min_count),
            key=lambda word: (-counts[word], word),
        )
        words = [word for word in words if word not in SPECIAL_TOKENS]
        vocabulary = list(SPECIAL_TOKENS) + words
        if max_size is not None:
            vocabulary = vocabulary[:max_size]
        return vocabulary

    @property
    def vocabulary_size(self):
        return len(self.vocabulary) if self.vocabulary else 0

    @property
    def sequence_length(self):
        """Ids per tokenized caption: `caption_length + 2`."""
        return self.caption_length + 2

    def _require_vocabulary(self):
        if not self.vocabulary:
            raise ValueError(
                "This preprocessor has no vocabulary. Pass `vocabulary=` "
                "(see `VideoCaptionerPreprocessor.build_vocabulary`) or load "
                "a trained model's preset folder."
            )

    def tokenize(self, captions):
        """Captions (str or list of str) -> int32 `(B, caption_length + 2)`."""
        self._require_vocabulary()
        single = isinstance(captions, str)
        captions = [captions] if single else list(captions)
        ids = np.zeros((len(captions), self.sequence_length), "int32")
        for row, caption in enumerate(captions):
            words = caption_words(caption)[: self.caption_length]
            tokens = [BOS_ID]
            tokens += [self.word2idx.get(word, UNK_ID) for word in words]
            tokens.append(EOS_ID)
            ids[row, : len(tokens)] = tokens
        return ids[0] if single else ids

    def detokenize(self, token_ids):
        """Ids `(B, L)` -> list of str; stops at `<eos>`, drops specials."""
        self._require_vocabulary()
        token_ids = np.asarray(keras.ops.convert_to_numpy(token_ids))
        single = token_ids.ndim == 1
        rows = token_ids[None] if single else token_ids
        captions = []
        for row in rows:
            words = []
            for token in row:
                token = int(token)
                if token == EOS_ID:
                    break
                if token in (PAD_ID, UNK_ID, BOS_ID):
                    continue
                if 0 <= token < len(self.vocabulary):
                    words.append(self.vocabulary[token])
            captions.append(" ".join(words))
        return captions[0] if single else captions

    def pad_frames(self, frames, frame_mask=None):
        """Pads (or uniformly subsamples) one clip to `num_frames`.

        Args:
            frames: array `(T, ...)` of frames or features.
            frame_mask: bool array `(T,)` or None (all real).

        Returns:
            `(frames (num_frames, ...), frame_mask (num_frames,))`; padding
            frames are zeros with mask False.
        """
        frames = np.asarray(frames)
        if frame_mask is None:
            frame_mask = np.ones(len(frames), bool)
        frame_mask = np.asarray(frame_mask, bool)
        if len(frames) == 0:
            raise ValueError("A clip has no frames.")
        if len(frames) > self.num_frames:
            keep = np.linspace(0, len(frames) - 1, self.num_frames)
            keep = np.round(keep).astype(int)
            return frames[keep], frame_mask[keep]
        padded = np.zeros((self.num_frames,) + frames.shape[1:], frames.dtype)
        padded[: len(frames)] = frames
        mask = np.zeros(self.num_frames, bool)
        mask[: len(frames)] = frame_mask
        return padded, mask

    def lookup_table(self):
        """The vocabulary as a `tf.lookup.StaticHashTable` (word -> id).

        Built once per vocabulary, in eager mode even when first asked for
        inside a `tf.data` or `tf.function` graph (`tf.init_scope`): a table
        made inside the first dataset's graph belongs to that graph, and a
        validation dataset or a second `fit` on a new dataset of raw
        `caption` strings could not use it ("'SymbolicTensor' object has no
        attribute '_datatype_enum'").
        """
        import tensorflow as tf

        self._require_vocabulary()
        if self._lookup_table is None:
            with tf.init_scope():
                self._lookup_table = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(
                        tf.constant(self.vocabulary),
                        tf.range(len(self.vocabulary), dtype=tf.int32),
                    ),
                    default_value=UNK_ID,
                )
        return self._lookup_table

    def _tf_tokenize(self, captions):
        import tensorflow as tf

        table = self.lookup_table()
        captions = tf.strings.lower(captions, encoding="utf-8")
        captions = tf.strings.regex_replace(captions, r"[^\p{L}\p{N}']", " ")
        words = tf.strings.split(captions)[:, : self.caption_length]
        ids = table.lookup(words)
        bos = tf.fill(tf.concat([ids.nrows()[None], [1]], 0), BOS_ID)
        eos = tf.fill(tf.concat([ids.nrows()[None], [1]], 0), EOS_ID)
        ids = tf.concat([bos, ids, eos], axis=1)
        return ids.to_tensor(PAD_ID, shape=[None, self.sequence_length])

    def call(self, x, y=None, sample_weight=None):
        if "token_ids" in x:
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)
        import tensorflow as tf

        self._require_vocabulary()
        x = dict(x)
        if y is not None or sample_weight is not None:
            raise ValueError(
                "VideoCaptionerPreprocessor makes labels from captions; pass "
                "`caption` or `caption_ids` in x and no y/sample_weight."
            )
        if "caption_ids" in x:
            ids = tf.cast(x.pop("caption_ids"), "int32")
        elif "caption" in x:
            ids = self._tf_tokenize(x.pop("caption"))
        else:
            raise ValueError(
                "VideoCaptionerPreprocessor needs `caption` or `caption_ids` "
                f"in its input; got keys {sorted(x)}."
            )
        video = x["features"] if "features" in x else x["frames"]
        if "frame_mask" not in x:
            x["frame_mask"] = tf.ones(tf.shape(video)[:2], "int32")
        x["frame_mask"] = tf.cast(x["frame_mask"], "int32")
        x["token_ids"] = ids[:, :-1]
        x["padding_mask"] = tf.cast(ids[:, :-1] != PAD_ID, "int32")
        labels = ids[:, 1:]
        weights = tf.cast(labels != PAD_ID, "float32")
        return keras.utils.pack_x_y_sample_weight(x, labels, weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.vocabulary,
                "caption_length": self.caption_length,
                "num_frames": self.num_frames,
                "frame_size": list(self.frame_size) if self.frame_size else None,
            }
        )
        return config
