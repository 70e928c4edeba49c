"""The embedded default: procedural videos -> train -> caption -> score.

`keras-pvc demo` runs this on a fresh machine with nothing downloaded: it
writes the procedural dataset (MSVD layout), reads its videos with OpenCV,
trains the `procedural` preset end to end (frame CNN, spatial graph, LSTM
encoder, attention decoder) with cross-entropy, optionally refines it with
self-critical REINFORCE, captions the held-out clips and scores them.

By default the split is compositional (`generate_procedural_dataset(...,
split="compositional")`): the test clips are colour x shape x relation
combinations no training clip shows, and the val clips are new renders of
seen combinations, so one run reports both.
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
    split="compositional",
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
        split: str. `"compositional"` (test: held-out combinations; the val
            clips, seen combinations, are captioned and checked too) or
            `"random"` (test: a random 15%).

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
        data_root, num_clips=knobs["num_clips"], num_frames=16, seed=seed, split=split
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
        name = "unseen combinations (test)" if split == "compositional" else "test"
        print_scene_accuracy(summary["scene_accuracy"], name)
    if split == "compositional":
        summary["seen_scene_accuracy"] = score_seen_combinations(out, data_root)
        if verbose:
            print_scene_accuracy(summary["seen_scene_accuracy"], "seen combinations (val)")
    if visuals:
        from keras_pvc.apps.report import write_report
        from keras_pvc.apps.visualize import visualize_run

        visualize_run(out, num_clips=visuals)
        report = write_report(out, num_clips=visuals)
        if verbose:
            print(f"Report: {report}", flush=True)
    return summary


def score_seen_combinations(out, data_root):
    """Captions a compositional run's val clips (new renders of combinations
    the training clips show) with the run's model and checks them against
    their scenes, the counterpart of `score_scenes` on the test clips.

    The val clips also chose the best epoch (by validation loss), so this is
    a slightly optimistic reference for the unseen combinations' score.
    Writes `<out>/scene_accuracy_val.json` and adds the result to
    `<out>/metrics.json` as `"seen_scene_accuracy"`; returns it.
    """
    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.training.runs import record_scene_accuracy

    val = [clip for clip in load_msvd(data_root) if clip.split == "val"]
    if not val:
        raise ValueError(f"{data_root}: no val clips to check the seen combinations on.")
    return record_scene_accuracy(
        out, data_root, caption_run_clips(out, val), key="seen_scene_accuracy",
        file_name="scene_accuracy_val.json", with_predictions=True,
    )


def caption_run_clips(out, clips):
    """Greedy captions `{clip_id: caption}` of frame clips by the model a
    run saved (`<out>/model`), read and sampled as that model's
    preprocessor says."""
    import keras_pvc
    from keras_pvc.datasets.pipeline import read_clip_videos
    from keras_pvc.training.runs import caption_split

    model = keras_pvc.from_preset(os.path.join(out, "model"))
    preprocessor = model.preprocessor
    arrays = read_clip_videos(clips, preprocessor.num_frames, preprocessor.frame_size, verbose=0)
    return caption_split(model, arrays)
