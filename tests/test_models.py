import os
import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_pvc
from keras_pvc.layers import CaptionDecoder
from keras_pvc.layers import FrameCNN
from keras_pvc.layers import SpatialGraphConv
from keras_pvc.layers import TemporalLSTMEncoder
from keras_pvc.models import VideoCaptioner
from keras_pvc.models import VideoCaptionerBackbone
from keras_pvc.models import VideoCaptionerPreprocessor
from keras_pvc.models.video_captioner_preprocessor import BOS_ID
from keras_pvc.models.video_captioner_preprocessor import EOS_ID
from keras_pvc.models.video_captioner_preprocessor import PAD_ID
from keras_pvc.models.video_captioner_preprocessor import UNK_ID
from keras_pvc.presets import preset_config
from layer_testing import BACKEND

CAPTIONS = [
    "a red circle is left of a blue square",
    "a blue square is right of a red circle",
    "a green triangle moves up",
    "a yellow circle moves toward a green square",
]


def tiny_preprocessor(**kwargs):
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(CAPTIONS)
    kwargs.setdefault("caption_length", 9)
    kwargs.setdefault("num_frames", 3)
    return VideoCaptionerPreprocessor(vocabulary, **kwargs)


def tiny_model(input_kind="features", graph=True, hidden_dim=8):
    preprocessor = tiny_preprocessor()
    if input_kind == "frames":
        frame_cnn = FrameCNN("simple", filters=(4, 6), name="frame_cnn")
        input_shape = (8, 8, 3)
    else:
        frame_cnn = None
        input_shape = (4, 5) if graph else (5,)
    backbone = VideoCaptionerBackbone(
        frame_cnn=frame_cnn,
        spatial_graph=SpatialGraphConv(hidden_dim, attention_dim=4) if graph else None,
        temporal_encoder=TemporalLSTMEncoder(hidden_dim),
        caption_decoder=CaptionDecoder(
            preprocessor.vocabulary_size, embedding_dim=6, hidden_dim=hidden_dim
        ),
        input_kind=input_kind,
        input_shape=input_shape,
    )
    model = VideoCaptioner(backbone, preprocessor)
    model.compile(learning_rate=1e-2)
    return model


def tiny_inputs(model, batch_size=2, seed=0):
    rng = np.random.default_rng(seed)
    kind = model.backbone.input_kind
    shape = (batch_size, 3) + model.backbone.video_input_shape
    video = rng.uniform(0, 255 if kind == "frames" else 1, shape).astype("float32")
    preprocessor = model.preprocessor
    ids = preprocessor.tokenize(CAPTIONS[:batch_size])
    frame_mask = np.ones((batch_size, 3), bool)
    frame_mask[-1, -1] = False
    return {
        kind: video,
        "frame_mask": frame_mask,
        "token_ids": ids[:, :-1],
        "padding_mask": ids[:, :-1] != 0,
    }


# === Preprocessor ===


