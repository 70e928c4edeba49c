"""Diagnosis for issue 15: what if the static part held a pair's still object?

Copies a held-out set's cached region features (what `heldout_seeds.py`
leaves in WORK) to `WORK/features_{set}_oracle`, where every pair clip's
real frames get one constant vector added to all their regions: the still
object's own region's clip mean (the 7x7 cell holding its centre, from the
set's `metadata.json`) less the clip mean over all regions. The centred
regions and the motion tracks' relative geometry do not change; the
`"pooled"` static part becomes exactly the still object's region (with
`--mix 0.5`, halfway between it and the mean over all regions, where the
mover is too: folder and run `oracle50`). Then the
preset (with `--overrides`) is trained on these features and graded by
`heldout_overrides.py` (run `run_{set}_regions_oracle`). The test clips
are changed too: a ceiling, not a result. Never asserts.

    python benchmarks/still_object_oracle.py --renderer sprites --seed 0 --work W [--mix 0.5]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def still_cell(scene, width, height, grid=7):
    """Index of the grid cell that holds the still object's centre."""
    x, y = scene["other"]["start"]
    column = min(int(x / width * grid), grid - 1)
    row = min(int(y / height * grid), grid - 1)
    return row * grid + column


def write_oracle(data, features, out, mix=1.0):
    with open(os.path.join(data, "metadata.json")) as handle:
        metadata = json.load(handle)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(features, out)
    changed = 0
    for clip, scene in metadata["scenes"].items():
        if scene["type"] != "pair":
            continue
        regions = np.load(os.path.join(features, f"{clip}.npy"), allow_pickle=False).astype("float32")
        real = np.load(os.path.join(features, f"{clip}.mask.npy"), allow_pickle=False)
        means = regions[real].mean(axis=0)  # (N, C)
        cell = still_cell(scene, metadata["width"], metadata["height"])
        regions[real] += mix * (means[cell] - means.mean(axis=0))
        np.save(os.path.join(out, f"{clip}.npy"), regions.astype("float16"))
        changed += 1
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", choices=("sprites", "outlines", "stage"), default="sprites")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", required=True)
    parser.add_argument("--overrides", default="{}")
    parser.add_argument("--mix", type=float, default=1.0, help="how far toward the still object's region")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    name = f"{args.renderer}_250_40_s{args.seed}"
    data = os.path.join(args.work, name)
    features = os.path.join(args.work, f"features_{name}_regions")
    if not os.path.isdir(features):
        raise SystemExit(f"{features}: no cached features; run heldout_seeds.py on this set first")
    oracle = "oracle" if args.mix == 1.0 else f"oracle{round(100 * args.mix)}"
    changed = write_oracle(data, features, os.path.join(args.work, f"features_{name}_{oracle}"), args.mix)
    print(f"oracle static part written for {changed} pair clips", flush=True)
    command = [
        sys.executable, os.path.join(REPO, "benchmarks", "heldout_overrides.py"),
        "--renderer", args.renderer, "--seed", str(args.seed), "--preset", "regions",
        "--features-preset", oracle, "--name", oracle, "--overrides", args.overrides,
        "--work", args.work, "--json", args.json or os.path.join(args.work, f"{oracle}_{name}.json"),
    ]
    raise SystemExit(subprocess.call(command, cwd=REPO))


if __name__ == "__main__":
    main()
