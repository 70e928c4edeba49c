"""A training run end to end: data -> vocabulary -> XE (-> RL) -> scores.

`keras-pvc train` and `keras-pvc demo` both call `train_run`. What it writes
is described in `keras_pvc.training.callbacks` (the run folder).
"""

import os
import time

import keras

from keras_pvc.training.callbacks import write_json

DATASETS = ("msvd", "msrvtt", "youcook2")
# Self-critical epochs train at the preset's learning rate times this: policy
# gradients are noisier than cross-entropy ones (SCST papers drop the rate 10x
# or more). At 0.2 one seed of three lost CIDEr on the procedural dataset.
RL_LEARNING_RATE_FACTOR = 0.1
# Clips per `generate` call when captioning cached features from disk: a
# batch of 10 msvd clips (80 x 49 x 1280) is ~200 MB as float32, and the
# model's copies of it several times that (benchmarks/eval_memory.py).
STREAM_CAPTION_BATCH = 10


def load_dataset_clips(dataset, root, split_file=None, features_dir=None, video_dir=None):
    """Clips of a dataset by name (see `keras_pvc.datasets`)."""
    if dataset == "msvd":
        from keras_pvc.datasets.msvd import load_msvd

        kwargs = {"video_dir": video_dir} if video_dir else {}
        return load_msvd(root, split_file=split_file, features_dir=features_dir, **kwargs)
    if dataset == "msrvtt":
        from keras_pvc.datasets.msrvtt import load_msrvtt

        return load_msrvtt(root, video_dir=video_dir, split_file=split_file)
    if dataset == "youcook2":
        from keras_pvc.datasets.youcook2 import load_youcook2

        return load_youcook2(root, video_dir=video_dir, split_file=split_file)
    raise ValueError(f"Unknown dataset {dataset!r}; use one of {DATASETS}.")


def read_clip_arrays(clips, config, features_dir=None, verbose=1):
    """Clips as the model takes them: frames decoded into memory
    (`ClipArrays`), or cached features left on disk (`StreamedFeatures`)."""
    from keras_pvc.datasets.pipeline import read_clip_videos

    if config["input_kind"] == "frames":
        return read_clip_videos(
            clips, config["num_frames"], config["frame_size"], verbose=verbose
        )
    from keras_pvc.datasets.features import StreamedFeatures

    # Features stay on disk and are read batch by batch (`caption_split`).
    return StreamedFeatures.scan(clips, features_dir)


def check_features(features_dir, config):
    """Checks cached features against a preset: shape and frame count."""
    from keras_pvc.training.extract import read_manifest

    if features_dir is None:
        raise ValueError(
            "This preset takes cached features: run `keras-pvc extract` first "
            "and pass `--features DIR`."
        )
    manifest = read_manifest(features_dir)
    if manifest is None:
        return
    shape = tuple(manifest["feature_shape"][1:])
    if shape != tuple(config["input_shape"]):
        raise ValueError(
            f"Features in {features_dir} have per-frame shape {shape}, but the "
            f"preset takes {tuple(config['input_shape'])}; extract with the "
            "preset's frame CNN or pick a matching preset."
        )
    if manifest["num_frames"] != config["num_frames"]:
        raise ValueError(
            f"Features in {features_dir} hold {manifest['num_frames']} frames per "
            f"clip, the preset {config['num_frames']}; pass a matching preset or "
            "re-extract."
        )


def default_preset(dataset, root):
    """The preset `keras-pvc train` picks when given none.

    `procedural` for a folder written by the embedded generator (`keras-pvc
    demo`'s data, what that preset was tuned on); for any other folder
    `regions`: pretrained EfficientNet-Lite0 region features. On the
    held-out renderers they name the shape right for 96-100% of one-object
    test clips against 32-52% for the from-scratch CNN, and one-object
    captions all right for 14-20% against 4-5%; two-object clips stay at
    0-4% (issue 15; `benchmarks/heldout_eval.py --preset regions`).
    """
    if dataset == "msvd" and _is_procedural(root):
        return "procedural"
    return "regions"


def _is_procedural(root):
    import json

    from keras_pvc.datasets.procedural import GENERATOR

    path = os.path.join(root, "metadata.json")
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            metadata = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(metadata, dict) and metadata.get("generator") == GENERATOR


