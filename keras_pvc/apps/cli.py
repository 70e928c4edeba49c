"""`keras-pvc`: demo, train, evaluate and caption from the command line.

Heavy imports (TensorFlow, keras-hub) happen inside the commands, so
`keras-pvc --help` answers at once.
"""

import argparse
import json
import os
import sys

# Set to 1 to see tracebacks (same as `keras-pvc --debug ...`).
DEBUG_ENV = "KERAS_PVC_DEBUG"


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _speed_defaults():
    # TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with
    # AVX-512 VNNI, BF16 or AMX; on AVX2 machines they make batch-1 greedy
    # decoding about 2x and a `procedural` step about 1.5x faster
    # (docs/performance_history.md). The CLI chooses them; the library does
    # not (importing keras_pvc sets nothing). `TF_ENABLE_ONEDNN_OPTS=0` opts out.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def parse_set_options(pairs, preset):
    """`--set KEY=VALUE` options as preset overrides, checked against `preset`.

    A value is read as JSON when it parses (`8`, `1e-3`, `null`, `true`,
    `[4, 1280]`, `{"units": 64}`), else kept as the string itself
    (`lr_schedule=cosine`). An unknown key is an error listing the knobs.
    """
    from keras_pvc.presets import preset_config

    overrides = {}
    for pair in pairs or ():
        key, separator, text = pair.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE (e.g. --set hidden_dim=256).")
        try:
            overrides[key] = json.loads(text)
        except ValueError:
            overrides[key] = text
    # preset_config names the unknown keys and lists the valid ones.
    preset_config(preset, **{k: v for k, v in overrides.items() if k != "vocabulary"})
    if "vocabulary" in overrides:
        raise ValueError("--set vocabulary: the vocabulary is built from the training clips.")
    return overrides


def cmd_demo(args):
    from keras_pvc.apps.demo import run_demo

    overrides = parse_set_options(args.set, "procedural")
    run_demo(
        overrides=overrides,
        out=args.out,
        quick=args.quick,
        graph=not args.no_graph,
        epochs=args.epochs,
        rl_epochs=args.rl_epochs,
        num_clips=args.clips,
        seed=args.seed,
        data_root=args.data,
        resume=args.resume,
        visuals=args.visuals,
        verbose=0 if args.silent else 1,
        split=args.split,
    )
    return 0


def cmd_train(args):
    from keras_pvc.training.runs import load_dataset_clips
    from keras_pvc.training.runs import relation_clip_ids
    from keras_pvc.training.runs import train_run

    from keras_pvc.presets import preset_config
    from keras_pvc.training.runs import default_preset
    from keras_pvc.training.runs import prepare_features

    from keras_pvc.training.distribute import setup_distribution

    # First: a multi-worker strategy must start before any TensorFlow tensor.
    distribute = setup_distribution(args.distribute)
    if args.mixed_precision:
        import keras

        # Before any layer is built: bfloat16/float16 compute, float32
        # weights; mixed_float16 gets Keras' loss scaling at compile.
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    # No --preset: `procedural` for the embedded generator's folders, else
    # the pretrained-features preset (`runs.default_preset`).
    preset = args.preset or default_preset(args.dataset, args.root)
    # Checked before the dataset is read: a typo fails at once.
    set_overrides = parse_set_options(args.set, preset)
    clips = load_dataset_clips(
        args.dataset,
        args.root,
        split_file=args.split_file,
        features_dir=args.features,
        video_dir=args.video_dir,
    )
    features_dir = args.features
    config = preset_config(preset, **set_overrides)
    if config["input_kind"] == "features":
        # Features are made here when the preset knows its frame CNN: into
        # the run folder by default, reused (and resumed) by the next run.
        if features_dir is None:
            features_dir = os.path.join(args.out, "features")
        prepare_features(clips, config, features_dir, always=args.features is None)
    overrides = {}
    if args.no_graph:
        overrides["graph"] = None
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    overrides.update(set_overrides)
    rl_options = {"num_samples": args.rl_samples, "baseline": args.rl_baseline}
    if args.rl_learning_rate:
        rl_options["learning_rate"] = args.rl_learning_rate
    # A procedural dataset (`keras-pvc demo`'s): score the relation clips
    # apart and check the captions against the scenes, as the demo does.
    relations = relation_clip_ids(args.root) if args.dataset == "msvd" else set()
    train_run(
        clips,
        args.out,
        preset=preset,
        overrides=overrides,
        epochs=args.epochs,
        rl_epochs=args.rl_epochs,
        rl_options=rl_options,
        features_dir=features_dir,
        seed=args.seed,
        resume=args.resume,
        init_weights=args.init_weights,
        subsets={"relations": relations} if relations else None,
        distribute=distribute,
    )
    if relations and distribute.is_chief:  # other workers' folders are gone
        from keras_pvc.training.runs import print_scene_accuracy
        from keras_pvc.training.runs import score_scenes

        print_scene_accuracy(score_scenes(args.out, args.root))
    return 0


