"""METEOR: coco-caption's METEOR 1.5 jar when Java exists, else nltk + WordNet."""

import os
import shutil
import threading
import warnings

import numpy as np

METEOR_JAR_BACKEND = "meteor-1.5-jar"
NLTK_BACKEND = "nltk-wordnet"
# How each backend's score is named in tables: nltk's METEOR (WordNet
# synonyms, no paraphrase table, its own parameters) is a different metric
# from METEOR 1.5 and scores differently, so it never prints as "METEOR".
METEOR_LABELS = {METEOR_JAR_BACKEND: "METEOR", NLTK_BACKEND: "METEOR (nltk)"}
# Overrides what `"auto"` picks (see `select_meteor_backend`).
METEOR_ENV = "KERAS_PVC_METEOR"

# Debian's `wordnet-base` + `wordnet-sense-index` install WordNet 3.0 here.
DEBIAN_WORDNET_DIR = "/usr/share/wordnet"
_WORDNET_FILES = (
    "adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev",
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb", "index.sense",
)
# WordNet 3.0's `lexnames` file (Debian ships it only as a man page): number,
# name, syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXNAMES = ["adj.all 3", "adj.pert 3", "adv.all 4"] + [
    f"noun.{name} 1" for name in (
        "Tops act animal artifact attribute body cognition communication event "
        "feeling food group location motive object person phenomenon plant "
        "possession process quantity relation shape state substance time"
    ).split()
] + [
    f"verb.{name} 2" for name in (
        "body change cognition communication competition consumption contact "
        "creation emotion motion perception possession social stative weather"
    ).split()
] + ["adj.ppl 3"]


def _nltk_has_wordnet():
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        return True
    except LookupError:
        return False


def prepare_wordnet(data_dir=None, source_dir=DEBIAN_WORDNET_DIR):
    """Finds WordNet for nltk, or sets it up from Debian's files; never downloads.

    When nltk cannot already find `corpora/wordnet`, copies the WordNet 3.0
    files of Debian's `wordnet-base` and `wordnet-sense-index` packages into
    `<data_dir>/corpora/wordnet/`, writes the 45-line `lexnames` file nltk
    needs, and adds `data_dir` to `nltk.data.path`.

    Args:
        data_dir: str or None. Where to build the nltk data folder. Defaults
            to `$KERAS_PVC_NLTK_DATA` or `~/.cache/keras_pvc/nltk_data`.
        source_dir: str. The folder holding Debian's WordNet files.

    Returns:
        bool. True when nltk can load WordNet afterwards.

    Example:

    >>> prepare_wordnet()  # doctest: +SKIP
    True
    """
    try:
        import nltk
    except ImportError:
        return False
    if _nltk_has_wordnet():
        return True
    if data_dir is None:
        data_dir = os.environ.get(
            "KERAS_PVC_NLTK_DATA",
            os.path.join(os.path.expanduser("~"), ".cache", "keras_pvc", "nltk_data"),
        )
    wordnet_dir = os.path.join(data_dir, "corpora", "wordnet")
    if not os.path.exists(os.path.join(wordnet_dir, "lexnames")):
        if not all(os.path.isfile(os.path.join(source_dir, name)) for name in _WORDNET_FILES):
            return False
        os.makedirs(wordnet_dir, exist_ok=True)
        for name in _WORDNET_FILES:
            # nltk needs real files here: symbolic links are not enough.
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(wordnet_dir, name))
        with open(os.path.join(wordnet_dir, "lexnames"), "w") as lexnames:
            for number, line in enumerate(_LEXNAMES):
                name, category = line.split()
                lexnames.write(f"{number:02d}\t{name}\t{category}\n")
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    return _nltk_has_wordnet()


def _meteor_jar_available():
    if shutil.which("java") is None:
        return False
    try:
        from pycocoevalcap.meteor import meteor  # noqa: F401  (optional extra)
    except ImportError:
        return False
    return True


def _meteor_with_jar(references, predictions):
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        gts = {index: refs for index, refs in enumerate(references)}
        res = {index: [prediction] for index, prediction in enumerate(predictions)}
        score, per_clip = scorer.compute_score(gts, res)
    finally:
        # Its `__del__` stops the Java process under `lock`, which an
        # exception inside `compute_score` would leave held.
        scorer.lock = threading.Lock()
        del scorer
    return float(score), np.array(per_clip, dtype=np.float64)


def _meteor_with_nltk(references, predictions):
    from nltk.translate.meteor_score import meteor_score

    per_clip = np.array(
        [
            meteor_score([reference.split() for reference in refs], prediction.split())
            for prediction, refs in zip(predictions, references)
        ],
        dtype=np.float64,
    )
    return float(np.mean(per_clip)), per_clip


def meteor_label(backend):
    """The name a METEOR score of `backend` is printed under.

    Example:

    >>> meteor_label("nltk-wordnet")
    'METEOR (nltk)'
    """
    return METEOR_LABELS.get(backend, "METEOR")


def select_meteor_backend(backend="auto"):
    """Picks the METEOR backend: the jar, nltk + WordNet, or None.

    Args:
        backend: str. `"auto"` (the jar if `java` and pycocoevalcap exist,
            else nltk with WordNet), `"meteor-1.5-jar"` or `"nltk-wordnet"`.
            `"auto"` first reads `$KERAS_PVC_METEOR` (one of the same three
            names): `KERAS_PVC_METEOR=nltk-wordnet` skips the jar's ~10 s
            Java start in every run (the test suite sets it).

    Returns:
        str or None. The backend name, None when no backend can run.

    Example:

    >>> select_meteor_backend()  # doctest: +SKIP
    'meteor-1.5-jar'
    """
    names = ("auto", METEOR_JAR_BACKEND, NLTK_BACKEND)
    if backend not in names:
        raise ValueError(f"Unknown METEOR backend {backend!r}.")
    if backend == "auto":
        backend = os.environ.get(METEOR_ENV, "").strip() or "auto"
        if backend not in names:
            raise ValueError(
                f"${METEOR_ENV}={backend!r} is not a METEOR backend; use one of {names}."
            )
    if backend in ("auto", METEOR_JAR_BACKEND) and _meteor_jar_available():
        return METEOR_JAR_BACKEND
    if backend in ("auto", NLTK_BACKEND) and prepare_wordnet():
        return NLTK_BACKEND
    return None


def corpus_meteor(references, predictions, backend="auto"):
    """METEOR of tokenized predictions; coco-caption's jar where possible.

    The jar's corpus score aggregates statistics over clips (it is not the
    mean of the per-clip scores); the nltk fallback reports the mean.

    Args:
        references: list of list of str. Tokenized references per clip.
        predictions: list of str. One tokenized prediction per clip.
        backend: str. See `select_meteor_backend`.

    Returns:
        A tuple `(score, per_clip_scores, backend_name)`, or
        `(None, None, None)` with a warning when no backend can run.

    Example:

    >>> score, per_clip, backend = corpus_meteor([["a dog runs"]], ["a dog runs"])  # doctest: +SKIP
    """
    selected = select_meteor_backend(backend)
    if selected == METEOR_JAR_BACKEND:
        return (*_meteor_with_jar(references, predictions), selected)
    if selected == NLTK_BACKEND:
        return (*_meteor_with_nltk(references, predictions), selected)
    warnings.warn(
        "METEOR omitted: it needs `java` with pycocoevalcap (pip install "
        "keras-pvc[coco]) or nltk with WordNet (Debian packages wordnet-base "
        "and wordnet-sense-index).",
        stacklevel=2,
    )
    return None, None, None
