import keras
from keras import ops

LOOPS = ("scan", "while_loop")
# TensorFlow may overlap this many loop iterations (their TensorArray reads
# and writes); 32 as keras' own RNN loop. With TF's autodiff through the loop
# it helped (fwd+bwd at B=20, T=80, U=1000 on 2 shared cores: 1.57 s with 1,
# 1.21 s with 32); with the hand-written backward it makes no clear difference.
PARALLEL_ITERATIONS = 32


def _scan_unroll():
    # `keras.ops.scan(unroll=n)` is `parallel_iterations=n` on TensorFlow but
    # a real n-fold unroll elsewhere (JAX), which only costs compile time.
    return PARALLEL_ITERATIONS if keras.backend.backend() == "tensorflow" else 1


@keras.saving.register_keras_serializable(package="keras_pvc")
class FastLSTM(keras.layers.Layer):
    """An LSTM that projects every timestep's input in one matmul.

    A drop-in for `keras.layers.LSTM` on CPUs (where Keras has no cuDNN
    path): same weights, same numbers. `keras.layers.LSTM` multiplies each
    timestep's input by the kernel inside its loop, `T` small `(B, D) x
    (D, 4U)` matmuls; this layer does `(B*T, D) x (D, 4U)` once, outside the
    loop, and keeps only `h @ recurrent_kernel` and the gates in the loop.
    The loop stays in the graph (a `tf.while_loop` on TensorFlow,
    `keras.ops.scan` elsewhere), so there is no Python per timestep. Its
    backward pass is written by hand (BPTT, see
    `_recurrence_with_bptt`): a reverse scan for the gate gradients, then the
    recurrent kernel's gradient as one matmul over all timesteps, instead of
    automatic differentiation through the loop (about 1.8x faster fwd+bwd).
    `loop="while_loop"` (TensorFlow only) keeps the batched input projection
    but runs a plain `tf.while_loop` differentiated by TensorFlow, for
    comparison.

    The weights live in `self.cell`, a `keras.layers.LSTMCell` named
    `lstm_cell`, exactly where `keras.layers.LSTM` keeps them: `kernel
    (D, 4U)`, `recurrent_kernel (U, 4U)`, `bias (4U,)`, gates in the order
    i, f, c, o, tanh and sigmoid activations, `unit_forget_bias`. Weights
    and weight files copy across both ways, and `cell(x, [h, c])` is the
    one-step function samplers need.

    With a mask, masked steps carry the state over unchanged; their outputs
    are zeros with `zero_output_for_mask=True` (the default here) or the
    last real output with `False` (the default of `keras.layers.LSTM`); both
    match `keras.layers.LSTM` given the same flag. A mask that masks nothing
    runs the cheaper unmasked loop (with `zero_output_for_mask=True`).

    Args:
        units: int. Hidden units `U`.
        return_sequences: bool. Return all outputs `(B, T, U)`, not only
            the last `(B, U)`.
        return_state: bool. Also return the final `hidden, cell` states.
        dropout: float. Dropout on the inputs, one mask for all timesteps
            (as `keras.layers.LSTM`).
        zero_output_for_mask: bool. Zeros as outputs of masked steps.
        use_bias: bool.
        unit_forget_bias: bool. Forget-gate bias initialised to 1.
        kernel_initializer: initializer for `kernel`.
        recurrent_initializer: initializer for `recurrent_kernel`.
        bias_initializer: initializer for `bias`.
        seed: int or None. Dropout seed.
        loop: str. `"scan"` (the hand-written backward pass, looped by
            `_scan`; TensorFlow, JAX and PyTorch) or
            `"while_loop"` (a plain `tf.while_loop` and TensorFlow's
            autodiff; TensorFlow only). With a mask and
            `zero_output_for_mask=False`, `"scan"` also uses autodiff.
        **kwargs: Standard layer arguments.

    Call arguments:
        sequences: float tensor `(B, T, D)`.
        initial_state: list `[hidden, cell]` of `(B, U)` tensors, or None
            (zeros).
        mask: bool tensor `(B, T)` or None.
        training: bool. Dropout is active only while training.

    Example:
    ```python
    inputs = np.random.rand(2, 8, 32).astype("float32")
    lstm = keras_pvc.layers.FastLSTM(4, return_sequences=True, return_state=True)
    sequence, hidden, cell = lstm(inputs)
    sequence.shape, hidden.shape  # (2, 8, 4), (2, 4)
    reference = keras.layers.LSTM(4, return_sequences=True)
    reference.build(inputs.shape)
    reference.set_weights(lstm.get_weights())
    # reference(inputs) equals sequence to float32 rounding.
    ```
    """

    def __init__(
        self,
        units,
        return_sequences=False,
        return_state=False,
        dropout=0.0,
        zero_output_for_mask=True,
        use_bias=True,
        unit_forget_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        seed=None,
        loop="scan",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loop not in LOOPS:
            raise ValueError(f"`loop` must be one of {LOOPS}, got {loop!r}.")
        if loop == "while_loop" and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "`loop='while_loop'` needs the TensorFlow backend; use "
                "`loop='scan'`."
            )
        self.units = units
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.dropout = dropout
        self.zero_output_for_mask = zero_output_for_mask
        self.use_bias = use_bias
        self.unit_forget_bias = unit_forget_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.loop = loop
        self.supports_masking = True
        # Same class and name as keras.layers.LSTM's cell: same weight paths.
        self.cell = keras.layers.LSTMCell(
            units,
            use_bias=use_bias,
            unit_forget_bias=unit_forget_bias,
            kernel_initializer=self.kernel_initializer,
            recurrent_initializer=self.recurrent_initializer,
            bias_initializer=self.bias_initializer,
            dropout=dropout,
            seed=seed,
            name="lstm_cell",
            dtype=self.dtype_policy,
        )

    def build(self, sequences_shape, initial_state_shape=None, mask_shape=None):
        self.cell.build((sequences_shape[0], sequences_shape[-1]))

    def _recurrence(self, projected, initial_state, mask):
        """Runs `h, c` over time-major `projected` `(T, B, 4U)` inputs."""
        recurrent_kernel = ops.convert_to_tensor(self.cell.recurrent_kernel)
        units = self.units

        def step(state, z, step_mask):
            hidden, cell = state[:2]
            z = z + ops.matmul(hidden, recurrent_kernel)
            # One sigmoid over all four gate blocks, then tanh for `c`:
            # fewer kernels per step than four separate activations.
            gates = ops.sigmoid(z)
            input_gate = gates[:, :units]
            forget_gate = gates[:, units : 2 * units]
            output_gate = gates[:, 3 * units :]
            candidate = ops.tanh(z[:, 2 * units : 3 * units])
            new_cell = forget_gate * cell + input_gate * candidate
            new_hidden = output_gate * ops.tanh(new_cell)
            if step_mask is None:
                return (new_hidden, new_cell), new_hidden
            new_hidden = ops.where(step_mask, new_hidden, hidden)
            new_cell = ops.where(step_mask, new_cell, cell)
            if self.zero_output_for_mask:
                output = ops.where(step_mask, new_hidden, ops.zeros_like(hidden))
                return (new_hidden, new_cell), output
            # As keras.layers.LSTM: a masked step repeats the previous
            # output (zeros before the first real step), so it is carried.
            output = ops.where(step_mask, new_hidden, state[2])
            return (new_hidden, new_cell, output), output

        state = tuple(initial_state)
        if mask is not None and not self.zero_output_for_mask:
            state = state + (ops.zeros_like(initial_state[0]),)

        if self.loop == "while_loop":
            state, outputs = _tf_while_loop(step, projected, state, mask)
            return outputs, state[0], state[1]

        def scan_step(carry, inputs):
            z, step_mask = inputs if mask is not None else (inputs, None)
            carry, output = step(carry, z, step_mask)
            # On TensorFlow, `ops.scan` wants per-step outputs shaped like
            # the carry, so the states ride along (and are dropped).
            return carry, (output,) + carry[1:]

        if mask is None or self.zero_output_for_mask:

            def recurrence(step_mask):
                return _recurrence_with_bptt(
                    projected,
                    initial_state[0],
                    initial_state[1],
                    recurrent_kernel,
                    step_mask,
                )

            if mask is None:
                return recurrence(None)
            # Most batches mask nothing (every video has all its frames): they
            # take the unmasked loop, the same numbers with fewer ops per step
            # (batch-1 encoding of 80 frames: 55 instead of 70 ms).
            return ops.cond(
                ops.all(mask), lambda: recurrence(None), lambda: recurrence(mask)
            )
        xs = projected if mask is None else (projected, mask)
        state, outputs = ops.scan(scan_step, state, xs, unroll=_scan_unroll())
        return outputs[0], state[0], state[1]

    def call(self, sequences, initial_state=None, mask=None, training=False):
        batch_size = ops.shape(sequences)[0]
        if initial_state is None:
            initial_state = [
                ops.zeros((batch_size, self.units), self.compute_dtype)
                for _ in range(2)
            ]
        initial_state = [
            ops.cast(state, self.compute_dtype) for state in initial_state
        ]
        if training and 0.0 < self.dropout < 1.0:
            # One mask for every timestep, as keras.layers.LSTM draws it.
            dropout_mask = self.cell.get_dropout_mask(sequences[:, 0, :])
            sequences = sequences * ops.expand_dims(dropout_mask, 1)
            self.cell.reset_dropout_mask()
        # All timesteps' input projections in one matmul, time-major for
        # the loop (the transpose is of the small input, before the matmul).
        # A 2-D matmul: a 3-D one becomes T small batched matmuls on TF.
        time_major = ops.transpose(sequences, (1, 0, 2))
        num_steps, input_dim = ops.shape(time_major)[0], ops.shape(time_major)[2]
        projected = ops.matmul(
            ops.reshape(time_major, (-1, input_dim)), self.cell.kernel
        )
        if self.use_bias:
            projected = projected + self.cell.bias
        projected = ops.reshape(
            projected, (num_steps, batch_size, 4 * self.units)
        )
        step_mask = None
        if mask is not None:
            step_mask = ops.expand_dims(
                ops.transpose(ops.cast(mask, "bool"), (1, 0)), -1
            )
        outputs, hidden, cell = self._recurrence(
            projected, initial_state, step_mask
        )
        if self.return_sequences:
            output = ops.transpose(outputs, (1, 0, 2))
        elif mask is not None:
            output = outputs[-1]
        else:
            output = hidden
        if self.return_state:
            return output, hidden, cell
        return output

    def compute_mask(self, sequences, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(
        self, sequences_shape, initial_state_shape=None, mask_shape=None
    ):
        batch_size = sequences_shape[0]
        if self.return_sequences:
            output_shape = (batch_size, sequences_shape[1], self.units)
        else:
            output_shape = (batch_size, self.units)
        if self.return_state:
            state_shape = (batch_size, self.units)
            return output_shape, state_shape, state_shape
        return output_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "dropout": self.dropout,
                "zero_output_for_mask": self.zero_output_for_mask,
                "use_bias": self.use_bias,
                "unit_forget_bias": self.unit_forget_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "seed": self.seed,
                "loop": self.loop,
            }
        )
        return config