def prepare_features(clips, config, features_dir, always=True, verbose=1):
    """Extracts a features preset's features of `clips` into `features_dir`.

    Runs `keras_pvc.training.extract.extract_features` with the preset's frame CNN,
    frame count and frame size: clips already there are skipped, so an
    interrupted `train` resumes its extraction and the next run reuses it.
    With `always=False` a folder whose manifest says it is complete is left
    alone (features a user extracted with settings of their own).

    Returns:
        The `ExtractionReport`, or None when nothing was run.
    """
    from keras_pvc.training.extract import extract_features
    from keras_pvc.training.extract import read_manifest
    from keras_pvc.layers import FrameCNN

    if config["input_kind"] != "features" or not config.get("frame_cnn"):
        return None
    manifest = read_manifest(features_dir) if os.path.isdir(features_dir) else None
    if not always and manifest is not None and manifest.get("status") != "running":
        return None
    if verbose:
        print(f"Extracting frame-CNN features into {features_dir} (cached, resumable)")
    return extract_features(
        clips,
        features_dir,
        FrameCNN(**config["frame_cnn"], name="frame_cnn"),
        num_frames=config["num_frames"],
        frame_size=tuple(config["frame_size"]),
        verbose=verbose,
    )


def relation_clip_ids(data_root):
    """Procedural clips whose captions state a relation between two shapes
    (an empty set for a folder that is not a procedural dataset)."""
    import json

    from keras_pvc.datasets.procedural import GENERATOR

    path = os.path.join(data_root, "metadata.json")
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8") as handle:
        try:
            metadata = json.load(handle)
        except ValueError as error:
            raise ValueError(f"{path}: not valid JSON ({error}).") from None
    if not isinstance(metadata, dict) or metadata.get("generator") != GENERATOR:
        return set()
    scenes = metadata.get("scenes", {})
    return {
        clip_id for clip_id, scene in scenes.items() if len(scene.get("shapes", ())) == 2
    }


def print_scene_accuracy(accuracy, name="held-out"):
    """One line: the shares of `score_scenes`'s result (`name`: the clips)."""
    print(
        f"Captions that state their scene exactly, {name}: "
        f"{100 * accuracy['exact']:.0f}% of {accuracy['num_clips']} (right shapes "
        f"{100 * accuracy['shapes']:.0f}%, right kind of relation "
        f"{100 * accuracy['relation']:.0f}%)",
        flush=True,
    )


def score_scenes(out, data_root):
    """Checks a run's held-out captions against the procedural scenes.

    The procedural captions come from templates, so each generated caption
    can be read back into what it claims and compared with the scene
    (`keras_pvc.datasets.procedural.scene_accuracy`). Adds the result to
    `<out>/metrics.json` under `"scene_accuracy"` and returns it (without
    the per-clip verdicts, which go to `<out>/scene_accuracy.json`).
    """
    import json

    with open(os.path.join(out, "predictions.json"), encoding="utf-8") as handle:
        predictions = json.load(handle)
    return record_scene_accuracy(out, data_root, predictions)


def record_scene_accuracy(
    out, data_root, predictions, key="scene_accuracy", file_name="scene_accuracy.json",
    with_predictions=False,
):
    """`scene_accuracy` of `predictions` against `data_root`'s scenes, written
    to `<out>/<file_name>` (per clip, and the captions if `with_predictions`)
    and, without the per-clip parts, to `<out>/metrics.json` under `key`;
    returns what went into `metrics.json`."""
    import json

    from keras_pvc.datasets.procedural import scene_accuracy
    from keras_pvc.training.callbacks import write_json

    with open(os.path.join(data_root, "metadata.json"), encoding="utf-8") as handle:
        scenes = json.load(handle)["scenes"]
    result = scene_accuracy(scenes, predictions)
    if with_predictions:
        result["predictions"] = predictions
    write_json(os.path.join(out, file_name), result)
    result = {k: v for k, v in result.items() if k not in ("per_clip", "predictions")}
    metrics_path = os.path.join(out, "metrics.json")
    with open(metrics_path, encoding="utf-8") as handle:
        metrics = json.load(handle)
    metrics[key] = result
    write_json(metrics_path, metrics)
    return result


