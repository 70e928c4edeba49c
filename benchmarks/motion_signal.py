"""How much motion the parameter-free tracks carry (issue 15, diagnosis).

Reads the cached region features that `benchmarks/heldout_eval.py --preset
regions` left in its work folder (EfficientNet-Lite0 7x7 grids of 8 frames)
and the held-out set's `metadata.json`, runs `layers.motion_tracks.
track_geometry` on every one-shape clip, and reports:

- per motion, the mean change (last two frames minus first two) of the
  change map's `(x, y)` and of the contrast map's spread and mass;
- the test clips' motion named by a nearest class mean over those 8
  changes, with the class means taken on the training clips — no learning
  beyond 6 averages, so it measures the signal, not a model.

Prints a table, writes `benchmarks/results/motion_signal.json`. Never
asserts.

    python benchmarks/heldout_eval.py --renderer sprites --preset regions --work W
    python benchmarks/motion_signal.py --work W --renderers sprites outlines
"""

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MOTIONS = ("left", "right", "up", "down", "grow", "shrink")


def track_changes(features_dir, clip_ids, temperature):
    from keras import ops

    from keras_pvc.layers.motion_tracks import track_geometry

    rows = []
    for clip_id in clip_ids:
        nodes = np.load(os.path.join(features_dir, f"{clip_id}.npy"), allow_pickle=False)
        tracks = ops.convert_to_numpy(
            track_geometry(nodes[None].astype("float32"), (7, 7), temperature)
        )[0]
        rows.append(tracks[-2:].mean(0) - tracks[:2].mean(0))
    return np.stack(rows)


def evaluate(work, renderer, seed, temperature):
    data = os.path.join(work, f"{renderer}_250_40_s{seed}")
    features = os.path.join(work, f"features_{os.path.basename(data)}_regions")
    with open(os.path.join(data, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    splits = {}
    with open(os.path.join(data, "split.tsv")) as handle:
        for line in handle:
            parts = line.strip().split("\t")
            if len(parts) == 2:
                splits[parts[0]] = parts[1]
    ids = sorted(i for i, s in scenes.items() if s["type"] == "single")
    changes = track_changes(features, ids, temperature)
    motions = np.array([scenes[i]["motion"] for i in ids])
    train = np.array([splits.get(i) == "train" for i in ids])
    # Each of the 8 numbers in units of its spread over the training clips.
    scale = changes[train].std(0) + 1e-6
    means = np.stack([changes[train & (motions == m)].mean(0) for m in MOTIONS])
    distance = (((changes[:, None] - means[None]) / scale) ** 2).sum(-1)
    named = np.array(MOTIONS)[distance.argmin(-1)]
    test = ~train
    per_motion = {
        m: {
            "clips": int((motions == m).sum()),
            "dx_change": float(changes[motions == m, 0].mean()),
            "dy_change": float(changes[motions == m, 1].mean()),
            "dspread_contrast": float(changes[motions == m, 6].mean()),
            "dmass_contrast": float(changes[motions == m, 7].mean()),
        }
        for m in MOTIONS
    }
    return {
        "renderer": renderer,
        "seed": seed,
        "temperature": temperature,
        "test_clips": int(test.sum()),
        "nearest_mean_test_accuracy": float((named[test] == motions[test]).mean()),
        "nearest_mean_train_accuracy": float((named[train] == motions[train]).mean()),
        "per_motion": per_motion,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/heldout_eval")
    parser.add_argument("--renderers", nargs="+", default=["sprites", "outlines"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument(
        "--json", default=os.path.join(REPO, "benchmarks", "results", "motion_signal.json")
    )
    args = parser.parse_args()
    results = [evaluate(args.work, r, args.seed, args.temperature) for r in args.renderers]
    for result in results:
        print(
            f"{result['renderer']}: motion of {result['test_clips']} one-shape test "
            f"clips named by a nearest class mean over the 8 track changes: "
            f"{100 * result['nearest_mean_test_accuracy']:.0f}% "
            f"(training clips {100 * result['nearest_mean_train_accuracy']:.0f}%)"
        )
        print("  motion   clips  dx(change)  dy(change)  dspread(contrast)  dmass(contrast)")
        for motion, row in result["per_motion"].items():
            print(
                f"  {motion:7s} {row['clips']:5d}  {row['dx_change']:+10.2f}  "
                f"{row['dy_change']:+10.2f}  {row['dspread_contrast']:+17.3f}  "
                f"{row['dmass_contrast']:+15.3f}"
            )
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
