"""Preset variants over held-out renderers and seeds: one table.

For each renderer R and seed S this makes the held-out set and its cached
features as a user would (`heldout_eval.generate`, then `keras-pvc extract`,
both skipped when already there), then trains each variant on them with
`benchmarks/heldout_overrides.py` (in subprocesses, `--jobs` at a time) and
grades the test split's captions against the scenes. A variant whose grades
JSON is already in `WORK/grades/` is read, not rerun, so an interrupted
sweep resumes. Prints, per variant and renderer, the one-object and pair
clips with every attribute right for each seed and their mean, the motion
and still-object rates, and writes the table to `--json`. Never asserts.

    python benchmarks/heldout_seeds.py --renderers sprites outlines --seeds 0 1 2 \\
        --variants default notwins --work W --json docs/results/heldout_seeds.json

Variants: NAME (one of VARIANTS below) or NAME=JSON (preset overrides).
A variant is overrides of the preset as it is now (`regions` trains with
reversed twins and motion tracks since 2026-12-03), and its grades file is named after it:
give a new WORK (or delete WORK/grades) when the preset changes.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from keras_pvc.presets import PRESETS  # noqa: E402  (plain dicts, no Keras)

# `regions`' graph as the preset has it, less the motion tracks.
_GRAPH = {k: v for k, v in PRESETS["regions"]["graph"].items() if k != "motion_tracks"}
VARIANTS = {
    "default": {},
    "twins": {"reversed_twins": True},
    "notwins": {"reversed_twins": False},
    # `regions`' graph without / with the motion tracks (with since 2026-12-03).
    "notracks": {"graph": _GRAPH},
    "tracks10": {"graph": {**_GRAPH, "motion_tracks": {"scale": 10.0}}},
    "notracks_notwins": {"graph": _GRAPH, "reversed_twins": False},
    # The graph switched off: the raw regions mean-pooled (no message
    # passing, no centring), with or without the same motion tracks.
    "nograph": {"graph": None},
    "nograph_tracks": {"graph": {"units": 1280, "num_layers": 0, "pooling": "mean",
                                 "motion_tracks": {"scale": 10.0}}},
    "nograph_notwins": {"graph": None, "reversed_twins": False},
    # The still object's "what" pooled by contrast, not uniformly.
    "contrast": {"graph": {**_GRAPH, "temporal_centering": {"static": "contrast"},
                           "motion_tracks": {"scale": 10.0}}},
    # ... and by contrast less change, so the mover's trail does not count.
    "still": {"graph": {**_GRAPH, "temporal_centering": {"static": "still"},
                        "motion_tracks": {"scale": 10.0}}},
    # ... and pooled near-uniformly over the regions that do not change.
    "unmoved": {"graph": {**_GRAPH, "temporal_centering": {"static": "unmoved"},
                          "motion_tracks": {"scale": 10.0}}},
    # ... less the background (the median region).
    "figure": {"graph": {**_GRAPH, "temporal_centering": {"static": "figure"},
                         "motion_tracks": {"scale": 10.0}}},
    # The pooled mean and, beside it, the region that stands out and stays put.
    "objects": {"graph": {**_GRAPH, "temporal_centering": {"static": "objects"},
                          "motion_tracks": {"scale": 10.0}}},
    # The pooled mean and, frame by frame, the appearance of what moves.
    "roles": {"graph": {**_GRAPH, "temporal_centering": {"static": "roles"},
                        "motion_tracks": {"scale": 10.0}}},
    # The default, and every region of every frame as an entry the decoder
    # attends to beside the frames' states (`RegionMemory`).
    "memory": {"region_memory": True},
}


def parse_variant(text):
    name, _, overrides = text.partition("=")
    if overrides:
        return name, json.loads(overrides)
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}: one of {sorted(VARIANTS)} or NAME=JSON")
    return name, VARIANTS[name]


def prepare(renderer, seed, preset, work):
    """The data and features folders of one held-out set, made if missing."""
    import heldout_eval

    data = os.path.join(work, f"{renderer}_250_40_s{seed}")
    if not os.path.isfile(os.path.join(data, "metadata.json")):
        heldout_eval.generate(renderer, data, 250, 40, seed)
    heldout_eval.extract(REPO, data, preset, work)  # resumable; None for a frames preset
    return data


def train_variant(renderer, seed, preset, name, overrides, work):
    """Grades of one variant's run, trained by heldout_overrides.py if missing."""
    path = os.path.join(work, "grades", f"{renderer}_s{seed}_{preset}_{name}.json")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        command = [
            sys.executable, os.path.join(REPO, "benchmarks", "heldout_overrides.py"),
            "--renderer", renderer, "--seed", str(seed), "--preset", preset,
            "--overrides", json.dumps(overrides), "--name", name, "--work", work,
            "--json", path,
        ]
        log = os.path.join(work, f"run_{renderer}_s{seed}_{name}.log")
        print(f"[sweep] training {renderer} seed {seed} {name} (log {log})", flush=True)
        with open(log, "w") as handle:
            result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        if result.returncode:
            print(f"[sweep] {renderer} seed {seed} {name} failed (rc {result.returncode}); see {log}")
            return None
    with open(path) as handle:
        return json.load(handle)