def score_captions(clips, predictions, subsets=None):
    """Metrics of `predictions` against the clips' references, per subset."""
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
    """A table of metrics (x100, as papers print) per row of `results`."""
    from keras_pvc.metrics.meteor import meteor_label

    keys = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    backends = {scores.get("meteor_backend") for scores in results.values()} - {None}
    # nltk's METEOR is another metric: say so in the header ("METEOR (nltk)").
    names = {key: key for key in keys}
    if len(backends) == 1:
        names["METEOR"] = meteor_label(backends.pop())
    widths = {key: max(9, len(names[key]) + 2) for key in keys}
    lines = [f"{'':<16}" + "".join(f"{names[key]:>{widths[key]}}" for key in keys)]
    for name, scores in results.items():
        cells = "".join(
            f"{100 * scores[key]:{widths[key]}.1f}"
            if isinstance(scores.get(key), (int, float))
            else f"{'-':>{widths[key]}}"
            for key in keys
        )
        lines.append(f"{name:<16}" + cells)
    return "\n".join(lines)


def validation_clips(clips, say):
    """The clips with a val split carved from train where the dataset has none.

    Returns `(clips, validation)`: `validation` is the `metrics.json` record
    `{"source": "dataset" | "carved" | "none", "clips": N}` (and the carved
    ids). See `keras_pvc.datasets.splits.carve_validation_split`.
    """
    from keras_pvc.datasets.splits import CARVED_VAL_FRACTION
    from keras_pvc.datasets.splits import MIN_CLIPS_TO_CARVE
    from keras_pvc.datasets.splits import carve_validation_split

    num_val = sum(clip.split == "val" for clip in clips)
    if num_val:
        return clips, {"source": "dataset", "clips": num_val}
    num_train = sum(clip.split == "train" for clip in clips)
    clips, carved = carve_validation_split(clips)
    if carved:
        say(
            f"The dataset has no val split: {len(carved)} of {num_train} training "
            f"clips ({CARVED_VAL_FRACTION:.0%}, chosen by a hash of the clip id, "
            "the same every run) are held out as validation."
        )
        return clips, {"source": "carved", "clips": len(carved), "clip_ids": carved}
    say(
        f"The dataset has no val split, and {num_train} training clips are too "
        f"few to carve one (fewer than {MIN_CLIPS_TO_CARVE}): there is no "
        "validation loss, so restore_best_weights does nothing."
    )
    return clips, {"source": "none", "clips": 0}


def scored_split(test, val, say):
    """`(name, clips)` to caption and score: test, else val (YouCook2's
    public annotations have no test sentences), else None."""
    if test.clips:
        return "test", test
    if val.clips:
        say(
            f"The test split is empty (YouCook2's public annotations have no "
            f"test sentences): scoring on the {len(val.clips)} val clips instead."
        )
        return "val", val
    say("The test and val splits are empty: nothing to caption or score.")
    return None, test


def load_initial_weights(model, path):
    """Loads `path` (a `.weights.h5` file or a preset folder) into `model`."""
    # A checkpoint holds the task's weights (`model.save_weights`); a preset
    # folder's `model.weights.h5` the backbone's (keras-hub's layout).
    target = model
    if os.path.isdir(path):
        path = os.path.join(path, "model.weights.h5")
        target = model.backbone
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No weights at {path}: pass a `.weights.h5` file (a run's "
            "checkpoints/) or a run's model/ folder."
        )
    try:
        target.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"The weights in {path} do not fit this model ({error}). They must "
            "come from the same preset and overrides trained on the same "
            "training clips (the vocabulary sets the embedding and output sizes)."
        ) from error


def caption_split(model, arrays, sampler="greedy", batch_size=None):
    """`{clip_id: caption}` for every clip of `arrays`: a `ClipArrays`, or a
    `StreamedFeatures` captioned batch by batch (`batch_size`, at most
    `STREAM_CAPTION_BATCH`: greedy captions do not depend on the batch)."""
    if hasattr(arrays, "batches"):
        captions = []
        batch_size = min(batch_size or STREAM_CAPTION_BATCH, STREAM_CAPTION_BATCH)
        for inputs in arrays.batches(batch_size).as_numpy_iterator():
            captions.extend(model.generate(inputs, sampler=sampler))
        return {clip.clip_id: caption for clip, caption in zip(arrays.clips, captions)}
    captions = model.generate(
        arrays.model_inputs(model.backbone.input_kind), sampler=sampler
    )
    return {clip.clip_id: caption for clip, caption in zip(arrays.clips, captions)}


