"""Scoring caption files and printing score tables."""

import json

from keras_pvc.metrics.evaluate import METRIC_NAMES
from keras_pvc.metrics.evaluate import evaluate_captions
from keras_pvc.metrics.meteor import meteor_label


def _load_json(path, what):
    # A UTF-8 byte-order mark is accepted, as the csv loader accepts one.
    try:
        with open(path, encoding="utf-8-sig") as file:
            data = json.load(file)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} file {path} not found.") from error
    except IsADirectoryError as error:
        raise ValueError(f"{what} file {path} is a folder, not a JSON file.") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} file {path} is not UTF-8 text: {error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object keyed by clip id.")
    return data


def evaluate_files(predictions_path, references_path, output_json=None, **kwargs):
    """Scores a predictions JSON file against a references JSON file.

    Args:
        predictions_path: str. JSON `{clip_id: caption}`.
        references_path: str. JSON `{clip_id: [captions]}`.
        output_json: str or None. Where to write the scores as JSON.
        **kwargs: passed to `evaluate_captions` (`metrics`, `per_clip`, ...).

    Returns:
        dict. The result of `evaluate_captions`.

    Example:

    >>> scores = evaluate_files("pred.json", "refs.json", "scores.json")  # doctest: +SKIP
    >>> print(format_table(scores))  # doctest: +SKIP
    """
    predictions = _load_json(predictions_path, "Predictions")
    references = _load_json(references_path, "References")
    try:
        scores = evaluate_captions(references, predictions, **kwargs)
    except ValueError as error:
        raise ValueError(
            f"{predictions_path} (predictions) against {references_path} "
            f"(references): {error}"
        ) from error
    if output_json is not None:
        with open(output_json, "w", encoding="utf-8") as file:
            json.dump(scores, file, indent=2, ensure_ascii=False)
    return scores


def format_table(scores):
    """Formats scores as a fixed-width table, ×100 as papers print them.

    Args:
        scores: dict. Metric name → float (coco-caption scale), e.g. from
            `evaluate_captions`; non-numeric entries are left out except the
            METEOR backend, noted under the table; nltk's METEOR is
            labelled "METEOR (nltk)" (`keras_pvc.metrics.meteor.meteor_label`).

    Returns:
        str.

    Example:

    >>> print(format_table({"BLEU-4": 0.4321, "CIDEr": 0.7}))
    metric     score
    --------  ------
    BLEU-4     43.21
    CIDEr      70.00
    """
    names = [name for name in METRIC_NAMES if isinstance(scores.get(name), (int, float))]
    names += [
        name for name, value in scores.items()
        if name not in names and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    info = scores.get("info") or {}
    backend = scores.get("meteor_backend") or info.get("METEOR-backend")
    labels = {name: meteor_label(backend) if name == "METEOR" else name for name in names}
    width = max([8] + [len(label) for label in labels.values()])
    lines = [f"{'metric':<{width}}  {'score':>6}", f"{'-' * width}  {'-' * 6}"]
    lines += [f"{labels[name]:<{width}}  {100.0 * scores[name]:>6.2f}" for name in names]
    if backend:
        lines.append(f"METEOR backend: {backend}")
    elif "METEOR" not in scores and "METEOR-backend" in info:
        lines.append("METEOR: not computed")
    return "\n".join(lines)
