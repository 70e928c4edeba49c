"""Preset folders saved by an older commit load and give the numbers they gave.

`tests/fixtures/presets_0fc5941/` holds two small preset folders saved at
commit 0fc5941 (before issue 17 moved the training and app modules into
`keras_pvc/training/` and `keras_pvc/apps/`, and before issue 19's pooled
residual changed how `SpatialGraphConv` computes attention pooling): a
`procedural` captioner (frames, keypoint readout) with self-critical training
enabled, and a `regions` captioner (features, temporal centering, grid +
learned graph, attention pooling). Each folder's `check.npz` holds a batch
and the logits the old code gave for it (`make_fixtures.py`, run with that
commit). The current code must load each folder and give the same logits.
"""

import os

import keras
import numpy as np
import pytest

import keras_pvc

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "presets_0fc5941")


@pytest.mark.parametrize("name", ["procedural", "regions"])
def test_a_preset_folder_saved_before_the_moves_loads_with_its_numbers(name):
    folder = os.path.join(FIXTURES, name)
    model = keras_pvc.from_preset(folder)
    with np.load(os.path.join(folder, "check.npz"), allow_pickle=False) as stored:
        stored = dict(stored)
    kind = model.backbone.input_kind
    inputs = {
        kind: stored[kind].astype("float32"),
        "frame_mask": stored["frame_mask"],
        "token_ids": stored["token_ids"],
        "padding_mask": stored["padding_mask"],
    }
    logits = keras.ops.convert_to_numpy(model.predict_on_batch(inputs))
    assert np.abs(stored["logits"]).max() > 0.1  # a real model, not zeros
    np.testing.assert_allclose(logits, stored["logits"], rtol=1e-4, atol=1e-4)
    captions = model.generate({kind: inputs[kind], "frame_mask": inputs["frame_mask"]})
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    if name == "procedural":  # saved with self-critical training enabled
        assert model.self_critical is not None
        assert model.self_critical.config.num_samples == 2