def train_run(
    clips,
    out,
    preset="procedural",
    overrides=None,
    epochs=None,
    rl_epochs=0,
    rl_options=None,
    features_dir=None,
    subsets=None,
    seed=0,
    resume=False,
    callbacks=None,
    init_weights=None,
    verbose=1,
    recalibrate_batch_norm=True,
    distribute=None,
):
    """Trains a preset on clips, captions the test split and scores it.

    Where the clips have no val split, one is carved from the training
    clips (`keras_pvc.datasets.splits.carve_validation_split`: 10%, by a
    hash of the clip id; none from fewer than 10), so validation loss and
    `restore_best_weights` work; `metrics.json["validation"]` says which.
    Where the test split is empty (YouCook2's public annotations), the val
    split is scored instead (`metrics.json["scored_split"]`: `"val"`).

    Args:
        clips: list of `Clip` with splits.
        out: str. The run folder.
        preset: str. A preset name (`keras_pvc.list_presets()`).
        overrides: dict. Preset knobs to change (e.g. `{"graph": None}`).
        epochs: int or None. Cross-entropy epochs (default: the preset's).
        rl_epochs: int. Self-critical epochs after cross-entropy.
        rl_options: dict. Arguments of `VideoCaptioner.enable_self_critical`,
            and `learning_rate` (default: the preset's x 0.1).
        features_dir: str or None. Cached features for feature presets.
        subsets: dict `{name: set of clip ids}`: extra score rows.
        seed: int.
        resume: bool. Continue an interrupted run (same arguments).
        callbacks: list of `keras.callbacks.Callback` added to both phases.
        init_weights: str or None. Start from these weights: a
            `.weights.h5` file (a run's `checkpoints/epoch_NNN.weights.h5`)
            or a model preset folder (a run's `model/`). The model must have
            the same shape, vocabulary included (same preset, same training
            clips). With `epochs=0` and `rl_epochs` this is the usual
            self-critical workflow: RL from a cross-entropy checkpoint.
        verbose: int.
        recalibrate_batch_norm: bool. After cross-entropy, set the frame
            CNN's BatchNorm statistics to the training frames' exact ones
            (`keras_pvc.training.batch_norm`); False only measures the train/inference
            gap (and warns). Recorded in `metrics.json` as `batch_norm`.
        distribute: None, `"mirrored"`, `"multi-worker"` (TensorFlow),
            `"data-parallel"` (JAX), or a `keras_pvc.training.distribute.Distribution`
            made earlier (multi-worker must start before any tensor). The
            preset's batch size is the global batch; with several workers
            only the chief writes `out`. Recorded in `metrics.json` as
            `distribution`; see docs/distributed.md.

    Returns:
        The summary written to `out/metrics.json`.
    """
    from keras_pvc.datasets.pipeline import EpochCounter
    from keras_pvc.presets import preset_config

    def say(message):
        if verbose:
            print(message, flush=True)

    started = time.time()
    distribute, out = _start_run(distribute, seed, out, resume)
    config = preset_config(preset, **(overrides or {}))
    epochs = config["epochs"] if epochs is None else epochs
    schedule = _learning_rate_schedule(config, epochs)
    clips, validation = validation_clips(clips, say)
    arrays, train_clips = _read_run_clips(clips, config, features_dir, verbose, say)
    train, val, test = (arrays.subset(split) for split in ("train", "val", "test"))
    scored_name, scored = scored_split(test, val, say)
    model = _build_run_model(config, train_clips, distribute, init_weights, say)
    _say_plan(say, preset, model, config, (train, val, test), epochs, rl_epochs, distribute)
    epoch_counter = EpochCounter()
    train_ds, val_ds = _run_datasets(
        model, config, train, val, features_dir, seed, bool(rl_epochs), epoch_counter, distribute
    )
    fit_options = dict(
        epoch_counter=epoch_counter, out=out, resume=resume, callbacks=callbacks, verbose=verbose
    )
    best, batch_norm = None, None
    if epochs:
        best, batch_norm = _cross_entropy_phase(
            model, train, train_ds, val_ds, epochs, config, schedule, recalibrate_batch_norm,
            say, **fit_options,
        )
    results = {}  # the scores after each phase, when there are two
    if rl_epochs and scored.clips:
        results["XE"] = _self_critical_phase(
            model, train_ds, val_ds, (epochs, rl_epochs), config, scored, train_clips,
            rl_options, seed, distribute, say, **fit_options,
        )
    train_seconds = time.time() - started
    model.save_to_preset(os.path.join(out, "model"))
    predictions, scores = _caption_and_score(
        model, scored_name, scored, subsets, config["batch_size"], say
    )
    if rl_epochs and scores:
        results["XE+RL"] = scores["all"]
    summary = _run_summary(
        preset=preset, overrides=overrides, config=config, seed=seed, epochs=epochs,
        rl_epochs=rl_epochs, best=best, model=model, scores=scores, scored_name=scored_name,
        validation=validation, phases=results, skipped_clips=arrays.failures,
        batch_norm=batch_norm, distribution=distribute.record(), started=started,
        train_seconds=train_seconds,
    )
    _write_run_results(out, summary, predictions, scored, say)
    distribute.finish(out)
    return summary