def cmd_extract(args):
    from keras_pvc.training.extract import extract_features
    from keras_pvc.layers import FrameCNN
    from keras_pvc.presets import preset_config
    from keras_pvc.training.runs import load_dataset_clips

    config = preset_config(args.preset)
    if not config.get("frame_cnn"):
        raise SystemExit(f"error: preset {args.preset!r} has no frame CNN to extract with.")
    clips = load_dataset_clips(
        args.dataset, args.root, split_file=args.split_file, video_dir=args.video_dir
    )
    cnn_config = dict(config["frame_cnn"])
    if args.backbone:
        cnn_config["backbone"] = args.backbone
    if args.output:
        cnn_config["output"] = args.output
    if args.weights:
        cnn_config["backbone_weights"] = None if args.weights == "none" else args.weights
    report = extract_features(
        clips,
        args.out,
        FrameCNN(**cnn_config, name="frame_cnn"),
        num_frames=args.num_frames or config["num_frames"],
        frame_size=tuple(args.frame_size or config["frame_size"]),
        dtype=args.dtype,
        batch_size=args.batch_size,
        workers=args.workers,
        verbose=0 if args.silent else 1,
    )
    print(report.summary())
    return 0 if report.done or report.skipped else 1


def cmd_report(args):
    from keras_pvc.apps.report import write_report

    path = write_report(args.run_dir, out_path=args.out, num_clips=args.clips)
    print(f"Wrote {path}")
    return 0


def cmd_evaluate(args):
    import warnings

    from keras_pvc.metrics import evaluate_files
    from keras_pvc.metrics import format_table
    from keras_pvc.metrics.evaluate import PartialCoverageWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PartialCoverageWarning)
        scores = evaluate_files(args.predictions, args.references, output_json=args.out)
    for warning in caught:
        if issubclass(warning.category, PartialCoverageWarning):
            print(f"WARNING: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    print(format_table(scores))
    if args.out:
        print(f"Wrote {args.out}")
    return 0


def cmd_caption(args):
    import numpy as np

    import keras_pvc
    from keras_pvc.video import VideoReadError
    from keras_pvc.video import read_frames

    model_dir = args.model
    if os.path.isdir(os.path.join(model_dir, "model")):
        model_dir = os.path.join(model_dir, "model")
    model = keras_pvc.from_preset(model_dir)
    preprocessor = model.preprocessor
    backbone = model.backbone
    extractor = None
    if backbone.input_kind == "features":
        extractor = backbone.build_feature_extractor()
    sampler = "greedy"
    if args.beam and args.beam > 1:
        import keras_hub

        sampler = keras_hub.samplers.BeamSampler(num_beams=args.beam)
    results, failed = {}, {}
    for path in args.videos:
        try:
            frames, frame_mask = read_frames(
                path, preprocessor.num_frames, size=preprocessor.frame_size
            )
        except VideoReadError as error:
            failed[path] = str(error)
            print(f"error: {error}", file=sys.stderr)
            continue
        video = frames[None].astype("float32")
        if extractor is not None:
            video = np.asarray(extractor(video))
        inputs = {backbone.input_kind: video, "frame_mask": frame_mask[None]}
        results[path] = model.generate(inputs, sampler=sampler)[0]
        if not args.json:
            print(f"{path}: {results[path]}")
    if args.json:
        print(json.dumps({"captions": results, "errors": failed}, indent=2))
    if failed:
        print(
            f"error: {len(failed)} of {len(args.videos)} videos could not be "
            "captioned (listed above)",
            file=sys.stderr,
        )
    # Every caption that could be made is written; any failure is an error.
    return 1 if failed else 0


SET_HELP = (
    "change a preset knob, KEY=VALUE (repeatable); VALUE is read as JSON when "
    "it parses (8, 1e-3, null, [4, 1280]), else as a string; e.g. --set "
    "hidden_dim=256 --set min_word_count=2"
)


def _add_demo_command(commands):
    """`keras-pvc demo`: the embedded default end to end."""
    demo = commands.add_parser(
        "demo",
        help="generate the procedural dataset, train, caption and score",
        description="Runs the embedded default end to end with nothing to "
        "download: procedural videos in the MSVD layout -> the `procedural` "
        "preset trained with cross-entropy -> held-out BLEU/METEOR/ROUGE-L/CIDEr.",
    )
    demo.add_argument("--out", default="runs/demo", help="run folder")
    demo.add_argument("--quick", action="store_true", help="~2 minute run (CI)")
    demo.add_argument("--no-graph", action="store_true", help="ablation: no spatial graph")
    demo.add_argument("--epochs", type=int, help="cross-entropy epochs")
    demo.add_argument("--rl-epochs", type=int, help="self-critical epochs after XE")
    demo.add_argument("--clips", type=int, help="override the number of clips")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--split",
        choices=("compositional", "random"),
        default="compositional",
        help="test clips: held-out colour x shape x relation combinations "
        "(default; val clips, seen combinations, are checked too) or a random 15%%",
    )
    demo.add_argument("--data", help="dataset folder (default: <out>/data)")
    demo.add_argument("--resume", action="store_true", help="continue an interrupted run")
    demo.add_argument("--silent", action="store_true", help="no progress output")
    demo.add_argument(
        "--visuals", type=int, default=8, help="clips drawn into the HTML report (0: none)"
    )
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    demo.set_defaults(func=cmd_demo)


