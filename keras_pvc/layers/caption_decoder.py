import keras
from keras import ops

from keras_pvc.layers.fast_lstm import lstm_layer
from keras_pvc.layers.fast_lstm import resolve_lstm_implementation


@keras.saving.register_keras_serializable(package="keras_pvc")
class CaptionDecoder(keras.layers.Layer):
    """An LSTM language model over caption words that attends to the video.

    Luong-style: the LSTM reads the previous word, then its state attends over
    the encoder's frame states (masked by `frame_mask`) and
    `tanh(W [h; context])` predicts the next word. Because attention follows
    the recurrence, teacher forcing runs the LSTM over the whole caption at
    once (a `FastLSTM`: all words' input projections in one matmul); `step()`
    does one word from a cached state with its `cell`, the `next()` a
    `keras_hub.samplers` sampler needs.

    The decoder starts from the encoder's final state (projected when sizes
    differ). With `attention=False` it is the plain encoder-decoder of S2VT-
    style models.

    Args:
        vocabulary_size: int. Output classes, including special tokens.
        embedding_dim: int. Word embedding size.
        hidden_dim: int. LSTM units.
        attention: bool. Attend over the encoder states.
        dropout: float. Dropout on embeddings and before the output layer.
        lstm_implementation: str. `"auto"` (a `keras.layers.LSTM`, cuDNN's
            fused kernel, where TensorFlow or torch sees a GPU; a
            `FastLSTM` elsewhere), `"fast"` or `"keras"`. Same weights
            layout either way, so weights move between devices.
        **kwargs: Standard layer arguments.

    Call arguments:
        token_ids: int tensor `(B, L)`, the caption shifted right (`<bos>`
            first).
        encoder_sequence: float tensor `(B, T, H_enc)`.
        encoder_mask: bool tensor `(B, T)` or None.
        initial_state: tuple `(hidden, cell)` of `(B, H_enc)` tensors.
        return_attention: bool. Also return attention weights `(B, L, T)`.
        training: bool.

    Example:
    ```python
    decoder = keras_pvc.layers.CaptionDecoder(10, embedding_dim=8, hidden_dim=8)
    encoded = np.random.rand(2, 3, 8).astype("float32")
    state = (encoded[:, -1], encoded[:, -1])
    token_ids = np.array([[2, 5, 6], [2, 7, 0]])
    decoder(token_ids, encoded, initial_state=state).shape  # (2, 3, 10)
    ```

    Reference:
    - [Luong et al., 2015](https://arxiv.org/abs/1508.04025)
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=256,
        hidden_dim=512,
        attention=True,
        dropout=0.0,
        lstm_implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        resolve_lstm_implementation(lstm_implementation)  # checks the name
        self.lstm_implementation = lstm_implementation
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.attention = attention
        self.dropout = dropout
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            name="token_embedding",
            dtype=self.dtype_policy,
        )
        self.lstm = lstm_layer(
            hidden_dim,
            implementation=lstm_implementation,
            return_sequences=True,
            return_state=True,
            name="lstm",
            dtype=self.dtype_policy,
        )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy
        )
        self.output_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy
        )
        self.output_dense = keras.layers.Dense(
            vocabulary_size, name="output_dense", dtype=self.dtype_policy
        )

    def build(
        self,
        token_ids_shape,
        encoder_sequence_shape=None,
        encoder_mask_shape=None,
        initial_state_shape=None,
    ):
        encoder_dim = (
            encoder_sequence_shape[-1] if encoder_sequence_shape else None
        )
        self.token_embedding.build(token_ids_shape)
        self.lstm.build((None, None, self.embedding_dim))
        self.hidden_projection = self.cell_projection = None
        if encoder_dim is not None and encoder_dim != self.hidden_dim:
            self.hidden_projection = keras.layers.Dense(
                self.hidden_dim, name="hidden_projection", dtype=self.dtype_policy
            )
            self.cell_projection = keras.layers.Dense(
                self.hidden_dim, name="cell_projection", dtype=self.dtype_policy
            )
            self.hidden_projection.build((None, encoder_dim))
            self.cell_projection.build((None, encoder_dim))
        output_input_dim = self.hidden_dim
        if self.attention:
            self.attention_dense = keras.layers.Dense(
                encoder_dim or self.hidden_dim,
                use_bias=False,
                name="attention_dense",
                dtype=self.dtype_policy,
            )
            self.attention_dense.build((None, self.hidden_dim))
            self.combine_dense = keras.layers.Dense(
                self.hidden_dim,
                activation="tanh",
                name="combine_dense",
                dtype=self.dtype_policy,
            )
            self.combine_dense.build(
                (None, self.hidden_dim + (encoder_dim or self.hidden_dim))
            )
        self.output_dense.build((None, output_input_dim))

    def start_state(self, hidden, cell):
        """Maps the encoder's final state to the decoder's initial state."""
        if self.hidden_projection is not None:
            hidden = ops.tanh(self.hidden_projection(hidden))
            cell = self.cell_projection(cell)
        return hidden, cell

    def attend(self, hidden, encoder_sequence, encoder_mask=None):
        """Context vectors and weights for decoder states `(B, L, H)`."""
        query = self.attention_dense(hidden)
        scores = ops.matmul(query, ops.swapaxes(encoder_sequence, 1, 2))
        if encoder_mask is not None:
            mask = ops.expand_dims(ops.cast(encoder_mask, "bool"), 1)
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=-1)
        return ops.matmul(weights, encoder_sequence), weights

    def _project_output(self, hidden, encoder_sequence, encoder_mask, training):
        weights = None
        if self.attention:
            context, weights = self.attend(hidden, encoder_sequence, encoder_mask)
            hidden = self.combine_dense(ops.concatenate([hidden, context], -1))
        hidden = self.output_dropout(hidden, training=training)
        return self.output_dense(hidden), weights

    def call(
        self,
        token_ids,
        encoder_sequence,
        encoder_mask=None,
        initial_state=None,
        return_attention=False,
        training=None,
    ):
        embedded = self.embedding_dropout(
            self.token_embedding(token_ids), training=training
        )
        if initial_state is not None:
            initial_state = list(self.start_state(*initial_state))
        hidden, _, _ = self.lstm(
            embedded, initial_state=initial_state, training=training
        )
        logits, weights = self._project_output(
            hidden, encoder_sequence, encoder_mask, training
        )
        if return_attention:
            return logits, weights
        return logits

    def initial_cache(self, encoder_sequence, encoder_mask, hidden, cell):
        """The cache `step()` starts from: `(hidden, cell, sequence, mask)`."""
        hidden, cell = self.start_state(hidden, cell)
        if encoder_mask is None:
            encoder_mask = ops.ones(ops.shape(encoder_sequence)[:2], "bool")
        return (
            hidden,
            cell,
            encoder_sequence,
            ops.cast(encoder_mask, encoder_sequence.dtype),
        )

    def step(self, token_ids, cache):
        """One word: `token_ids (B,)` and a cache -> `(logits (B, V), cache)`."""
        hidden, cell, encoder_sequence, encoder_mask = cache
        embedded = self.token_embedding(token_ids)
        hidden, (hidden, cell) = self.lstm.cell(embedded, [hidden, cell])
        logits, _ = self._project_output(
            ops.expand_dims(hidden, 1),
            encoder_sequence,
            ops.cast(encoder_mask, "bool"),
            training=False,
        )
        return ops.squeeze(logits, 1), (hidden, cell, encoder_sequence, encoder_mask)

    def compute_output_shape(self, token_ids_shape, *args, **kwargs):
        return tuple(token_ids_shape) + (self.vocabulary_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim,
                "attention": self.attention,
                "dropout": self.dropout,
                "lstm_implementation": self.lstm_implementation,
            }
        )
        return config
