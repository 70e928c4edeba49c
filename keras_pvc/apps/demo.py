"""The embedded default: procedural videos -> train -> caption -> score.

`keras-pvc demo` runs this on a fresh machine with nothing downloaded: it
writes the procedural dataset (MSVD layout), reads its videos with OpenCV,
trains the `procedural` preset end to end (frame CNN, spatial graph, LSTM
encoder, attention decoder) with cross-entropy, optionally refines it with
self-critical REINFORCE, captions the held-out clips and scores them.
"""

import os

from keras_pvc.training.runs import print_scene_accuracy
from keras_pvc.training.runs import score_scenes

# The demo's knobs; `--quick` swaps in the second set. Epochs None: the
# `procedural` preset's (frames, too, are always the preset's).
FULL = {"num_clips": 1000, "epochs": None, "rl_epochs": 0}
QUICK = {"num_clips": 120, "epochs": 3, "rl_epochs": 1}


def run_demo(
    out="runs/demo",
    quick=False,
    graph=True,
    epochs=None,
    rl_epochs=None,
    num_clips=None,
    seed=0,
    data_root=None,
    resume=False,
    visuals=8,
    verbose=1,
    overrides=None,
):
    """Generates the procedural dataset, trains, evaluates; returns metrics.

    Args:
        out: str. The run folder (see `keras_pvc.training`).
        quick: bool. A ~2 minute run for CI (fewer clips and epochs).
        graph: bool. Use the spatial graph (False: the ablation, regions are
            mean-pooled).
        epochs: int or None. Override the cross-entropy epochs.
        rl_epochs: int or None. Override the self-critical epochs.
        num_clips: int or None. Override the number of clips.
        seed: int. Dataset and training seed.
        data_root: str or None. Where the dataset goes (default
            `<out>/data`); reused when it already holds the same dataset.
        resume: bool. Continue an interrupted run from its backup.
        visuals: int. Held-out clips to draw (frames, caption, attention)
            into `<out>/visuals/` and the HTML report `<out>/report.html`;
            0 for none.
        verbose: int. 0 silent, 1 progress bars.
        overrides: dict or None. Knobs of the `procedural` preset to change
            (`keras-pvc demo --set KEY=VALUE`).

    Returns:
        The run summary (`<out>/metrics.json`).
    """
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.datasets.procedural import generate_procedural_dataset
    from keras_pvc.training.runs import relation_clip_ids
    from keras_pvc.training.runs import train_run

    knobs = dict(QUICK if quick else FULL)
    for key, value in (("epochs", epochs), ("rl_epochs", rl_epochs), ("num_clips", num_clips)):
        if value is not None:
            knobs[key] = value
    data_root = data_root or os.path.join(out, "data")
    if verbose:
        print(f"Procedural dataset ({knobs['num_clips']} clips) in {data_root}", flush=True)
    generate_procedural_dataset(
        data_root, num_clips=knobs["num_clips"], num_frames=16, seed=seed
    )
    overrides = {**({} if graph else {"graph": None}), **(overrides or {})}
    summary = train_run(
        load_msvd(data_root),
        out,
        preset="procedural",
        overrides=overrides,
        epochs=knobs["epochs"],
        rl_epochs=knobs["rl_epochs"],
        subsets={"relations": relation_clip_ids(data_root)},
        seed=seed,
        resume=resume,
        verbose=verbose,
    )
    summary["scene_accuracy"] = score_scenes(out, data_root)
    if verbose:
        print_scene_accuracy(summary["scene_accuracy"])
    if visuals:
        from keras_pvc.apps.report import write_report
        from keras_pvc.apps.visualize import visualize_run

        visualize_run(out, num_clips=visuals)
        report = write_report(out, num_clips=visuals)
        if verbose:
            print(f"Report: {report}", flush=True)
    return summary