def _recurrence_with_bptt(projected, hidden, cell, recurrent_kernel, mask):
    """The LSTM recurrence with a hand-written backward pass (BPTT).

    Automatic differentiation through a loop accumulates the recurrent
    kernel's gradient one rank-B update per timestep and keeps every
    intermediate of every step. This forward saves only each step's gates
    and states; the backward runs the recurrence in reverse for the
    pre-activation gradients `dz` and then takes the recurrent kernel's
    gradient as one `(U, T*B) x (T*B, 4U)` matmul, as cuDNN and PyTorch do.
    The kernel's and bias' gradients follow from `dz` outside (they act
    through `projected`). Outputs of masked steps are zeros here
    (`zero_output_for_mask=True`, or no mask).

    The forward and backward are backend-neutral `keras.ops`
    (`_bptt_forward`, `_bptt_backward`); only the hook that attaches one to
    the other is per backend: `ops.custom_gradient` on TensorFlow and JAX, a
    `torch.autograd.Function` on PyTorch (Keras' torch `custom_gradient`
    hands its backward a single upstream gradient, and this op has three
    outputs).

    Args: `projected (T, B, 4U)`, `hidden, cell (B, U)`, `recurrent_kernel
    (U, 4U)`, `mask (T, B, 1)` bool or None. Returns `(outputs (T, B, U),
    hidden, cell)`.
    """
    step_masks = None if mask is None else ops.cast(mask, projected.dtype)
    if keras.backend.backend() == "torch":
        return _torch_bptt_function().apply(
            projected, hidden, cell, recurrent_kernel, step_masks
        )
    if keras.backend.backend() == "jax":
        return _jax_bptt_function()(
            projected, hidden, cell, recurrent_kernel, step_masks
        )

    @ops.custom_gradient
    def recurrence(projected, hidden, cell, recurrent_kernel):
        results, saved = _bptt_forward(
            projected, hidden, cell, recurrent_kernel, step_masks
        )

        def backward(*upstream, **kwargs):
            gradients = _bptt_backward(
                saved, upstream, projected, hidden, cell, recurrent_kernel, step_masks
            )
            if "variables" in kwargs:
                # TensorFlow passes `variables` to a grad function taking
                # **kwargs; none are read inside, so none get gradients.
                return gradients, [None] * len(kwargs["variables"])
            return gradients

        return results, backward

    return recurrence(projected, hidden, cell, recurrent_kernel)


