"""A preset with overrides on a held-out set already made by heldout_eval.py.

`keras-pvc train` takes no knob overrides (yet), so this trains in-process
(`keras_pvc.training.runs.train_run`, as `train` does) on the data and features folders
`benchmarks/heldout_eval.py --preset NAME` left in its work folder, and grades
the run's `predictions.json` (the test split captioned from the cached
features, which matched `keras-pvc caption` on the videos for `regions`).
Prints the table, writes the grades to `--json`. Never asserts.

    python benchmarks/heldout_overrides.py --renderer sprites --preset regions \\
        --overrides '{"graph": {"units": 1280, "num_layers": 0, "pooling": "keypoints",
                      "pooling_heads": 16, "keypoint_summary": "max"}}'
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", choices=("sprites", "outlines", "stage"), default="sprites")
    parser.add_argument("--preset", default="regions")
    parser.add_argument("--overrides", default="{}", help="JSON object of preset knobs")
    parser.add_argument("--name", default="variant", help="run folder suffix")
    parser.add_argument(
        "--features-preset", default=None,
        help="whose features folder to read (default: --preset's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/heldout_eval")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from keras_pvc.datasets.heldout.attributes import format_grades
    from keras_pvc.datasets.heldout.attributes import grade_captions
    from keras_pvc.training.runs import load_dataset_clips
    from keras_pvc.training.runs import train_run

    data = os.path.join(args.work, f"{args.renderer}_250_40_s{args.seed}")
    features = os.path.join(args.work, f"features_{os.path.basename(data)}_{args.features_preset or args.preset}"
    )
    run = os.path.join(args.work, f"run_{os.path.basename(data)}_{args.preset}_{args.name}")
    overrides = json.loads(args.overrides)
    started = time.time()
    summary = train_run(
        load_dataset_clips("msvd", data), run, preset=args.preset, overrides=overrides,
        features_dir=features, seed=args.seed, verbose=0,
    )
    seconds = time.time() - started
    with open(os.path.join(data, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    with open(os.path.join(run, "predictions.json")) as handle:
        grades = grade_captions(scenes, json.load(handle))
    print(f"{args.renderer}, preset {args.preset} + {overrides}: train {seconds:.0f} s")
    print(format_grades(grades))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    result = {
        "command": " ".join(["python", "benchmarks/heldout_overrides.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
        "renderer": args.renderer, "preset": args.preset, "overrides": overrides,
        "seed": args.seed, "train_seconds": round(seconds, 1),
        "parameters": summary["parameters"],
        "grades": {k: v for k, v in grades.items() if k != "per_clip"},
    }
    path = args.json or os.path.join(
        REPO, "benchmarks", "results", f"heldout_{args.renderer}_{args.preset}_{args.name}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