def _add_train_command(commands):
    """`keras-pvc train`: a preset on MSVD, MSR-VTT or YouCook2."""
    train = commands.add_parser(
        "train",
        help="train a preset on MSVD, MSR-VTT or YouCook2",
        description="Trains a preset with cross-entropy (then optionally "
        "self-critical REINFORCE), captions the test split, scores it, and "
        "writes a run folder (model preset, metrics, loss plots, samples).",
    )
    train.add_argument("--dataset", default="msvd", choices=["msvd", "msrvtt", "youcook2"])
    train.add_argument(
        "--root",
        required=True,
        help="MSVD folder (video_corpus.csv + YouTubeClips/), MSR-VTT json or "
        "folder, or YouCook2 annotations json",
    )
    train.add_argument("--split-file", help="TSV clip_id<TAB>train|val|test (wins)")
    train.add_argument("--features", help="cached features from `keras-pvc extract`")
    train.add_argument("--video-dir", help="video folder, if not the dataset's default")
    train.add_argument(
        "--preset",
        help="a preset name (default: `procedural` for the embedded generator's "
        "folders, else `regions`: EfficientNet-Lite0 features extracted into "
        "<out>/features or --features, cached and resumable)",
    )
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--epochs", type=int, help="cross-entropy epochs (default: preset's)")
    train.add_argument("--rl-epochs", type=int, default=0, help="self-critical epochs after XE")
    train.add_argument("--rl-samples", type=int, default=5, help="captions sampled per video")
    train.add_argument("--rl-baseline", default="greedy", choices=["greedy", "mean"])
    train.add_argument(
        "--rl-learning-rate", type=float,
        help="learning rate of the self-critical epochs (default: the preset's x 0.1)",
    )
    train.add_argument(
        "--init-weights",
        help="start from these weights: a run's checkpoints/epoch_NNN.weights.h5 "
        "or model/ folder (same preset and training clips); with --epochs 0 "
        "--rl-epochs N, self-critical training from a cross-entropy checkpoint",
    )
    train.add_argument("--batch-size", type=int, help="override the preset's batch size")
    train.add_argument("--no-graph", action="store_true", help="drop the spatial graph")
    train.add_argument(
        "--mixed-precision", choices=["mixed_bfloat16", "mixed_float16"],
        help="keras.mixed_precision policy (docs/performance_history.md)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument(
        "--distribute", choices=["mirrored", "multi-worker", "data-parallel"],
        help="TensorFlow: mirrored (one host's devices), multi-worker (TF_CONFIG); "
        "JAX: data-parallel (KERAS_DISTRIBUTION_*); see docs/distributed.md",
    )
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help=SET_HELP + " (applied after --batch-size and --no-graph)",
    )
    train.set_defaults(func=cmd_train)