def test_vocabulary_starts_with_specials_and_is_deterministic():
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(CAPTIONS)
    assert vocabulary[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert vocabulary[4] == "a"  # most frequent word first
    assert vocabulary == VideoCaptionerPreprocessor.build_vocabulary(CAPTIONS[::-1])
    with pytest.raises(ValueError, match="must start with"):
        VideoCaptionerPreprocessor(["a", "b"])


def test_tokenize_edge_cases():
    preprocessor = tiny_preprocessor(caption_length=4)
    ids = preprocessor.tokenize(
        ["", "A RED circle, is left of it!", "a zebra", "un café à Paris"]
    )
    assert ids.shape == (4, 6)
    assert ids[0].tolist() == [BOS_ID, EOS_ID, 0, 0, 0, 0]  # empty caption
    # Longer than caption_length: truncated, still ends with <eos>.
    assert ids[1, -1] == EOS_ID and ids[1, 0] == BOS_ID
    assert preprocessor.detokenize(ids[1]) == "a red circle is"
    assert ids[2].tolist()[:3] == [BOS_ID, preprocessor.word2idx["a"], UNK_ID]
    # Non-ASCII words are words (unknown here), never crashes.
    assert ids[3].tolist() == [BOS_ID, UNK_ID, UNK_ID, UNK_ID, UNK_ID, EOS_ID]
    assert preprocessor.detokenize(ids[2]) == "a"  # <unk> is never printed
    with pytest.raises(TypeError, match="must be a str"):
        preprocessor.tokenize([3])


def test_tensorflow_tokenizer_matches_python():
    captions = CAPTIONS + ["", "Don't  STOP... a café-crème, ünïcode", "a " * 30]
    vocabulary = VideoCaptionerPreprocessor.build_vocabulary(captions)
    preprocessor = VideoCaptionerPreprocessor(vocabulary, caption_length=7)
    x, y, sample_weight = preprocessor(
        {"features": tf.zeros((len(captions), 2, 3)), "caption": tf.constant(captions)}
    )
    expected = preprocessor.tokenize(captions)
    np.testing.assert_array_equal(x["token_ids"], expected[:, :-1])
    np.testing.assert_array_equal(y, expected[:, 1:])
    np.testing.assert_array_equal(sample_weight, expected[:, 1:] != 0)
    np.testing.assert_array_equal(x["padding_mask"], expected[:, :-1] != 0)
    assert x["frame_mask"].shape == (len(captions), 2)


def test_pad_frames_short_and_long_clips():
    preprocessor = tiny_preprocessor(num_frames=4)
    frames, mask = preprocessor.pad_frames(np.ones((2, 5, 5, 3)))
    assert frames.shape == (4, 5, 5, 3)
    assert mask.tolist() == [True, True, False, False]
    assert frames[2:].sum() == 0
    frames, mask = preprocessor.pad_frames(np.arange(10)[:, None])
    assert frames[:, 0].tolist() == [0, 3, 6, 9] and mask.all()
    with pytest.raises(ValueError, match="no frames"):
        preprocessor.pad_frames(np.zeros((0, 3)))


def test_no_vocabulary_is_a_clear_error():
    model = keras_pvc.from_preset("procedural")
    with pytest.raises(ValueError, match="vocabulary"):
        model.generate({"frames": np.zeros((1, 8, 64, 64, 3), "float32")})


# === Backbone and task ===


@pytest.mark.parametrize(
    "input_kind,graph", [("features", True), ("features", False), ("frames", True)]
)
def test_keras_round_trip(tmp_path, input_kind, graph):
    model = tiny_model(input_kind, graph)
    inputs = tiny_inputs(model)
    before = model.predict(inputs, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(inputs, verbose=0), before, atol=1e-6)
    assert reloaded.preprocessor.vocabulary == model.preprocessor.vocabulary


def test_preset_round_trip(tmp_path):
    model = tiny_model("frames")
    inputs = tiny_inputs(model)
    model.save_to_preset(str(tmp_path))
    for name in ("config.json", "task.json", "model.weights.h5", "preprocessor.json"):
        assert os.path.exists(os.path.join(tmp_path, name)), name
    reloaded = keras_pvc.from_preset(str(tmp_path))
    np.testing.assert_allclose(
        reloaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6
    )
    assert reloaded.generate(inputs) == model.generate(inputs)


def test_backbone_config_round_trip():
    backbone = tiny_model().backbone
    clone = VideoCaptionerBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    assert clone.count_params() == backbone.count_params()


@pytest.mark.parametrize("graph", [False, True])
def test_a_features_model_keeps_its_frame_cnn_without_a_build_warning(graph):
    # The frame CNN of a features model is recorded (for `keras-pvc caption`
    # on videos) but not in the graph; Keras used to warn of unbuilt state.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = VideoCaptionerBackbone(
            frame_cnn=FrameCNN("simple", filters=(4, 6), name="frame_cnn"),
            spatial_graph=SpatialGraphConv(8, attention_dim=4) if graph else None,
            temporal_encoder=TemporalLSTMEncoder(8),
            caption_decoder=CaptionDecoder(10, embedding_dim=6, hidden_dim=8),
            input_kind="features",
            input_shape=(4, 5) if graph else (5,),
        )
    assert not [w for w in caught if "unbuilt state" in str(w.message)]
    assert backbone.frame_cnn.name == "frame_cnn"
    clone = VideoCaptionerBackbone.from_config(backbone.get_config())
    assert clone.get_config()["frame_cnn"] == backbone.get_config()["frame_cnn"]


