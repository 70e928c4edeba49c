"""The default `keras-pvc train` on a folder nobody here tuned on (issue 15).

Generates a held-out set (`keras_pvc.datasets.heldout`: `sprites`,
`outlines` or `stage`, MSVD layout, 80/20 train/test, no val), then, as a user would,
in subprocesses:

    python -m keras_pvc train --dataset msvd --root DATA --out RUN
    python -m keras_pvc caption DATA/YouTubeClips/<test clips>.avi --model RUN --json

and grades the test captions per attribute (`attributes.grade_captions`:
colour, shape, motion of one-shape clips; mover, relation, other of pairs;
all attributes right). Prints a table and writes
`benchmarks/results/heldout_eval.json` (or `--json`). Never asserts.

`--code REV` runs the CLI of another commit (its tree `git archive`d into the
work folder), e.g. the commit before BatchNorm recalibration:

    python benchmarks/heldout_eval.py --renderer sprites
    python benchmarks/heldout_eval.py --renderer sprites --code af30968 --json before.json
    python benchmarks/heldout_eval.py --renderer outlines --epochs 30 --seed 1

`--preset NAME` trains that preset instead of `train`'s default. A preset
that reads cached features (e.g. `regions`: EfficientNet-Lite0 region grids)
first has them extracted into the work folder, timed apart:

    python -m keras_pvc extract --root DATA --out FEATURES --preset NAME
    python -m keras_pvc train ... --preset NAME --features FEATURES

and the test clips are still captioned from their videos by `keras-pvc
caption` (frames through the run's recorded frame CNN); the run's own
`predictions.json` (the test split captioned from the cached features, as
`train` scores it) is graded too, as a cross-check.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# `stage` was written after `regions` was chosen on the other two (issue 15).
RENDERERS = ("sprites", "outlines", "stage")


def generate(renderer, root, num_clips, num_frames, seed):
    from keras_pvc.datasets.heldout import outlines
    from keras_pvc.datasets.heldout import sprites
    from keras_pvc.datasets.heldout import stage

    if renderer == "sprites":
        return sprites.generate_sprites_dataset(root, num_clips, num_frames, seed=seed)
    if num_frames is not None and num_frames != 40:
        lengths = "24-48" if renderer == "outlines" else "30-50"
        print(f"{renderer} clips are {lengths} frames long; --num-frames is ignored")
    if renderer == "stage":
        return stage.generate_stage_dataset(root, num_clips, seed=seed)
    return outlines.generate_outlines_dataset(root, num_clips, seed=seed)


def code_tree(rev, work):
    """A checkout of `rev` (for its CLI), or the working tree for None."""
    if rev is None:
        return REPO
    target = os.path.join(work, f"code_{rev}")
    if not os.path.isdir(target):
        os.makedirs(target)
        archive = subprocess.run(
            ["git", "-C", REPO, "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def cli_module(code):
    """`keras_pvc` (its `__main__`), or `keras_pvc.cli` in a `--code` tree
    from before the package had tiers (issue 17)."""
    if os.path.exists(os.path.join(code, "keras_pvc", "__main__.py")):
        return "keras_pvc"
    return "keras_pvc.cli"


def run_cli(code, arguments, log_path):
    env = dict(os.environ, PYTHONPATH=code, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.time()
    with open(log_path, "w") as log:
        result = subprocess.run(
            [sys.executable, "-m", cli_module(code)] + arguments,
            cwd=code, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    seconds = time.time() - started
    with open(log_path, "a") as log:
        log.write(result.stdout)
    if result.returncode:
        raise SystemExit(f"`keras-pvc {arguments[0]}` failed ({result.returncode}); see {log_path}")
    return result.stdout, seconds


def extract(code, data, preset, work):
    """`keras-pvc extract` for a features preset: `(folder, seconds)`, or None.

    Resumable: a rerun finds the clips done and only checks them.
    """
    from keras_pvc.presets import preset_config

    if preset_config(preset)["input_kind"] != "features":
        return None
    features = os.path.join(work, f"features_{os.path.basename(data)}_{preset}")
    _, seconds = run_cli(
        code,
        ["extract", "--dataset", "msvd", "--root", data, "--out", features,
         "--preset", preset, "--silent"],
        features + ".extract.log",
    )
    return features, seconds


def caption(code, data, run, clip_ids, name):
    """`keras-pvc caption` on clips' videos: `({clip_id: caption}, seconds)`."""
    videos = [os.path.join(data, "YouTubeClips", clip_id + ".avi") for clip_id in clip_ids]
    output, seconds = run_cli(
        code, ["caption"] + videos + ["--model", run, "--json"], f"{run}.caption_{name}.log"
    )
    captions = json.loads(output[output.index("{"):])["captions"]
    return {os.path.basename(path)[: -len(".avi")]: text for path, text in captions.items()}, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renderer", choices=RENDERERS, default="sprites")
    parser.add_argument("--num-clips", type=int, default=250)
    parser.add_argument("--num-frames", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="data seed and --seed of train")
    parser.add_argument("--epochs", type=int, default=None, help="cut the preset's epochs")
    parser.add_argument(
        "--preset", default=None,
        help="train this preset (default: whatever `train` picks); a features "
        "preset gets its features extracted into the work folder first",
    )
    parser.add_argument("--code", default=None, help="a git revision whose CLI to run")
    parser.add_argument(
        "--grade-train", type=int, default=100,
        help="also caption and grade this many training clips (0: none): "
        "tells a model that cannot fit from one that does not generalise",
    )
    parser.add_argument(
        "--reuse", action="store_true",
        help="grade an existing run folder (same arguments) instead of training again",
    )
    parser.add_argument("--work", default="/tmp/heldout_eval", help="data and run folders")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "heldout_eval.json"))
    args = parser.parse_args()

    from keras_pvc.datasets.heldout.attributes import format_grades
    from keras_pvc.datasets.heldout.attributes import grade_captions

    os.makedirs(args.work, exist_ok=True)
    data = os.path.join(args.work, f"{args.renderer}_{args.num_clips}_{args.num_frames}_s{args.seed}")
    started = time.time()
    generate(args.renderer, data, args.num_clips, args.num_frames, args.seed)
    generate_seconds = time.time() - started
    code = code_tree(args.code, args.work)
    tag = args.code or "tree"
    if args.preset:
        tag += f"_{args.preset}"
    run = os.path.join(args.work, f"run_{os.path.basename(data)}_{tag}")
    train = ["train", "--dataset", "msvd", "--root", data, "--out", run, "--seed", str(args.seed)]
    extract_seconds = None
    if args.preset:
        train += ["--preset", args.preset]
        features = extract(code, data, args.preset, args.work)
        if features is not None:
            features, extract_seconds = features
            train += ["--features", features]
    if args.epochs is not None:
        train += ["--epochs", str(args.epochs)]
    if args.reuse and os.path.exists(os.path.join(run, "metrics.json")):
        with open(os.path.join(run, "metrics.json")) as handle:
            train_seconds = json.load(handle)["seconds"]  # train_run's own clock
        print(f"reusing {run} (train_run took {train_seconds} s)")
    else:
        _, train_seconds = run_cli(code, train, run + ".train.log")

    with open(os.path.join(data, "split.tsv")) as handle:
        splits = [line.split() for line in handle if line.strip()]
    test = [clip_id for clip_id, split in splits if split == "test"]
    predictions, caption_seconds = caption(code, data, run, test, "test")
    with open(os.path.join(data, "metadata.json")) as handle:
        scenes = json.load(handle)["scenes"]
    grades = grade_captions(scenes, predictions)
    train_grades = None
    if args.grade_train:
        train_clips = [clip_id for clip_id, split in splits if split == "train"]
        train_predictions, _ = caption(code, data, run, train_clips[: args.grade_train], "train")
        train_grades = grade_captions(scenes, train_predictions)
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    with open(os.path.join(run, "predictions.json")) as handle:
        run_grades = grade_captions(scenes, json.load(handle))

    print(f"{args.renderer}: {args.num_clips} clips (seed {args.seed}), code "
          f"{args.code or 'working tree'}, preset {metrics.get('preset')}; "
          + (f"extract {extract_seconds:.0f} s, " if extract_seconds is not None else "")
          + f"train {train_seconds:.0f} s, caption {len(test)} test clips "
          f"{caption_seconds:.0f} s")
    print("test clips, `keras-pvc caption` on their videos:")
    print(format_grades(grades))
    print("test clips, the run's predictions.json (as `train` scored them):")
    print(format_grades(run_grades))
    if train_grades is not None:
        print(f"the first {args.grade_train} training clips:")
        print(format_grades(train_grades))
    if metrics.get("batch_norm"):
        before, after = metrics["batch_norm"]["token_accuracy_before"], metrics["batch_norm"]["token_accuracy"]
        print(f"token accuracy on training clips (training/inference mode): "
              f"{before['training']:.3f}/{before['inference']:.3f} before recalibration, "
              f"{after['training']:.3f}/{after['inference']:.3f} after")
    result = {
        "renderer": args.renderer,
        "num_clips": args.num_clips,
        "num_frames": args.num_frames,
        "seed": args.seed,
        "epochs": metrics.get("epochs"),
        "preset": metrics.get("preset"),
        "extract_seconds": None if extract_seconds is None else round(extract_seconds, 1),
        "code": args.code or "working tree",
        "commands": {"train": train, "caption": "caption <test videos> --model RUN --json"},
        "generate_seconds": round(generate_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "caption_seconds": round(caption_seconds, 1),
        "grades": {k: v for k, v in grades.items() if k != "per_clip"},
        "run_predictions_grades": {k: v for k, v in run_grades.items() if k != "per_clip"},
        "train_grades": None if train_grades is None else {
            k: v for k, v in train_grades.items() if k != "per_clip"
        },
        "captions": predictions,
        "cider": metrics["metrics"]["all"].get("CIDEr"),
        "batch_norm": metrics.get("batch_norm"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
