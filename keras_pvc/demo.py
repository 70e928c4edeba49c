"""The embedded default: procedural videos -> train -> caption -> score.

`keras-pvc demo` runs this on a fresh machine with nothing downloaded: it
writes the procedural dataset (MSVD layout), reads its videos with OpenCV,
trains the `procedural` preset end to end (frame CNN, spatial graph, LSTM
encoder, attention decoder) with cross-entropy, captions the held-out clips
and scores them.
"""

import json
import os
import time

from keras_pvc.training import write_json

# The demo's knobs; `--quick` swaps in the second column.
FULL = {"num_clips": 400, "epochs": 40, "num_frames": 8}
QUICK = {"num_clips": 120, "epochs": 4, "num_frames": 8}


def relation_clip_ids(data_root):
    """Clips whose captions state a relation between two shapes."""
    with open(os.path.join(data_root, "metadata.json"), encoding="utf-8") as handle:
        scenes = json.load(handle).get("scenes", {})
    return {
        clip_id
        for clip_id, scene in scenes.items()
        if len(scene.get("shapes", ())) == 2
    }


def score_captions(clips, predictions, subsets=None):
    """Metrics of `predictions` against the clips' references, per subset.

    Returns `{"all": scores, name: scores, ...}`; scores from
    `keras_pvc.metrics.evaluate_captions`.
    """
    from keras_pvc.metrics import evaluate_captions

    references = {clip.clip_id: clip.references for clip in clips}
    results = {"all": dict(evaluate_captions(references, predictions))}
    for name, clip_ids in (subsets or {}).items():
        chosen = [clip_id for clip_id in predictions if clip_id in clip_ids]
        if chosen:
            results[name] = dict(
                evaluate_captions(
                    {clip_id: references[clip_id] for clip_id in chosen},
                    {clip_id: predictions[clip_id] for clip_id in chosen},
                )
            )
    return results


def format_scores(results):
    """A table of metrics (x100, as papers print) per subset."""
    keys = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    lines = [f"{'subset':<12}" + "".join(f"{key:>9}" for key in keys)]
    for subset, scores in results.items():
        cells = "".join(
            f"{100 * scores[key]:9.1f}"
            if isinstance(scores.get(key), (int, float))
            else f"{'-':>9}"
            for key in keys
        )
        lines.append(f"{subset:<12}" + cells)
    return "\n".join(lines)


def run_demo(
    out="runs/demo",
    quick=False,
    graph=True,
    epochs=None,
    num_clips=None,
    seed=0,
    data_root=None,
    resume=False,
    verbose=1,
):
    """Generates the procedural dataset, trains, evaluates; returns metrics.

    Args:
        out: str. The run folder (see `keras_pvc.training`).
        quick: bool. A ~1 minute run for CI (fewer clips and epochs).
        graph: bool. Use the spatial graph (False: the ablation, regions are
            mean-pooled).
        epochs: int or None. Override the epochs.
        num_clips: int or None. Override the number of clips.
        seed: int. Dataset and training seed.
        data_root: str or None. Where the dataset goes (default
            `<out>/data`); reused when it already holds the same dataset.
        resume: bool. Continue an interrupted run from its backup.
        verbose: int. 0 silent, 1 progress bars.

    Returns:
        dict with the metrics per subset, the parameter count and timings.
    """
    import keras

    from keras_pvc.datasets.msvd import load_msvd
    from keras_pvc.datasets.pipeline import caption_dataset
    from keras_pvc.datasets.pipeline import read_clip_videos
    from keras_pvc.datasets.procedural import generate_procedural_dataset
    from keras_pvc.presets import preset_config
    from keras_pvc.presets import build_video_captioner
    from keras_pvc.training import training_callbacks

    knobs = dict(QUICK if quick else FULL)
    if epochs is not None:
        knobs["epochs"] = epochs
    if num_clips is not None:
        knobs["num_clips"] = num_clips
    started = time.time()
    keras.utils.set_random_seed(seed)
    os.makedirs(out, exist_ok=True)
    data_root = data_root or os.path.join(out, "data")

    def say(message):
        if verbose:
            print(message, flush=True)

    say(f"[1/5] Procedural dataset ({knobs['num_clips']} clips) in {data_root}")
    generate_procedural_dataset(data_root, num_clips=knobs["num_clips"], seed=seed)
    clips = load_msvd(data_root)
    config = preset_config("procedural", num_frames=knobs["num_frames"])
    if not graph:
        config["graph"] = None

    say("[2/5] Reading videos")
    arrays = read_clip_videos(
        clips, config["num_frames"], config["frame_size"], verbose=verbose
    )
    for clip_id, reason in arrays.failures:
        say(f"  skipped {clip_id}: {reason}")
    train, val, test = (arrays.subset(split) for split in ("train", "val", "test"))

    from keras_pvc.models import VideoCaptionerPreprocessor

    config["vocabulary"] = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in train.clips for reference in clip.references]
    )
    config["vocabulary_size"] = len(config["vocabulary"])
    model = build_video_captioner(config)
    say(
        f"[3/5] Training the procedural preset ({model.count_params():,} "
        f"parameters, graph {'on' if graph else 'off'}) for {knobs['epochs']} epochs"
    )
    # One random reference per clip per epoch: every video passes the frame
    # CNN once an epoch, and over epochs the model sees all paraphrases.
    train_ds = caption_dataset(
        train,
        model.preprocessor,
        "frames",
        config["batch_size"],
        seed=seed,
        captions="random",
    )
    val_ds = caption_dataset(
        val, model.preprocessor, "frames", config["batch_size"], shuffle=False
    )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=knobs["epochs"],
        callbacks=training_callbacks(out, config["checkpoint_every"], resume),
        verbose=verbose,
    )
    train_seconds = time.time() - started
    model.save_to_preset(os.path.join(out, "model"))

    say(f"[4/5] Captioning {len(test.clips)} held-out clips")
    captions = model.generate(test.model_inputs("frames"))
    predictions = {clip.clip_id: caption for clip, caption in zip(test.clips, captions)}

    say("[5/5] Scoring")
    results = score_captions(
        test.clips, predictions, {"relations": relation_clip_ids(data_root)}
    )
    summary = {
        "preset": "procedural",
        "graph": graph,
        "quick": quick,
        "seed": seed,
        "epochs": knobs["epochs"],
        "num_clips": knobs["num_clips"],
        "parameters": int(model.count_params()),
        "metrics": results,
        "skipped_clips": arrays.failures,
        "seconds": round(time.time() - started, 1),
        "train_seconds": round(train_seconds, 1),
    }
    write_json(os.path.join(out, "metrics.json"), summary)
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as handle:
        for clip in test.clips:
            handle.write(
                f"{clip.clip_id}\n  generated: {predictions[clip.clip_id]}\n"
                f"  reference: {clip.references[0]}\n"
            )
    say(format_scores(results))
    for clip in test.clips[:5]:
        say(f"  {clip.clip_id}: {predictions[clip.clip_id]!r}  (ref: {clip.references[0]!r})")
    say(f"Run folder: {out} ({summary['seconds']} s)")
    return summary
