"""`keras-pvc demo` over seeds, with and without the graph: one table.

For each seed S, as a user would, in subprocesses:

    python -m keras_pvc demo --seed S --out OUT/g_S --visuals 0
    python -m keras_pvc demo --seed S --no-graph --data OUT/g_S/data --out OUT/n_S --visuals 0

(a run folder that already holds its `metrics.json` is read, not rerun, so an
interrupted sweep resumes). The demo's split is compositional by default:
its test clips are colour x shape x relation combinations that no training
clip shows, its val clips new renders of seen ones. Prints, per seed and as
the mean, the captions that state their scene exactly on each, CIDEr-D on
the test clips and the run's time, and writes the table to `--json`. Never
asserts.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out runs/demo_seeds \\
        --json docs/results/demo_seeds_compositional.json
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_folder(out, seed, graph, extra):
    """The run folder of one demo run, made by `keras-pvc demo` if missing."""
    folder = os.path.join(out, f"{'g' if graph else 'n'}_{seed}")
    if os.path.isfile(os.path.join(folder, "metrics.json")):
        return folder
    command = [sys.executable, "-m", "keras_pvc", "demo", "--seed", str(seed),
               "--out", folder, "--visuals", "0", *extra]
    if not graph:
        command += ["--no-graph", "--data", os.path.join(out, f"g_{seed}", "data")]
    os.makedirs(out, exist_ok=True)
    with open(folder + ".log", "w") as log:
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    return folder


def row(folder):
    with open(os.path.join(folder, "metrics.json")) as handle:
        metrics = json.load(handle)
    seen = metrics.get("seen_scene_accuracy")
    return {
        "folder": folder,
        "test_exact": metrics["scene_accuracy"]["exact"],
        "test_clips": metrics["scene_accuracy"]["num_clips"],
        "test_attributes": metrics["scene_accuracy"]["attributes"],
        "val_exact": None if seen is None else seen["exact"],
        "val_clips": None if seen is None else seen["num_clips"],
        "val_attributes": None if seen is None else seen["attributes"],
        "cider": metrics["metrics"]["all"]["CIDEr"],
        "seconds": metrics["seconds"],
        "parameters": metrics["parameters"],
    }


def percent(value):
    return "—" if value is None else f"{100 * value:.0f}%"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/demo_seeds")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "demo_seeds.json"))
    parser.add_argument("extra", nargs="*", help="more `keras-pvc demo` arguments, after --")
    args = parser.parse_args()
    rows = {}
    for graph in (True, False):
        for seed in args.seeds:
            rows[("graph" if graph else "no_graph", seed)] = row(run_folder(args.out, seed, graph, args.extra))
    print("| run | seed | unseen combinations (test): exact | seen combinations (val): exact | CIDEr (test) | run time |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name in ("graph", "no_graph"):
        chosen = [rows[(name, seed)] for seed in args.seeds]
        for seed, result in zip(args.seeds, chosen):
            print(f"| {name} | {seed} | {percent(result['test_exact'])} of {result['test_clips']} | "
                  f"{percent(result['val_exact'])} of {result['val_clips']} | "
                  f"{100 * result['cider']:.1f} | {result['seconds']:.0f} s |")
        mean = {key: sum(r[key] for r in chosen) / len(chosen) for key in ("test_exact", "cider")}
        vals = [r["val_exact"] for r in chosen if r["val_exact"] is not None]
        mean["val_exact"] = sum(vals) / len(vals) if vals else None
        print(f"| {name} | mean | **{percent(mean['test_exact'])}** | {percent(mean['val_exact'])} | "
              f"{100 * mean['cider']:.1f} | |")
        summary[name] = mean
    report = {
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, cwd=REPO).stdout.strip(),
        "mean": summary,
        "runs": {f"{name}_{seed}": value for (name, seed), value in rows.items()},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"Wrote {args.json}")


if __name__ == "__main__":
    main()