def _add_extract_command(commands):
    """`keras-pvc extract`: videos -> cached frame-CNN features."""
    extract = commands.add_parser(
        "extract",
        help="videos -> cached frame-CNN features (resumable)",
        description="Samples frames from every clip's video, runs the preset's "
        "frame CNN (EfficientNet-Lite0 ImageNet for msvd) and caches "
        "<clip_id>.npy + <clip_id>.mask.npy with a manifest. Finished clips "
        "are skipped on a rerun; unreadable videos are listed in "
        "extract_report.json and skipped.",
    )
    extract.add_argument("--dataset", default="msvd", choices=["msvd", "msrvtt", "youcook2"])
    extract.add_argument("--root", required=True, help="the dataset (see `train --root`)")
    extract.add_argument("--out", required=True, help="features folder")
    extract.add_argument("--preset", default="msvd", help="preset whose frame CNN to use")
    extract.add_argument("--split-file")
    extract.add_argument("--video-dir")
    extract.add_argument("--backbone", help="override the frame CNN backbone")
    extract.add_argument("--output", choices=["regions", "pooled"])
    extract.add_argument("--weights", choices=["imagenet", "none"])
    extract.add_argument("--num-frames", type=int)
    extract.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"))
    extract.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    extract.add_argument("--batch-size", type=int, default=32, help="frames per CNN call")
    extract.add_argument("--workers", type=int, default=2, help="decoding threads")
    extract.add_argument("--silent", action="store_true")
    extract.set_defaults(func=cmd_extract)


def _add_report_command(commands):
    """`keras-pvc report`: a run folder's HTML report."""
    report = commands.add_parser("report", help="write a run folder's HTML report")
    report.add_argument("run_dir")
    report.add_argument("--clips", type=int, default=8, help="clips in the grid")
    report.add_argument("--out", help="HTML path (default: RUN_DIR/report.html)")
    report.set_defaults(func=cmd_report)


def _add_evaluate_command(commands):
    """`keras-pvc evaluate`: predictions scored against references."""
    evaluate = commands.add_parser(
        "evaluate",
        help="score predictions against references (BLEU, METEOR, ROUGE-L, CIDEr)",
    )
    evaluate.add_argument("predictions", help='JSON {clip_id: caption}')
    evaluate.add_argument("references", help='JSON {clip_id: [captions]}')
    evaluate.add_argument("--out", help="write the scores to this JSON file")
    evaluate.set_defaults(func=cmd_evaluate)


def _add_caption_command(commands):
    """`keras-pvc caption`: captions of video files."""
    caption = commands.add_parser("caption", help="caption video files")
    caption.add_argument("videos", nargs="+", help="video files")
    caption.add_argument(
        "--model", required=True, help="a run folder or a preset folder"
    )
    caption.add_argument("--beam", type=int, default=0, help="beam width (0: greedy)")
    caption.add_argument("--json", action="store_true", help="print JSON")
    caption.set_defaults(func=cmd_caption)

def build_parser():
    """The `keras-pvc` argument parser: one subcommand per `_add_*_command`."""
    parser = argparse.ArgumentParser(
        prog="keras-pvc",
        description="Keras 3 video captioning: frame CNN, spatial graph, "
        "temporal LSTM, caption decoder.",
        epilog="Errors are printed as one line on stderr with exit status 1; "
        f"--debug (or {DEBUG_ENV}=1) shows the full traceback instead.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show tracebacks of errors (also: environment {DEBUG_ENV}=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_demo_command,
        _add_train_command,
        _add_extract_command,
        _add_report_command,
        _add_evaluate_command,
        _add_caption_command,
    ):
        add_command(commands)
    return parser


def _error_line(error):
    """One line for an error: its message (newlines folded), else its type."""
    message = " ".join(str(error).split())
    if isinstance(error, KeyError) or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message


def main(argv=None):
    """Runs a command; an error is one line on stderr and exit status 1.

    With `--debug` or `KERAS_PVC_DEBUG=1` the exception propagates with its
    traceback. Ctrl-C exits with status 130.
    """
    args = build_parser().parse_args(argv)
    _quiet_tensorflow()
    _speed_defaults()
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every failure: one clear line, no traceback
        if debug:
            raise
        print(
            f"error: {_error_line(error)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