def _bptt_forward(projected, hidden, cell, recurrent_kernel, step_masks):
    """The forward recurrence; returns `((outputs, hidden, cell), saved)`."""
    units = recurrent_kernel.shape[0]

    def forward_step(carry, inputs):
        previous_hidden, previous_cell = carry[:2]
        z, step_mask = inputs if step_masks is not None else (inputs, None)
        z = z + ops.matmul(previous_hidden, recurrent_kernel)
        gates = ops.sigmoid(z)
        # Gate order i, f, c, o; the candidate block takes tanh.
        candidate = ops.tanh(z[:, 2 * units : 3 * units])
        gates = ops.concatenate(
            [gates[:, : 2 * units], candidate, gates[:, 3 * units :]], axis=-1
        )
        new_cell = (
            gates[:, units : 2 * units] * previous_cell
            + gates[:, :units] * candidate
        )
        output = gates[:, 3 * units :] * ops.tanh(new_cell)
        if step_mask is None:
            new_hidden, carried_cell = output, new_cell
        else:
            output = output * step_mask
            new_hidden = output + (1.0 - step_mask) * previous_hidden
            carried_cell = step_mask * new_cell + (1.0 - step_mask) * previous_cell
        # `_scan` stacks per-step values shaped like the carry, so the
        # carry holds one of each thing saved per step.
        carry = (new_hidden, carried_cell, gates, new_cell, output)
        return carry, carry

    zeros = ops.zeros_like(hidden)
    initial = (hidden, cell, ops.zeros_like(projected[0]), zeros, zeros)
    xs = projected if step_masks is None else (projected, step_masks)
    final, saved = _scan(forward_step, initial, xs)
    hiddens, cells, all_gates, new_cells, outputs = saved
    return (outputs, final[0], final[1]), (hiddens, cells, all_gates, new_cells)