def test_graph_needs_regions():
    with pytest.raises(ValueError, match="region features"):
        VideoCaptionerBackbone(
            temporal_encoder=TemporalLSTMEncoder(4),
            caption_decoder=CaptionDecoder(10, 4, 4),
            spatial_graph=SpatialGraphConv(4),
            input_shape=(7,),
        )


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="msvd.*procedural.*s2vt"):
        keras_pvc.from_preset("no_such_preset")
    with pytest.raises(ValueError, match="Unknown override"):
        keras_pvc.from_preset("procedural", hiden_dim=3)
    assert {"msvd", "s2vt", "procedural"} <= set(keras_pvc.list_presets())


@pytest.mark.parametrize("sampler", ["greedy", "beam", "top_k"])
def test_generate_returns_clean_strings(sampler):
    model = tiny_model()
    captions = model.generate(tiny_inputs(model), sampler=sampler)
    assert len(captions) == 2
    for caption in captions:
        assert isinstance(caption, str)
        assert not any(token in caption for token in ("<pad>", "<bos>", "<eos>", "<unk>"))


@pytest.mark.skipif(
    BACKEND == "torch", reason="torch decodes eagerly: Python runs every step"
)
def test_generate_traces_once_per_sampler():
    model = tiny_model()
    inputs = tiny_inputs(model)
    decoder = model.backbone.caption_decoder
    step, calls = decoder.step, []
    decoder.step = lambda *args: calls.append(1) or step(*args)
    first = model.generate(inputs, sampler="greedy")
    traced = len(calls)
    assert traced > 0
    # A sampler named again reuses the traced decoding loop: no Python steps.
    assert model.generate(inputs, sampler="greedy") == first
    assert model.generate_ids(inputs, "greedy").shape[0] == 2
    assert len(calls) == traced
    # A new sampler instance (other settings) traces its own loop.
    model.generate(inputs, sampler=keras_hub.samplers.TopKSampler(k=2, seed=1))
    assert len(calls) > traced


def argmax_loop_by_hand(model, inputs, max_length):
    """Greedy ids from the model's own teacher-forced forward pass (`predict`),
    one word at a time; `<pad>` after the first `<eos>`. The decoder is causal,
    so the prefix is padded to one fixed length (one compiled shape) and the
    logits at position t read tokens <= t only."""
    batch_size = len(inputs["frame_mask"])
    token_ids = np.zeros((batch_size, max_length), "int32")
    token_ids[:, 0] = BOS_ID
    words = np.zeros((batch_size, max_length), "int32")
    for index in range(max_length):
        logits = model.predict(
            {
                "features": inputs["features"],
                "frame_mask": inputs["frame_mask"],
                "token_ids": token_ids,
                "padding_mask": np.ones_like(token_ids, bool),
            },
            verbose=0,
        )
        words[:, index] = np.argmax(logits[:, index], axis=-1)
        if index + 1 < max_length:
            token_ids[:, index + 1] = words[:, index]
    after_eos = np.cumsum(words == EOS_ID, axis=1) - (words == EOS_ID) > 0
    return np.where(after_eos, PAD_ID, words)


def test_greedy_generate_equals_an_argmax_loop_over_call():
    # A trained model, so that captions stop at <eos> at different lengths.
    keras.utils.set_random_seed(2)
    model = tiny_model()
    model.compile(learning_rate=5e-2)
    inputs = tiny_inputs(model)
    ids = model.preprocessor.tokenize(CAPTIONS[:2])
    # 30 steps in one epoch (epochs cost more than steps on JAX and torch).
    repeated = {key: np.concatenate([value] * 30) for key, value in inputs.items()}
    labels = np.concatenate([ids[:, 1:]] * 30)
    model.fit(repeated, labels, sample_weight=labels != 0, batch_size=2, verbose=0)
    max_length = model.caption_length + 1
    expected = argmax_loop_by_hand(model, inputs, max_length)
    assert (expected == EOS_ID).any()
    generated = keras.ops.convert_to_numpy(model.generate_ids(inputs, "greedy"))
    # What follows the first <eos> is the sampler's filler: compare up to it.
    after_eos = np.cumsum(generated == EOS_ID, axis=1) - (generated == EOS_ID) > 0
    np.testing.assert_array_equal(np.where(after_eos, PAD_ID, generated), expected)