def _start_run(distribute, seed, out, resume):
    """`(distribution, folder to write)`: sets the distribution up (once)
    and the seed; workers other than the chief write to a temporary folder
    (removed at the end)."""
    from keras_pvc.training.distribute import Distribution
    from keras_pvc.training.distribute import setup_distribution

    if not isinstance(distribute, Distribution):
        distribute = setup_distribution(distribute)
    keras.utils.set_random_seed(seed)
    out = distribute.write_folder(out, resume)
    os.makedirs(out, exist_ok=True)
    return distribute, out


def _say_plan(say, preset, model, config, splits, xe_epochs, rl_epochs, distribute):
    """Says what the run trains: preset, sizes, clips per split, epochs."""
    train, val, test = splits
    say(
        f"Training preset {preset!r} ({model.count_params():,} parameters, "
        f"vocabulary {config['vocabulary_size']}, graph "
        f"{'on' if config.get('graph') else 'off'}): {len(train.clips)} train / "
        f"{len(val.clips)} val / {len(test.clips)} test clips, {xe_epochs} XE epochs"
        + (f" + {rl_epochs} self-critical epochs" if rl_epochs else "")
    )
    if config.get("reversed_twins"):
        from keras_pvc.datasets.reverse import reversed_twins
        from keras_pvc.datasets.reverse import twin_swaps

        swaps = twin_swaps(config["reversed_twins"])
        twins = len(reversed_twins(train.clips, swaps)[0]) - len(train.clips)
        say(f"Reversed twins: {twins} of {len(train.clips)} training clips also train "
            "played backwards (motion words swapped)")
    if distribute.name:
        say(f"Distributed training: {distribute.describe()}")


def _learning_rate_schedule(config, epochs):
    """The callbacks of the preset's `lr_schedule` over `epochs` (none for None)."""
    if config.get("lr_schedule") == "cosine":
        from keras_pvc.training.callbacks import cosine_learning_rate

        return [cosine_learning_rate(config["learning_rate"], epochs)]
    if config.get("lr_schedule"):
        raise ValueError(
            f"Unknown `lr_schedule` {config['lr_schedule']!r}: use 'cosine' or None."
        )
    return []


def _read_run_clips(clips, config, features_dir, verbose, say):
    """`(arrays, training clips)`: the clips read as the preset takes them
    (`read_clip_arrays`), each clip that could not be read said."""
    if config["input_kind"] == "features":
        # Features stream from disk for training, validation and captioning.
        check_features(features_dir, config)
        arrays = read_clip_arrays(clips, config, features_dir)
    else:
        arrays = read_clip_arrays(clips, config, features_dir, verbose)
    train_clips = [clip for clip in arrays.clips if clip.split == "train"]
    for clip_id, reason in arrays.failures:
        say(f"  skipped {clip_id}: {reason}")
    if not train_clips:
        raise ValueError("No training clips: check the dataset's split.")
    return arrays, train_clips


