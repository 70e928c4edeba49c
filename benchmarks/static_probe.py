"""How much of a pair's still object each static pooling keeps, by a linear probe.

A diagnosis for issue 15, not a captioner: on a held-out set's cached region
features, each clip's region means over its real frames are pooled over the
regions the way a `TemporalCentering` static mode pools them (and, as a
ceiling, the still object's own region), and a logistic regression (sklearn,
C=0.05, standardised) is fitted on the training split's pair clips to name
the still object's colour and shape, then scored on the test split's. Prints
a table, writes `--json`; never asserts.

    python benchmarks/static_probe.py --data W/sprites_250_40_s0 \\
        --features W/features_sprites_250_40_s0_regions
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def softmax(scores):
    scores = scores - scores.max()
    weights = np.exp(scores)
    return weights / weights.sum()


def poolings(regions, real, cell):
    """Static parts `{name: (C,)}` of one clip's regions `(T, N, C)`."""
    frames = regions[real].astype("float64")
    means = frames.mean(axis=0)  # (N, C)
    change = np.linalg.norm(frames - means, axis=-1).mean(axis=0)
    change = change / change.mean()
    background = np.median(means, axis=0)
    stands_out = np.linalg.norm(means - background, axis=-1)
    average = np.linalg.norm(means - means.mean(axis=0), axis=-1)
    unmoved = softmax(-np.square(change)) @ means
    return {
        "pooled": means.mean(axis=0),
        "unmoved": unmoved,
        "figure": unmoved - background,
        "contrast": softmax(4.0 * average / average.mean()) @ means,
        "objects (still part)": softmax(4.0 * stands_out / stands_out.mean() - np.square(change)) @ means,
        "oracle: the still object's region": means[cell],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--features", required=True)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from still_object_oracle import still_cell

    with open(os.path.join(args.data, "metadata.json")) as handle:
        metadata = json.load(handle)
    with open(os.path.join(args.data, "split.tsv")) as handle:
        split = dict(line.strip().split("\t")[:2] for line in handle if line.strip() and not line.startswith("clip"))
    clips = [clip for clip in sorted(metadata["scenes"]) if metadata["scenes"][clip]["type"] == "pair"]
    pooled, targets = {}, {"colour": [], "shape": []}
    for clip in clips:
        scene = metadata["scenes"][clip]
        regions = np.load(os.path.join(args.features, f"{clip}.npy"), allow_pickle=False)
        real = np.load(os.path.join(args.features, f"{clip}.mask.npy"), allow_pickle=False)
        cell = still_cell(scene, metadata["width"], metadata["height"])
        for name, value in poolings(regions, real, cell).items():
            pooled.setdefault(name, []).append(value)
        targets["colour"].append(scene["other"]["color"])
        targets["shape"].append(scene["other"]["shape"])
    train = np.array([split.get(clip) == "train" for clip in clips])
    rows = {}
    print(f"{args.data}: {train.sum()} training and {(~train).sum()} test pair clips")
    print("| static part | still object's colour | shape |\n|---|---|---|")
    for name, values in pooled.items():
        x = np.stack(values)
        x = StandardScaler().fit(x[train]).transform(x)
        rows[name] = {}
        for attribute, labels in targets.items():
            labels = np.array(labels)
            probe = LogisticRegression(C=0.05, max_iter=2000).fit(x[train], labels[train])
            rows[name][attribute] = float((probe.predict(x[~train]) == labels[~train]).mean())
        print(f"| {name} | {100 * rows[name]['colour']:.0f}% | {100 * rows[name]['shape']:.0f}% |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"benchmark": "static_probe", "data": args.data,
                       "command": " ".join(["python", "benchmarks/static_probe.py", *sys.argv[1:]]),
                       "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