def test_fit_evaluate_predict_on_arrays():
    keras.utils.set_random_seed(0)
    model = tiny_model()
    inputs = tiny_inputs(model)
    ids = model.preprocessor.tokenize(CAPTIONS[:2])
    labels, weights = ids[:, 1:], (ids[:, 1:] != 0).astype("float32")
    before = model.evaluate(inputs, labels, sample_weight=weights, verbose=0, return_dict=True)
    history = model.fit(inputs, labels, sample_weight=weights, epochs=5, verbose=0).history
    after = model.evaluate(inputs, labels, sample_weight=weights, verbose=0, return_dict=True)
    assert set(before) == {"loss", "accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    assert after["loss"] < before["loss"]
    # The loss is the masked mean cross-entropy of the predicted logits.
    logits = model.predict(inputs, verbose=0)
    assert logits.shape == labels.shape + (model.backbone.vocabulary_size,)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    chosen = np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    np.testing.assert_allclose(
        after["loss"], -(chosen * weights).sum() / weights.sum(), rtol=1e-4
    )


def test_tiny_model_overfits_four_clips():
    keras.utils.set_random_seed(1)
    model = tiny_model(hidden_dim=32)
    rng = np.random.default_rng(3)
    features = rng.normal(size=(4, 3, 4, 5)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"features": features, "frame_mask": np.ones((4, 3), bool), "caption": CAPTIONS}
    ).batch(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(dataset.repeat(150), verbose=0)
    # A tf.data pipeline shuffles itself: fit does not warn about `shuffle`.
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert model.generate({"features": features}) == CAPTIONS


def _dense_params(inputs, units, bias=True):
    return inputs * units + (units if bias else 0)


def _lstm_params(inputs, units):
    # Four gates, each with an input kernel, a recurrent kernel and a bias.
    return 4 * (inputs + units + 1) * units


def _expected_parameter_counts(config):
    """Each component's weights, from the preset's knobs by formula."""
    hidden, vocabulary, embedding = (
        config["hidden_dim"], config["vocabulary_size"], config["embedding_dim"]
    )
    counts = {}
    features = config["input_shape"][-1]
    graph = config["graph"]
    if graph:
        regions, channels, units = config["input_shape"][0], features, graph["units"]
        assert graph["adjacency"] == "both" and graph["pooling"] == "attention"
        attention_dim = 64  # SpatialGraphConv's default
        counts["spatial_graph"] = (
            regions * channels  # position embedding per region
            + _dense_params(channels, units)  # grid message
            + _dense_params(channels, units, bias=False)  # learned message ("both": one bias)
            + 2 * _dense_params(channels, attention_dim)  # query and key
            + _dense_params(channels, units, bias=False)  # residual (channels != units)
            + _dense_params(units, 1)  # attention-pooling score, one head
        )
        features = units
    counts["temporal_encoder"] = _dense_params(features, hidden) + _lstm_params(hidden, hidden)
    decoder = (
        vocabulary * embedding + _lstm_params(embedding, hidden) + _dense_params(hidden, vocabulary)
    )
    if config["attention"]:
        decoder += _dense_params(hidden, hidden, bias=False)  # attention query
        decoder += _dense_params(2 * hidden, hidden)  # tanh(W [h; context])
    counts["caption_decoder"] = decoder
    return counts


@pytest.mark.slow
@pytest.mark.every_backend
@pytest.mark.parametrize("name", ["msvd", "s2vt"])
def test_full_size_presets_forward(name):
    config = preset_config(name)
    model = keras_pvc.from_preset(name)
    inputs = {
        "features": np.random.rand(1, 80, *config["input_shape"]).astype("float32"),
        "frame_mask": np.ones((1, 80), bool),
        "token_ids": np.full((1, 21), BOS_ID, "int32"),
        "padding_mask": np.ones((1, 21), bool),
    }
    logits = model(inputs)
    assert logits.shape == (1, 21, 3000)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(logits)))
    expected = _expected_parameter_counts(config)
    backbone = model.backbone
    for component, count in expected.items():
        assert getattr(backbone, component).count_params() == count, component
    # Nothing else holds weights (the msvd frame CNN only records how its
    # features were made): 24,302,793 (msvd) and 22,608,000 (s2vt).
    assert model.count_params() == sum(expected.values())