def _bptt_backward(
    saved, upstream, projected, hidden, cell, recurrent_kernel, step_masks
):
    """Gradients `(d_projected, d_hidden, d_cell, d_recurrent_kernel)`."""
    units = recurrent_kernel.shape[0]
    hiddens, cells, all_gates, new_cells = saved
    # Under a mixed policy the upstream gradients may come in float32 while
    # the recurrence runs in float16/bfloat16: the loop carries one dtype.
    dtype = projected.dtype
    d_outputs, d_hidden, d_cell = (
        ops.zeros_like(like, dtype=dtype) if grad is None else ops.cast(grad, dtype)
        for grad, like in zip(upstream, (hiddens, hidden, cell))
    )
    input_dtypes = [x.dtype for x in (hidden, cell, recurrent_kernel)]
    hidden, cell = ops.cast(hidden, dtype), ops.cast(cell, dtype)
    recurrent_kernel = ops.cast(recurrent_kernel, dtype)
    previous_hiddens = ops.concatenate(
        [ops.expand_dims(hidden, 0), hiddens[:-1]], 0
    )
    previous_cells = ops.concatenate([ops.expand_dims(cell, 0), cells[:-1]], 0)
    transposed_kernel = ops.transpose(recurrent_kernel)

    def backward_step(carry, inputs):
        d_hidden, d_cell = carry[:2]
        if step_masks is None:
            d_output, gates, new_cell, previous_cell = inputs
            step_mask = None
        else:
            d_output, gates, new_cell, previous_cell, step_mask = inputs
        d_new_hidden = d_hidden + d_output
        if step_mask is not None:
            d_new_hidden = d_new_hidden * step_mask
        input_gate = gates[:, :units]
        forget_gate = gates[:, units : 2 * units]
        candidate = gates[:, 2 * units : 3 * units]
        output_gate = gates[:, 3 * units :]
        tanh_cell = ops.tanh(new_cell)
        d_new_cell = d_new_hidden * output_gate * (1.0 - tanh_cell * tanh_cell)
        if step_mask is None:
            d_new_cell = d_new_cell + d_cell
        else:
            d_new_cell = d_new_cell + step_mask * d_cell
        d_z = ops.concatenate(
            [
                d_new_cell * candidate * input_gate * (1.0 - input_gate),
                d_new_cell * previous_cell * forget_gate * (1.0 - forget_gate),
                d_new_cell * input_gate * (1.0 - candidate * candidate),
                d_new_hidden * tanh_cell * output_gate * (1.0 - output_gate),
            ],
            axis=-1,
        )
        d_previous_hidden = ops.matmul(d_z, transposed_kernel)
        d_previous_cell = d_new_cell * forget_gate
        if step_mask is not None:
            d_previous_hidden = d_previous_hidden + (1.0 - step_mask) * d_hidden
            d_previous_cell = d_previous_cell + (1.0 - step_mask) * d_cell
        carry = (d_previous_hidden, d_previous_cell, d_z)
        return carry, carry

    xs = (d_outputs, all_gates, new_cells, previous_cells)
    if step_masks is not None:
        xs = xs + (step_masks,)
    initial = (d_hidden, d_cell, ops.zeros_like(projected[0]))
    (d_hidden, d_cell, _), (_, _, d_projected) = _scan(
        backward_step, initial, xs, reverse=True
    )
    d_recurrent_kernel = ops.matmul(
        ops.transpose(ops.reshape(previous_hiddens, (-1, units))),
        ops.reshape(d_projected, (-1, 4 * units)),
    )
    d_hidden, d_cell, d_recurrent_kernel = (
        ops.cast(grad, like)
        for grad, like in zip((d_hidden, d_cell, d_recurrent_kernel), input_dtypes)
    )
    return d_projected, d_hidden, d_cell, d_recurrent_kernel


