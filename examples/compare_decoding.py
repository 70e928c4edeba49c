"""Greedy vs beam search on a run's held-out clips, scored with CIDEr-D.

Produces the README's "greedy / beam 3 / beam 5" table: point RUN_DIR at a
`keras-pvc demo` run folder (DATA_DIR at its procedural data). Run:
`python examples/compare_decoding.py`.
"""

import json
import os

import keras_hub

import keras_pvc
from keras_pvc.datasets.msvd import load_msvd
from keras_pvc.training.runs import read_clip_arrays
from keras_pvc.training.runs import relation_clip_ids
from keras_pvc.training.runs import score_captions

# === Knobs ===
RUN_DIR = os.environ.get("RUN_DIR", "runs/demo")
DATA_DIR = os.environ.get("DATA_DIR", os.path.join(RUN_DIR, "data"))
DECODERS = [  # (name, sampler, length_penalty)
    ("greedy", "greedy", None),
    ("beam 3", keras_hub.samplers.BeamSampler(num_beams=3), 1.0),
    ("beam 5", keras_hub.samplers.BeamSampler(num_beams=5), 1.0),
    ("beam 5, total log p", keras_hub.samplers.BeamSampler(num_beams=5), None),
]


def main():
    model = keras_pvc.from_preset(os.path.join(RUN_DIR, "model"))
    clips = [clip for clip in load_msvd(DATA_DIR) if clip.split == "test"]
    config = {
        "input_kind": model.backbone.input_kind,
        "num_frames": model.preprocessor.num_frames,
        "frame_size": model.preprocessor.frame_size,
    }
    test = read_clip_arrays(clips, config, verbose=0)
    results = {}
    for name, sampler, length_penalty in DECODERS:
        captions = model.generate(
            test.model_inputs(config["input_kind"]),
            sampler=sampler,
            length_penalty=length_penalty,
        )
        predictions = {clip.clip_id: c for clip, c in zip(test.clips, captions)}
        scores = score_captions(
            test.clips, predictions, {"relations": relation_clip_ids(DATA_DIR)}
        )
        results[name] = {
            "CIDEr": round(100 * scores["all"]["CIDEr"], 1),
            "CIDEr relations": round(100 * scores["relations"]["CIDEr"], 1),
            "BLEU-4": round(100 * scores["all"]["BLEU-4"], 1),
        }
        print(f"{name:>20}: {results[name]}", flush=True)
    with open(os.path.join(RUN_DIR, "decoding.json"), "w") as handle:
        json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
