"""Where a held-out run's captions go wrong: the motion confusion of its
one-object clips and how often a pair's still object gets the mover's colour
(and the mover the still object's).

Reads the test captions a run wrote (`RUN/predictions.json`), or, with
`--train-clips N`, captions the first N training clips from the cached
features with the run's saved model (does the model fit its own clips?).
Several `--run` folders (e.g. the three seeds of one variant, each with its
`--data` folder in the same order) are counted together. Prints; never asserts.

    python benchmarks/heldout_errors.py --data W/sprites_250_40_s0 \\
        --run W/run_sprites_250_40_s0_regions_tracks10 --train-clips 120 \\
        --features W/features_sprites_250_40_s0_regions
"""

import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_predictions(run, data, features, count):
    import keras_pvc
    from keras_pvc.datasets.features import load_feature_arrays
    from keras_pvc.training.runs import caption_split
    from keras_pvc.training.runs import load_dataset_clips

    model = keras_pvc.from_preset(os.path.join(run, "model"))
    clips = [clip for clip in load_dataset_clips("msvd", data) if clip.split == "train"][:count]
    return caption_split(model, load_feature_arrays(clips, features))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="+", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--features", nargs="*", default=None)
    parser.add_argument("--train-clips", type=int, default=0)
    args = parser.parse_args()
    if len(args.run) != len(args.data) or (args.train_clips and len(args.features or ()) != len(args.run)):
        raise SystemExit("give one --data (and with --train-clips one --features) per --run")

    from keras_pvc.datasets.heldout.attributes import format_grades
    from keras_pvc.datasets.heldout.attributes import grade_captions

    confusion, swaps, wrong_colour = collections.Counter(), 0, 0
    mover_swaps, mover_wrong = 0, 0
    for index, (run, data) in enumerate(zip(args.run, args.data)):
        with open(os.path.join(data, "metadata.json")) as handle:
            scenes = json.load(handle)["scenes"]
        if args.train_clips:
            predictions = train_predictions(run, data, args.features[index], args.train_clips)
        else:
            with open(os.path.join(run, "predictions.json")) as handle:
                predictions = json.load(handle)
        grades = grade_captions(scenes, predictions)
        print(run, "(training clips)" if args.train_clips else "(test clips)")
        print(format_grades(grades))
        for clip in grades["per_clip"].values():
            truth, said = clip["truth"], clip["said"]
            if clip["type"] == "single":
                confusion[(truth["motion"], said["motion"])] += 1
                continue
            if said["other_color"] != truth["other_color"]:
                wrong_colour += 1
                swaps += said["other_color"] == truth["mover_color"]
            if said["mover_color"] != truth["mover_color"]:
                mover_wrong += 1
                mover_swaps += said["mover_color"] == truth["other_color"]
    print("one object, motion -> what the captions said:")
    for motion in sorted({truth for truth, _ in confusion}, key=str):
        said = {str(s): n for (t, s), n in confusion.items() if t == motion}
        print(f"  {motion}: {said}")
    print(f"pairs: still object's colour wrong in {wrong_colour} clips, "
          f"the mover's colour in {swaps} of them")
    print(f"pairs: the mover's colour wrong in {mover_wrong} clips, "
          f"the still object's colour in {mover_swaps} of them")


if __name__ == "__main__":
    main()
