import keras
from keras import ops

from keras_pvc.layers.fast_lstm import lstm_layer
from keras_pvc.layers.fast_lstm import resolve_lstm_implementation


@keras.saving.register_keras_serializable(package="keras_pvc")
class TemporalLSTMEncoder(keras.layers.Layer):
    """An LSTM over the frames of a video that honours a frame mask.

    Frames whose `frame_mask` is False (padding of clips shorter than
    `num_frames`) are skipped: the state is carried over them, their outputs
    are zeros, and the final state is the state after the last real frame.
    Inputs are first projected to `hidden_dim` (with dropout), which also lets
    4096-d pooled features and 1280-d region features share one encoder.

    The LSTMs are `FastLSTM`s: the weights and numbers of
    `keras.layers.LSTM`, with every frame's input projection done in one
    matmul before the recurrence and a hand-written backward pass (on a
    2-core CPU, forward+backward about 2x faster than `keras.layers.LSTM`).

    Args:
        hidden_dim: int. LSTM units.
        num_layers: int. Stacked LSTMs.
        dropout: float. Dropout on the projected inputs and between layers.
        input_projection: bool. Project inputs to `hidden_dim` first.
        lstm_implementation: str. `"auto"` (a `keras.layers.LSTM`, cuDNN's
            fused kernel, where TensorFlow or torch sees a GPU; a
            `FastLSTM` elsewhere), `"fast"` or `"keras"`. Same weights
            layout either way, so weights move between devices.
        **kwargs: Standard layer arguments.

    Call arguments:
        features: float tensor `(B, T, D)`.
        frame_mask: bool tensor `(B, T)` or None (all frames real).
        training: bool.

    Returns:
        A tuple `(sequence, final_hidden, final_cell)`: `(B, T, hidden_dim)`,
        `(B, hidden_dim)`, `(B, hidden_dim)` — the final state of the top
        layer, ready to start a `CaptionDecoder`.

    Example:
    ```python
    features = np.random.rand(2, 8, 32).astype("float32")
    frame_mask = np.array([[True] * 8, [True] * 5 + [False] * 3])
    encoder = keras_pvc.layers.TemporalLSTMEncoder(16)
    sequence, hidden, cell = encoder(features, frame_mask)
    sequence.shape, hidden.shape  # (2, 8, 16), (2, 16)
    ```
    """

    def __init__(
        self,
        hidden_dim,
        num_layers=1,
        dropout=0.0,
        input_projection=True,
        lstm_implementation="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        resolve_lstm_implementation(lstm_implementation)  # checks the name
        self.lstm_implementation = lstm_implementation
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.input_projection = input_projection
        self.projection = None
        if input_projection:
            self.projection = keras.layers.Dense(
                hidden_dim,
                activation="tanh",
                name="input_projection",
                dtype=self.dtype_policy,
            )
        self.input_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy
        )
        self.lstm_layers = [
            lstm_layer(
                hidden_dim,
                implementation=lstm_implementation,
                return_sequences=True,
                return_state=True,
                dropout=dropout if index > 0 else 0.0,
                zero_output_for_mask=True,
                name=f"lstm_{index}",
                dtype=self.dtype_policy,
            )
            for index in range(num_layers)
        ]

    def build(self, features_shape, frame_mask_shape=None):
        shape = tuple(features_shape)
        if self.projection is not None:
            self.projection.build(shape)
            shape = shape[:-1] + (self.hidden_dim,)
        for lstm in self.lstm_layers:
            lstm.build(shape)
            shape = shape[:-1] + (self.hidden_dim,)

    def call(self, features, frame_mask=None, training=None):
        sequence = features
        if self.projection is not None:
            sequence = self.projection(sequence)
        sequence = self.input_dropout(sequence, training=training)
        if frame_mask is not None:
            frame_mask = ops.cast(frame_mask, "bool")
        hidden = cell = None
        for lstm in self.lstm_layers:
            sequence, hidden, cell = lstm(
                sequence, mask=frame_mask, training=training
            )
        # `zero_output_for_mask=True`: padded frames' outputs are zeros.
        return sequence, hidden, cell

    def compute_output_shape(self, features_shape, frame_mask_shape=None):
        batch_size, num_frames = features_shape[0], features_shape[1]
        return (
            (batch_size, num_frames, self.hidden_dim),
            (batch_size, self.hidden_dim),
            (batch_size, self.hidden_dim),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "dropout": self.dropout,
                "input_projection": self.input_projection,
                "lstm_implementation": self.lstm_implementation,
            }
        )
        return config
