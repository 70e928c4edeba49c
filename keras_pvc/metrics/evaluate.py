"""`evaluate_captions`: coco-caption's BLEU, METEOR, ROUGE-L and CIDEr-D."""

import warnings

from keras_pvc.metrics.bleu import corpus_bleu
from keras_pvc.metrics.cider import CiderD
from keras_pvc.metrics.meteor import corpus_meteor
from keras_pvc.metrics.rouge import corpus_rouge_l
from keras_pvc.metrics.tokenizer import tokenize_caption

class PartialCoverageWarning(UserWarning):
    """Predictions cover only some of the clips that have references."""


METRIC_NAMES = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
_METRIC_GROUPS = {"BLEU": METRIC_NAMES[:4], "CIDER-D": ("CIDEr",)}
TOKENIZER_NAME = "keras_pvc PTB-compatible (pure Python)"


def _resolve_metrics(metrics):
    if metrics is None:
        return list(METRIC_NAMES)
    if isinstance(metrics, str):
        metrics = [metrics]
    by_upper = {name.upper(): (name,) for name in METRIC_NAMES}
    by_upper.update(_METRIC_GROUPS)
    selected = []
    for name in metrics:
        if str(name).upper() not in by_upper:
            raise ValueError(
                f"Unknown metric {name!r}; choose from {list(METRIC_NAMES)} or 'BLEU'."
            )
        selected.extend(n for n in by_upper[str(name).upper()] if n not in selected)
    return [name for name in METRIC_NAMES if name in selected]


def _check_inputs(references, predictions):
    if not isinstance(references, dict) or not isinstance(predictions, dict):
        raise ValueError("references and predictions must be dicts keyed by clip id.")
    if not predictions:
        raise ValueError("predictions is empty: there is nothing to evaluate.")
    unknown = [clip_id for clip_id in predictions if clip_id not in references]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of {len(predictions)} predictions are for clips that "
            f"have no references (e.g. {', '.join(repr(c) for c in unknown[:3])})."
        )
    for clip_id, prediction in predictions.items():
        if not isinstance(prediction, str):
            raise ValueError(
                f"The prediction for clip {clip_id!r} must be a str, "
                f"got {type(prediction).__name__}."
            )
        clip_references = references[clip_id]
        if isinstance(clip_references, str) or not isinstance(clip_references, (list, tuple)):
            raise ValueError(f"The references of clip {clip_id!r} must be a list of str.")
        if len(clip_references) == 0:
            raise ValueError(f"Clip {clip_id!r} has no references.")
        for reference in clip_references:
            if not isinstance(reference, str):
                raise ValueError(
                    f"A reference of clip {clip_id!r} is a {type(reference).__name__}, not a str."
                )


def evaluate_captions(
    references, predictions, metrics=None, per_clip=False, meteor_backend="auto"
):
    """Scores captions with coco-caption's metrics, to coco-caption's digits.

    Captions are tokenized as coco-caption's PTBTokenizer does (in pure
    Python), then scored with BLEU-1..4 (corpus, closest reference length),
    METEOR 1.5 (the jar when Java exists; else nltk + WordNet; else omitted
    with a warning), ROUGE-L (beta 1.2) and CIDEr-D (sigma 6, document
    frequencies from the evaluated clips' references). Only clips that have a
    prediction are evaluated, as coco-caption does; when the predictions
    cover only some of the clips with references, a `PartialCoverageWarning`
    says how many (`info["num_references"]` and `info["unpredicted"]` carry
    the counts), because scores over a subset are not comparable with scores
    over the whole split.

    Args:
        references: dict. `{clip_id: list of str}` reference captions.
        predictions: dict. `{clip_id: str}`, one predicted caption per clip.
        metrics: list of str or None. A subset of `"BLEU-1"`..`"BLEU-4"`,
            `"BLEU"`, `"METEOR"`, `"ROUGE-L"`, `"CIDEr"`; None for all.
        per_clip: bool. Also return every clip's scores under `"per_clip"`.
        meteor_backend: str. `"auto"`, `"meteor-1.5-jar"` or `"nltk-wordnet"`.

    Returns:
        dict. Metric name → float on coco-caption's scale (CIDEr 0.9, not
        90); `"meteor_backend"` → `"meteor-1.5-jar"`, `"nltk-wordnet"`
        (a different metric, printed "METEOR (nltk)"), absent when METEOR
        is not computed; `"info"` →
        dict with `"METEOR-backend"` (None when omitted),
        `"tokenizer"` and `"num_clips"`; with `per_clip`, `"per_clip"` →
        `{clip_id: {metric name: float}}`.

    Example:

    >>> scores = evaluate_captions(
    ...     {"vid1_0_5": ["A man is playing a guitar.", "Someone plays guitar."]},
    ...     {"vid1_0_5": "a man plays a guitar"},
    ...     metrics=["BLEU", "CIDEr"])
    >>> sorted(scores)
    ['BLEU-1', 'BLEU-2', 'BLEU-3', 'BLEU-4', 'CIDEr', 'info']
    """
    _check_inputs(references, predictions)
    selected = _resolve_metrics(metrics)
    if len(predictions) < len(references):
        missing = [clip_id for clip_id in references if clip_id not in predictions]
        warnings.warn(
            f"Scoring {len(predictions)} of the {len(references)} clips with "
            f"references: {len(missing)} have no prediction (e.g. "
            f"{', '.join(repr(clip_id) for clip_id in missing[:3])}); the "
            "scores are over the predicted clips only.",
            PartialCoverageWarning,
            stacklevel=2,
        )
    clip_ids = list(predictions)
    tokenized_predictions = [tokenize_caption(predictions[clip_id]) for clip_id in clip_ids]
    tokenized_references = [
        [tokenize_caption(reference) for reference in references[clip_id]]
        for clip_id in clip_ids
    ]
    scores, clip_scores = {}, {}
    if any(name.startswith("BLEU") for name in selected):
        corpus, per_clip_bleu = corpus_bleu(tokenized_references, tokenized_predictions)
        for order in range(4):
            scores[f"BLEU-{order + 1}"] = corpus[order]
            clip_scores[f"BLEU-{order + 1}"] = per_clip_bleu[:, order]
    backend = None
    if "METEOR" in selected:
        score, per_clip_meteor, backend = corpus_meteor(
            tokenized_references, tokenized_predictions, backend=meteor_backend
        )
        if score is not None:
            scores["METEOR"], clip_scores["METEOR"] = score, per_clip_meteor
    if "ROUGE-L" in selected:
        scores["ROUGE-L"], clip_scores["ROUGE-L"] = corpus_rouge_l(
            tokenized_references, tokenized_predictions
        )
    if "CIDEr" in selected:
        scores["CIDEr"], clip_scores["CIDEr"] = CiderD().score(
            tokenized_references, tokenized_predictions
        )
    result = {name: float(scores[name]) for name in selected if name in scores}
    # Which METEOR this is (`meteor_label`: nltk's prints as "METEOR (nltk)").
    if backend is not None:
        result["meteor_backend"] = backend
    result["info"] = {
        "METEOR-backend": backend,
        "tokenizer": TOKENIZER_NAME,
        "num_clips": len(clip_ids),
        "num_references": len(references),
        "unpredicted": len(references) - len(clip_ids),
    }
    if per_clip:
        result["per_clip"] = {
            clip_id: {
                name: float(clip_scores[name][index]) for name in selected if name in clip_scores
            }
            for index, clip_id in enumerate(clip_ids)
        }
    return result
