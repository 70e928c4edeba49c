"""Caption metrics as coco-caption computes them, without Java where possible."""

from keras_pvc.metrics.bleu import corpus_bleu
from keras_pvc.metrics.cider import CiderD
from keras_pvc.metrics.cider import document_frequency
from keras_pvc.metrics.evaluate import METRIC_NAMES
from keras_pvc.metrics.evaluate import evaluate_captions
from keras_pvc.metrics.meteor import corpus_meteor
from keras_pvc.metrics.meteor import prepare_wordnet
from keras_pvc.metrics.report import evaluate_files
from keras_pvc.metrics.report import format_table
from keras_pvc.metrics.rouge import corpus_rouge_l
from keras_pvc.metrics.tokenizer import tokenize_caption
from keras_pvc.metrics.tokenizer import tokenize_captions

__all__ = [
    "METRIC_NAMES",
    "CiderD",
    "corpus_bleu",
    "corpus_meteor",
    "corpus_rouge_l",
    "document_frequency",
    "evaluate_captions",
    "evaluate_files",
    "format_table",
    "prepare_wordnet",
    "tokenize_caption",
    "tokenize_captions",
]