def summarise(results, variants, renderers, seeds):
    rows = []
    for name, _ in variants:
        for renderer in renderers:
            runs = [results.get((renderer, seed, name)) for seed in seeds]
            runs = [run for run in runs if run is not None]
            if not runs:
                continue

            def mean(kind, key):
                return sum(run["grades"][kind][key] for run in runs) / len(runs)

            rows.append({
                "variant": name, "renderer": renderer,
                "seeds": [run["seed"] for run in runs],
                "single_all": [run["grades"]["single"]["all"] for run in runs],
                "pair_all": [run["grades"]["pair"]["all"] for run in runs],
                "single_all_mean": mean("single", "all"),
                "single_motion_mean": mean("single", "motion"),
                "pair_all_mean": mean("pair", "all"),
                "pair_other_mean": mean("pair", "other"),
                "pair_relation_mean": mean("pair", "relation"),
                "train_seconds": [run["train_seconds"] for run in runs],
            })
    return rows


def print_table(rows):
    print("| variant | set | one object all (seeds) | mean | motion | pairs all (seeds) | mean | other | relation | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        seeds_single = ", ".join(f"{100 * v:.0f}" for v in row["single_all"])
        seeds_pair = ", ".join(f"{100 * v:.0f}" for v in row["pair_all"])
        train = ", ".join(f"{v:.0f}" for v in row["train_seconds"])
        print(
            f"| {row['variant']} | {row['renderer']} | {seeds_single} | **{100 * row['single_all_mean']:.0f}%** "
            f"| {100 * row['single_motion_mean']:.0f} | {seeds_pair} | **{100 * row['pair_all_mean']:.0f}%** "
            f"| {100 * row['pair_other_mean']:.0f} | {100 * row['pair_relation_mean']:.0f} | {train} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderers", nargs="+", default=["sprites", "outlines"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["default", "notwins"])
    parser.add_argument("--preset", default="regions")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time")
    parser.add_argument("--work", default="/tmp/heldout_seeds")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "heldout_seeds.json"))
    args = parser.parse_args()

    variants = [parse_variant(text) for text in args.variants]
    os.makedirs(args.work, exist_ok=True)
    futures = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for renderer in args.renderers:
            for seed in args.seeds:  # a set's runs start while the next set is extracted
                print(f"[sweep] data and features: {renderer} seed {seed}", flush=True)
                prepare(renderer, seed, args.preset, args.work)
                for name, overrides in variants:
                    futures[(renderer, seed, name)] = pool.submit(
                        train_variant, renderer, seed, args.preset, name, overrides, args.work
                    )
        results = {key: future.result() for key, future in futures.items()}
    rows = summarise(results, variants, args.renderers, args.seeds)
    print_table(rows)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    output = {
        "benchmark": "heldout_seeds",
        "command": " ".join(["python", "benchmarks/heldout_seeds.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"), "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
        "preset": args.preset, "variants": dict(variants), "rows": rows,
        "runs": {f"{r}_s{s}_{n}": v for (r, s, n), v in results.items() if v is not None},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(output, handle, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