_JAX_BPTT_FUNCTION = None


def _jax_bptt_function():
    """`_bptt_forward`/`_bptt_backward` as a `jax.custom_vjp` (built once)."""
    global _JAX_BPTT_FUNCTION
    if _JAX_BPTT_FUNCTION is not None:
        return _JAX_BPTT_FUNCTION
    import jax

    @jax.custom_vjp
    def recurrence(projected, hidden, cell, recurrent_kernel, step_masks):
        return _bptt_forward(projected, hidden, cell, recurrent_kernel, step_masks)[0]

    def forward(projected, hidden, cell, recurrent_kernel, step_masks):
        results, saved = _bptt_forward(
            projected, hidden, cell, recurrent_kernel, step_masks
        )
        return results, (saved, projected, hidden, cell, recurrent_kernel, step_masks)

    def backward(residuals, upstream):
        saved, projected, hidden, cell, recurrent_kernel, step_masks = residuals
        gradients = _bptt_backward(
            saved, upstream, projected, hidden, cell, recurrent_kernel, step_masks
        )
        # The mask is data: a zero cotangent (None when there is no mask).
        mask_gradient = None if step_masks is None else ops.zeros_like(step_masks)
        return (*gradients, mask_gradient)

    recurrence.defvjp(forward, backward)
    _JAX_BPTT_FUNCTION = recurrence
    return recurrence