class BigramDecoder(CaptionDecoder):
    """A `CaptionDecoder` whose next word depends on the previous word only.

    `log_probs[previous, next]` is a hand-written table: teacher forcing
    (`call`, which the rescoring uses) and `step` (which the beam sampler
    uses) both read it, so every caption's log-probability is known by hand.
    """

    def __init__(self, log_probs, **kwargs):
        super().__init__(len(log_probs), embedding_dim=4, hidden_dim=8, **kwargs)
        self.log_probs = np.asarray(log_probs, "float32")

    def call(self, token_ids, encoder_sequence, encoder_mask=None, initial_state=None,
             training=None):
        table = keras.ops.convert_to_tensor(self.log_probs)
        return keras.ops.take(table, keras.ops.cast(token_ids, "int32"), axis=0)

    def step(self, token_ids, cache):
        table = keras.ops.convert_to_tensor(self.log_probs)
        return keras.ops.take(table, keras.ops.cast(token_ids, "int32"), axis=0), cache


def _bigram_table(word2idx, vocabulary_size, rows):
    """log p(next | previous): `rows[previous] = {next: p}`, the rest of each
    row spread evenly; unlisted rows end the caption with p 0.9."""
    table = np.zeros((vocabulary_size, vocabulary_size))
    for previous in range(vocabulary_size):
        row = rows.get(previous, {EOS_ID: 0.9})
        rest = (1.0 - sum(row.values())) / (vocabulary_size - len(row))
        table[previous] = rest
        for word, probability in row.items():
            table[previous, word] = probability
    np.testing.assert_allclose(table.sum(1), 1.0)
    return np.log(table)


def test_beam_rescoring_by_length():
    preprocessor = tiny_preprocessor()
    word = preprocessor.word2idx
    short, long = ["a"], ["green", "triangle", "moves", "up"]
    # From <bos>: "a" (0.5) then <eos> (0.9), or "green" (0.4) then each next
    # word of `long` and <eos> with 0.9. After <eos>, <eos> again (p ~ 1), so
    # finished beams keep their score while the others grow.
    rows = {
        BOS_ID: {word["a"]: 0.5, word["green"]: 0.4},
        word["green"]: {word["triangle"]: 0.9},
        word["triangle"]: {word["moves"]: 0.9},
        word["moves"]: {word["up"]: 0.9},
        EOS_ID: {EOS_ID: 1.0 - 1e-6},
    }
    table = _bigram_table(word, preprocessor.vocabulary_size, rows)
    # By hand (lengths count the <eos>): total log p favours the short one,
    # log p per word the long one.
    short_log_p = np.log(0.5) + np.log(0.9)  # -0.80 over 2 words: -0.40
    long_log_p = np.log(0.4) + 4 * np.log(0.9)  # -1.34 over 5 words: -0.27
    assert short_log_p > long_log_p and short_log_p / 2 < long_log_p / 5

    backbone = VideoCaptionerBackbone(
        temporal_encoder=TemporalLSTMEncoder(8),
        caption_decoder=BigramDecoder(table, name="caption_decoder"),
        input_kind="features",
        input_shape=(5,),
    )
    model = VideoCaptioner(backbone, preprocessor)
    inputs = {"features": np.random.default_rng(0).uniform(size=(2, 3, 5)).astype("float32")}

    def beam(length_penalty):
        return model.generate(inputs, sampler="beam", length_penalty=length_penalty)

    # Greedy and raw log p (penalty 0, or keras-hub's own choice) take "a".
    assert model.generate(inputs, sampler="greedy") == [" ".join(short)] * 2
    assert beam(0.0) == [" ".join(short)] * 2
    assert beam(None) == [" ".join(short)] * 2
    # Mean log p per word (penalty 1) flips the choice to the long caption.
    assert beam(1.0) == [" ".join(long)] * 2
    ids = np.asarray(model.generate_ids(inputs, "beam", length_penalty=1.0))
    assert ids.shape == (2, preprocessor.caption_length + 1)
    expected = [word[w] for w in long] + [EOS_ID]
    np.testing.assert_array_equal(ids[:, : len(expected)], [expected] * 2)
    # One beam is greedy search, whatever the rescoring.
    one_beam = keras_hub.samplers.BeamSampler(num_beams=1)
    assert model.generate(inputs, sampler=one_beam, length_penalty=1.0) == [" ".join(short)] * 2