def _build_run_model(config, train_clips, distribute, init_weights, say):
    """The preset's model with the training clips' vocabulary (set in
    `config`), built in the distribution's scope, from `init_weights` if given."""
    from keras_pvc.models import VideoCaptionerPreprocessor
    from keras_pvc.presets import build_video_captioner

    if config.get("reversed_twins"):  # their words are training words too
        from keras_pvc.datasets.reverse import reversed_twins
        from keras_pvc.datasets.reverse import twin_swaps

        train_clips = reversed_twins(train_clips, twin_swaps(config["reversed_twins"]))[0]
    config["vocabulary"] = VideoCaptionerPreprocessor.build_vocabulary(
        [reference for clip in train_clips for reference in clip.references],
        min_count=config.get("min_word_count", 1),
    )
    config["vocabulary_size"] = len(config["vocabulary"])
    with distribute.scope():
        model = build_video_captioner(config)
    if init_weights:
        load_initial_weights(model, init_weights)
        say(f"Starting from the weights in {init_weights}")
    return model


def _run_datasets(
    model, config, train, val, features_dir, seed, references, epoch_counter, distribute
):
    """`(train_ds, val_ds)`, distributed; `val_ds` is None without val clips.

    One random reference per clip per epoch: every video is read once an
    epoch, and over epochs the model sees all paraphrases. The order is a
    function of (seed, epoch), so `resume` repeats an interrupted epoch
    exactly. `references` adds every clip's references (self-critical).
    """
    from keras_pvc.datasets.features import features_dataset
    from keras_pvc.datasets.pipeline import caption_dataset

    kind, batch_size = config["input_kind"], config["batch_size"]
    twins = config.get("reversed_twins") or False
    if kind == "features":
        train_ds = features_dataset(
            train.clips,
            features_dir,
            model.preprocessor,
            batch_size,
            captions="random",
            seed=seed,
            references=references,
            epoch_counter=epoch_counter,
            reversed_twins=twins,
        )
    else:
        train_ds = caption_dataset(
            train,
            model.preprocessor,
            kind,
            batch_size,
            seed=seed,
            captions="random",
            references=references,
            epoch_counter=epoch_counter,
            reversed_twins=twins,
        )
    train_ds = distribute.prepare_dataset(
        train_ds, batch_size, preprocessor=model.preprocessor
    )
    val_ds = None
    if val.clips and kind == "features":
        val_ds = features_dataset(
            val.clips, features_dir, model.preprocessor, batch_size,
            shuffle=False, in_memory=False, parallel_reads=1,
        )
    elif val.clips:
        val_ds = caption_dataset(
            val, model.preprocessor, kind, batch_size, shuffle=False
        )
    val_ds = distribute.prepare_dataset(
        val_ds, batch_size, training=False, preprocessor=model.preprocessor
    )
    return train_ds, val_ds


def _cross_entropy_phase(
    model, train, train_ds, val_ds, epochs, config, schedule, recalibrate_batch_norm, say,
    epoch_counter, out, resume, callbacks, verbose,
):
    """`model.fit` for the cross-entropy epochs, then (frames presets) the
    BatchNorm recalibration on the `train` arrays (`keras_pvc.training.batch_norm`).

    Returns:
        `(best, batch_norm record)`: the `BestWeights` callback (its weights
        restored; None without `restore_best_weights` or val clips) and
        `recalibrate_after_training`'s record (None for features presets).
    """
    from keras_pvc.training.callbacks import training_callbacks

    best = None
    if val_ds is not None and config.get("restore_best_weights"):
        from keras_pvc.training.callbacks import BestWeights

        best_path = os.path.join(out, "best.weights.h5")
        if not resume and os.path.exists(best_path):
            os.remove(best_path)
        best = BestWeights(best_path, os.path.join(out, "history.csv"))
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        # The pipeline shuffles (per (seed, epoch)); `fit` cannot shuffle
        # a tf.data.Dataset and warns when asked to.
        shuffle=False,
        callbacks=[epoch_counter.callback]
        + schedule
        + training_callbacks(out, config["checkpoint_every"], resume)
        + ([best] if best else [])
        + list(callbacks or []),
        verbose=verbose,
    )
    best_epoch = best.restore(model) if best else None
    if best_epoch is not None:
        say(
            f"Kept the weights of epoch {best_epoch + 1} (lowest validation "
            f"loss, {best.best:.4f})"
        )
    if config["input_kind"] != "frames":
        return best, None
    # Short runs leave running statistics wrong (issue 15); see the module.
    from keras_pvc.training.batch_norm import recalibrate_after_training

    return best, recalibrate_after_training(
        model, train, config["batch_size"], recalibrate_batch_norm, say
    )