_TORCH_BPTT_FUNCTION = None


def _torch_bptt_function():
    """`_bptt_forward`/`_bptt_backward` as a `torch.autograd.Function`.

    Built on first use: torch is imported only on the torch backend.
    """
    global _TORCH_BPTT_FUNCTION
    if _TORCH_BPTT_FUNCTION is not None:
        return _TORCH_BPTT_FUNCTION
    import torch

    class BPTTRecurrence(torch.autograd.Function):
        @staticmethod
        def forward(ctx, projected, hidden, cell, recurrent_kernel, step_masks):
            results, saved = _bptt_forward(
                projected, hidden, cell, recurrent_kernel, step_masks
            )
            ctx.has_mask = step_masks is not None
            ctx.save_for_backward(
                projected, hidden, cell, recurrent_kernel,
                *((step_masks,) if ctx.has_mask else ()), *saved,
            )
            return results

        @staticmethod
        def backward(ctx, d_outputs, d_hidden, d_cell):
            tensors = ctx.saved_tensors
            projected, hidden, cell, recurrent_kernel = tensors[:4]
            step_masks = tensors[4] if ctx.has_mask else None
            saved = tensors[5:] if ctx.has_mask else tensors[4:]
            gradients = _bptt_backward(
                saved,
                (d_outputs, d_hidden, d_cell),
                projected,
                hidden,
                cell,
                recurrent_kernel,
                step_masks,
            )
            return (*gradients, None)

    _TORCH_BPTT_FUNCTION = BPTTRecurrence
    return BPTTRecurrence


def _scan(step, init, xs, reverse=False):
    """`keras.ops.scan` for a `step` whose per-step output is its carry.

    On TensorFlow, `ops.scan` passes the carry from step to step through
    size-1 `TensorArray`s (a write and a read of every carried tensor per
    step); this `tf.while_loop` carries plain tensors and writes each step's
    output once. Other backends use `ops.scan`.
    """
    if keras.backend.backend() != "tensorflow":
        return ops.scan(step, init, xs, reverse=reverse, unroll=_scan_unroll())
    import tensorflow as tf

    xs_flat = [tf.convert_to_tensor(x) for x in tf.nest.flatten(xs)]
    init_flat = [tf.convert_to_tensor(x) for x in tf.nest.flatten(init)]
    num_steps = tf.shape(xs_flat[0])[0]
    inputs = [
        tf.TensorArray(x.dtype, size=num_steps, element_shape=x.shape[1:]).unstack(x)
        for x in xs_flat
    ]
    outputs = [
        tf.TensorArray(x.dtype, size=num_steps, element_shape=x.shape)
        for x in init_flat
    ]

    def body(index, carry, outputs):
        step_inputs = tf.nest.pack_sequence_as(
            xs, [array.read(index) for array in inputs]
        )
        carry, ys = step(tf.nest.pack_sequence_as(init, carry), step_inputs)
        outputs = [
            array.write(index, y) for array, y in zip(outputs, tf.nest.flatten(ys))
        ]
        return index + (-1 if reverse else 1), tf.nest.flatten(carry), outputs

    _, carry, outputs = tf.while_loop(
        (lambda index, *_: index >= 0) if reverse else (lambda index, *_: index < num_steps),
        body,
        (num_steps - 1 if reverse else tf.constant(0), init_flat, outputs),
        parallel_iterations=PARALLEL_ITERATIONS,
    )
    stacked = []
    for array, like in zip(outputs, init_flat):
        output = array.stack()
        output.set_shape(xs_flat[0].shape[:1].concatenate(like.shape))
        stacked.append(output)
    return (
        tf.nest.pack_sequence_as(init, carry),
        tf.nest.pack_sequence_as(init, stacked),
    )

def _tf_while_loop(step, projected, state, mask):
    """`loop="while_loop"`: the recurrence as a bare `tf.while_loop`.

    TensorFlow only (hence the local import). `keras.ops.scan` on
    TensorFlow also carries its state through size-1 `TensorArray`s and
    stacks per-step copies of it; this loop carries plain tensors.
    """
    import tensorflow as tf

    num_steps = tf.shape(projected)[0]
    inputs = tf.TensorArray(projected.dtype, size=num_steps).unstack(projected)
    masks = None
    if mask is not None:
        masks = tf.TensorArray(tf.bool, size=num_steps).unstack(mask)
    outputs = tf.TensorArray(projected.dtype, size=num_steps)

    def body(index, outputs, state):
        step_mask = masks.read(index) if masks is not None else None
        state, output = step(state, inputs.read(index), step_mask)
        return index + 1, outputs.write(index, output), state

    _, outputs, state = tf.while_loop(
        lambda index, *_: index < num_steps,
        body,
        (tf.constant(0), outputs, state),
        parallel_iterations=PARALLEL_ITERATIONS,
    )
    outputs = outputs.stack()
    outputs.set_shape(projected.shape[:2].concatenate(state[0].shape[-1:]))
    return state, outputs


LSTM_IMPLEMENTATIONS = ("auto", "fast", "keras")


def gpu_visible():
    """Whether the Keras backend sees a GPU (TensorFlow, torch or JAX)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return False


def resolve_lstm_implementation(implementation):
    """`"auto"` -> `"keras"` where Keras runs a fused GPU kernel (cuDNN on
    TensorFlow and torch with a GPU visible), `"fast"` (FastLSTM) elsewhere:
    on CPUs, and on JAX, whose Keras LSTM has no cuDNN path."""
    if implementation not in LSTM_IMPLEMENTATIONS:
        raise ValueError(
            f"`lstm_implementation` must be one of {LSTM_IMPLEMENTATIONS}, got "
            f"{implementation!r}."
        )
    if implementation != "auto":
        return implementation
    fused_backend = keras.backend.backend() in ("tensorflow", "torch")
    return "keras" if fused_backend and gpu_visible() else "fast"


def lstm_layer(units, implementation="auto", **kwargs):
    """A `FastLSTM` or a `keras.layers.LSTM` (per `implementation`, see
    `resolve_lstm_implementation`), with the same weights layout: a cell
    named `lstm_cell` holding `kernel`, `recurrent_kernel`, `bias`."""
    if resolve_lstm_implementation(implementation) == "fast":
        return FastLSTM(units, **kwargs)
    return keras.layers.LSTM(units, **kwargs)