def _self_critical_phase(
    model, train_ds, val_ds, epochs, config, scored, train_clips, rl_options, seed,
    distribute, say, epoch_counter, out, resume, callbacks, verbose,
):
    """Scores the cross-entropy model on `scored`, then `model.fit` for the
    self-critical epochs (`epochs`: `(XE epochs, RL epochs)`) and plots the
    rewards. Returns the cross-entropy model's scores (`"all"`)."""
    from keras_pvc.datasets.pipeline import reference_ids
    from keras_pvc.training.callbacks import plot_history
    from keras_pvc.training.callbacks import training_callbacks

    xe_epochs, rl_epochs = epochs
    xe_predictions = caption_split(model, scored, batch_size=config["batch_size"])
    xe_scores = score_captions(scored.clips, xe_predictions)["all"]
    say(f"Self-critical training for {rl_epochs} epochs")
    rl_options = dict(rl_options or {})
    model.optimizer.learning_rate = rl_options.pop(
        "learning_rate", config["learning_rate"] * RL_LEARNING_RATE_FACTOR
    )
    with distribute.scope():  # trackers and the sampler's seed state
        model.enable_self_critical(
            train_references=reference_ids(train_clips, model.preprocessor),
            seed=seed,
            **rl_options,
        )
    model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=xe_epochs,
        epochs=xe_epochs + rl_epochs,
        shuffle=False,
        callbacks=[epoch_counter.callback]
        + training_callbacks(out, config["checkpoint_every"], resume, phase="rl")
        + list(callbacks or []),
        verbose=verbose,
    )
    plot_history(
        os.path.join(out, "history.csv"),
        os.path.join(out, "loss_imgs", "reward.png"),
        keys=("reward", "greedy_reward", "baseline"),
        title="Self-critical reward (CIDEr-D)",
    )
    return xe_scores


def _caption_and_score(model, scored_name, scored, subsets, batch_size, say):
    """`(predictions, scores)` of the scored split (empty without clips)."""
    if not scored.clips:
        return {}, {}
    say(f"Captioning {len(scored.clips)} held-out clips ({scored_name} split)")
    predictions = caption_split(model, scored, batch_size=batch_size)
    return predictions, score_captions(scored.clips, predictions, subsets)


def _run_summary(
    preset, overrides, config, seed, epochs, rl_epochs, best, model, scores, scored_name,
    validation, phases, skipped_clips, batch_norm, distribution, started, train_seconds,
):
    """`metrics.json`: what was trained, how, and the scores (`train_run`)."""
    return {
        "preset": preset,
        "backend": keras.backend.backend(),
        "overrides": {k: v for k, v in (overrides or {}).items() if k != "vocabulary"},
        "graph": bool(config.get("graph")),
        "seed": seed,
        "epochs": epochs,
        "rl_epochs": rl_epochs,
        "best_xe_epoch": None if best is None or best.best_epoch is None else best.best_epoch + 1,
        "parameters": int(model.count_params()),
        "metrics": scores,
        "scored_split": scored_name,
        "meteor_backend": scores.get("all", {}).get("meteor_backend"),
        "validation": validation,
        "phases": phases,
        "skipped_clips": skipped_clips,
        "batch_norm": batch_norm,
        "distribution": distribution,
        "seconds": round(time.time() - started, 1),
        "train_seconds": round(train_seconds, 1),
    }


def _write_run_results(out, summary, predictions, scored, say):
    """Writes `metrics.json`, `predictions.json` and `samples.txt`, and says
    the scores and a few captions."""
    write_json(os.path.join(out, "metrics.json"), summary)
    write_json(os.path.join(out, "predictions.json"), predictions)
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as handle:
        for clip in scored.clips:
            handle.write(
                f"{clip.clip_id}\n  generated: {predictions[clip.clip_id]}\n"
                f"  reference: {clip.references[0]}\n"
            )
    scores, phases = summary["metrics"], summary["phases"]
    if scores:
        say(format_scores({**scores, **({"XE only": phases["XE"]} if "XE" in phases else {})}))
    for clip in scored.clips[:5]:
        say(f"  {clip.clip_id}: {predictions[clip.clip_id]!r}  (ref: {clip.references[0]!r})")
    say(f"Run folder: {out} ({summary['seconds']} s)")
