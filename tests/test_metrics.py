"""Tests for keras_pvc.metrics: equal to coco-caption (pycocoevalcap) digits."""

import json
import os
import random
import shutil
import warnings

import numpy as np
import pytest

from keras_pvc import metrics
from keras_pvc.metrics import meteor as meteor_module

HAS_JAVA = shutil.which("java") is not None

WORDS = (
    "a man woman dog cat is are playing riding eating running on the in with "
    "guitar horse bike food street two people and car red blue small big"
).split()
EDGE_WORDS = ["Café", "naïve", "Zoë", "über", "Москва", "résumé"]
PUNCTUATION = [".", ",", "!", "?", ";", ":", "...", " -", "!!"]


def _random_caption(rng, min_words=3, max_words=12):
    words = [rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))]
    if rng.random() < 0.3:
        words[rng.randrange(len(words))] = rng.choice(EDGE_WORDS)
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if rng.random() < 0.2:
        words[rng.randrange(len(words))] = rng.choice(["doesn't", "man's", "it's", "can't"])
    if rng.random() < 0.2:
        position = rng.randrange(len(words))
        words[position] += rng.choice([",", ";", ":"])
    caption = " ".join(words)
    if rng.random() < 0.5:
        caption += rng.choice(PUNCTUATION)
    if rng.random() < 0.1:
        caption = caption.upper()
    return caption


def make_corpus(num_clips=60, seed=0):
    """Deterministic clips with 5-9 references each, plus the edge cases."""
    rng = random.Random(seed)
    references, predictions = {}, {}
    for index in range(num_clips):
        clip_id = f"vid{index}_{index}_{index + 5}"
        references[clip_id] = [_random_caption(rng) for _ in range(rng.randint(5, 9))]
        predictions[clip_id] = _random_caption(rng, 1, 10)
    edge_cases = {
        "empty": "",
        "identical": None,  # filled with its first reference below
        "one_word": "dog",
        "repeated": "a a a a dog dog dog the the",
        "punctuation": "A MAN, is... Playing!! a Guitar?",
        "non_ascii": "Café naïve Zoë über Москва",
        "only_punctuation": "...!",
    }
    for name, prediction in edge_cases.items():
        clip_id = f"edge_{name}_0_1"
        references[clip_id] = [_random_caption(rng) for _ in range(5)]
        predictions[clip_id] = references[clip_id][0] if prediction is None else prediction
    references["edge_non_ascii_0_1"][1] = "café naïve zoë über москва ok"
    references["edge_repeated_0_1"][2] = "a dog a dog the dog"
    return references, predictions


def _coco_inputs(references, predictions):
    clip_ids = list(predictions)
    gts = {c: [metrics.tokenize_caption(r) for r in references[c]] for c in clip_ids}
    res = {c: [metrics.tokenize_caption(predictions[c])] for c in clip_ids}
    return gts, res


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


@pytest.fixture(scope="module")
def our_scores(corpus):
    references, predictions = corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metrics.evaluate_captions(
            references, predictions, metrics=["BLEU", "ROUGE-L", "CIDEr"], per_clip=True
        )


def test_corpus_shape(corpus):
    references, predictions = corpus
    assert len(predictions) >= 50
    assert all(len(refs) >= 5 for refs in references.values())


def test_bleu_matches_pycocoevalcap(corpus, our_scores):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _coco_inputs(*corpus)
    coco_corpus, coco_per_clip = Bleu(4).compute_score(gts, res, verbose=0)
    for order in range(4):
        assert our_scores[f"BLEU-{order + 1}"] == pytest.approx(coco_corpus[order], abs=1e-10)
        ours = [our_scores["per_clip"][c][f"BLEU-{order + 1}"] for c in gts]
        np.testing.assert_allclose(ours, coco_per_clip[order], atol=1e-10)


def test_rouge_l_matches_pycocoevalcap(corpus, our_scores):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _coco_inputs(*corpus)
    coco_mean, coco_per_clip = Rouge().compute_score(gts, res)
    assert our_scores["ROUGE-L"] == pytest.approx(coco_mean, abs=1e-10)
    ours = [our_scores["per_clip"][c]["ROUGE-L"] for c in gts]
    np.testing.assert_allclose(ours, coco_per_clip, atol=1e-10)


def test_cider_d_matches_pycocoevalcap(corpus, our_scores):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.cider.cider import Cider

    gts, res = _coco_inputs(*corpus)
    coco_mean, coco_per_clip = Cider().compute_score(gts, res)
    assert our_scores["CIDEr"] == pytest.approx(coco_mean, abs=1e-10)
    ours = [our_scores["per_clip"][c]["CIDEr"] for c in gts]
    np.testing.assert_allclose(ours, coco_per_clip, atol=1e-10)
    assert our_scores["per_clip"]["edge_identical_0_1"]["CIDEr"] > 1.0
    assert our_scores["per_clip"]["edge_empty_0_1"]["CIDEr"] == 0.0


@pytest.mark.skipif(not HAS_JAVA, reason="PTBTokenizer needs java")
def test_tokenizer_matches_ptb_tokenizer(corpus):
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references, predictions = corpus
    captions = [c for refs in references.values() for c in refs] + list(predictions.values())
    captions += [
        "A man's dog doesn't run, can't stop; won't go!",
        "The cat (a big one) sits on [the] mat {ok}.",
        '"Hello" she said \'quoted\' `back`',
        "He's 5'10\" tall and it's 3.5 km -- wow...",
        "well-known e-mail U.S.A. Mr. Smith Dr. Who etc.",
        "price $5,000 & 50% off #tag @user €100 £5",
        "I'm you're we've they'd she'll gonna wanna gotta cannot",
        "what?! really?? yes!!! no... hmm. end.!",
        "1,000 1.5 1/2 3:30 10-20 a,b,c hello:world",
        "“curly quotes” and ‘single’ fiancé’s car em—dash",
        "a  man   is  ",
        "...",
    ]
    ptb = PTBTokenizer().tokenize(
        {str(i): [{"caption": caption}] for i, caption in enumerate(captions)}
    )
    for index, caption in enumerate(captions):
        assert metrics.tokenize_caption(caption) == ptb[str(index)][0], caption


@pytest.mark.skipif(not HAS_JAVA, reason="PTBTokenizer needs java")
def test_full_pipeline_matches_coco_caption_on_raw_captions(corpus, our_scores):
    """Raw captions through PTBTokenizer + coco scorers give our numbers."""
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references, predictions = corpus
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({c: [{"caption": r} for r in references[c]] for c in predictions})
    res = tokenizer.tokenize({c: [{"caption": predictions[c]}] for c in predictions})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert our_scores["BLEU-4"] == pytest.approx(bleu[3], abs=1e-4)
    assert our_scores["ROUGE-L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-4)
    assert our_scores["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-4)


def _run_meteor_jar_cli(hypotheses, references, folder):
    """Scores with the METEOR 1.5 jar's own command line, not a wrapper.

    Plain-text files, one hypothesis per line and `len(references[i])`
    consecutive reference lines per segment (`-r`), with the options
    coco-caption uses (`-l en -norm`). Returns `(final, per_segment)` as
    the jar prints them.
    """
    import re
    import subprocess

    from pycocoevalcap.meteor import meteor as coco_meteor

    jar = os.path.join(os.path.dirname(coco_meteor.__file__), "meteor-1.5.jar")
    num_references = len(references[0])
    assert all(len(refs) == num_references for refs in references)
    hypothesis_file, reference_file = folder / "test.txt", folder / "reference.txt"
    hypothesis_file.write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
    reference_file.write_text(
        "".join(r + "\n" for refs in references for r in refs), encoding="utf-8"
    )
    result = subprocess.run(
        ["java", "-Xmx2G", "-jar", jar, str(hypothesis_file), str(reference_file),
         "-l", "en", "-norm", "-r", str(num_references)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    per_segment = [
        float(value)
        for value in re.findall(r"^Segment \d+ score:\s*(\S+)$", result.stdout, re.M)
    ]
    final = float(re.search(r"^Final score:\s*(\S+)$", result.stdout, re.M).group(1))
    assert len(per_segment) == len(hypotheses), result.stdout[-2000:]
    return final, np.array(per_segment)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_JAVA, reason="the METEOR jar needs java")
def test_meteor_jar_matches_pycocoevalcap(corpus, tmp_path):
    """coco-caption's METEOR, run outside our code and outside its wrapper.

    The reference is coco-caption's pipeline done by hand: raw captions
    through pycocoevalcap's (Java) PTBTokenizer, written to files and
    scored by the bundled METEOR 1.5 jar's plain command line. Ours goes
    through our pure-Python tokenizer and our backend (the jar over
    `-stdio`, statistics aggregated over clips), so a tokenizer that keeps
    punctuation, a corpus score that averages the clips, or clips scored
    against another clip's references all show here.
    """
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references, predictions = corpus
    clip_ids = list(predictions)
    # The jar's plain-text format takes a fixed number of references per line.
    references = {clip_id: references[clip_id][:5] for clip_id in clip_ids}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({c: [{"caption": r} for r in references[c]] for c in clip_ids})
    res = tokenizer.tokenize({c: [{"caption": predictions[c]}] for c in clip_ids})
    jar_final, jar_per_clip = _run_meteor_jar_cli(
        [res[c][0] for c in clip_ids], [gts[c] for c in clip_ids], tmp_path
    )

    scores = metrics.evaluate_captions(
        references, predictions, metrics=["METEOR"], per_clip=True,
        meteor_backend="meteor-1.5-jar",
    )
    assert scores["info"]["METEOR-backend"] == "meteor-1.5-jar"
    ours = np.array([scores["per_clip"][c]["METEOR"] for c in clip_ids])
    np.testing.assert_allclose(ours, jar_per_clip, rtol=0, atol=1e-12)
    assert scores["METEOR"] == pytest.approx(jar_final, abs=1e-12)
    # The corpus score pools matches over clips; it is not the clips' mean,
    # so the check above tells the two apart.
    assert abs(np.mean(jar_per_clip) - jar_final) > 1e-3
    # Known values: a caption equal to a reference scores 1 (one chunk, no
    # fragmentation penalty), an empty one 0.
    assert scores["per_clip"]["edge_identical_0_1"]["METEOR"] == 1.0
    assert scores["per_clip"]["edge_empty_0_1"]["METEOR"] == 0.0


# Two clips scored by hand with nltk's METEOR (alpha 0.9, beta 3, gamma 0.5;
# exact matches only: no shared stems or WordNet synonyms among the other
# words). score = (1 - gamma * (chunks / m)**beta) * P R / (alpha P + (1 - alpha) R),
# the best over the references.
NLTK_HAND_REFERENCES = {
    "c1_0_1": ["The dog jumps over a fence.", "Two cats sleep."],
    "c2_0_1": ["the red car stops here"],
}
NLTK_HAND_PREDICTIONS = {"c1_0_1": "A dog jumps high!", "c2_0_1": "Red car stops."}
# c1: "a dog jumps high" vs "the dog jumps over a fence": m = 3 (a, dog,
# jumps), P = 3/4, R = 3/6, Fmean = 0.375 / 0.725 = 15/29; aligned in
# hypothesis order a->5th, dog->2nd, jumps->3rd: 2 chunks, penalty
# 0.5 (2/3)^3 = 4/27; score 23/27 * 15/29 = 345/783. "two cats sleep": m = 0.
# c2: "red car stops" vs "the red car stops here": m = 3, P = 1, R = 3/5,
# Fmean = 0.6 / 0.96 = 5/8; 1 chunk, penalty 0.5 (1/3)^3 = 1/54; score
# 53/54 * 5/8 = 265/432.
NLTK_HAND_SCORES = {"c1_0_1": 345 / 783, "c2_0_1": 265 / 432}


@pytest.mark.parametrize("backend", ["nltk-wordnet", "auto"])
def test_meteor_nltk_fallback(tmp_path, monkeypatch, backend):
    if not meteor_module.prepare_wordnet(str(tmp_path / "nltk_data")):
        pytest.skip("no WordNet (Debian wordnet-base + wordnet-sense-index)")
    if backend == "auto":
        # The fallback itself: without the jar, "auto" must pick nltk.
        monkeypatch.delenv("KERAS_PVC_METEOR", raising=False)
        monkeypatch.setattr(meteor_module, "_meteor_jar_available", lambda: False)
    scores = metrics.evaluate_captions(
        NLTK_HAND_REFERENCES, NLTK_HAND_PREDICTIONS,
        metrics=["METEOR"], per_clip=True, meteor_backend=backend,
    )
    assert scores["info"]["METEOR-backend"] == "nltk-wordnet"
    for clip_id, expected in NLTK_HAND_SCORES.items():
        assert scores["per_clip"][clip_id]["METEOR"] == pytest.approx(expected, rel=1e-12)
    # The fallback reports the mean of the clips.
    assert scores["METEOR"] == pytest.approx(np.mean(list(NLTK_HAND_SCORES.values())), rel=1e-12)


def test_meteor_environment_variable_chooses_what_auto_picks(monkeypatch):
    monkeypatch.setattr(meteor_module, "_meteor_jar_available", lambda: True)
    monkeypatch.setattr(meteor_module, "prepare_wordnet", lambda: True)
    monkeypatch.delenv("KERAS_PVC_METEOR", raising=False)
    assert meteor_module.select_meteor_backend("auto") == "meteor-1.5-jar"
    monkeypatch.setenv("KERAS_PVC_METEOR", "nltk-wordnet")
    assert meteor_module.select_meteor_backend("auto") == "nltk-wordnet"
    # A backend asked for by name wins over the variable.
    assert meteor_module.select_meteor_backend("meteor-1.5-jar") == "meteor-1.5-jar"
    monkeypatch.setenv("KERAS_PVC_METEOR", "jar")
    with pytest.raises(ValueError, match="KERAS_PVC_METEOR='jar' is not a METEOR backend"):
        meteor_module.select_meteor_backend("auto")


def test_meteor_omitted_with_warning(monkeypatch):
    monkeypatch.setattr(meteor_module, "select_meteor_backend", lambda backend: None)
    with pytest.warns(UserWarning, match="METEOR omitted"):
        scores = metrics.evaluate_captions({"c_0_1": ["a dog"]}, {"c_0_1": "a dog"})
    assert "METEOR" not in scores
    assert scores["info"]["METEOR-backend"] is None
    assert set(scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr", "info"}
    assert all(isinstance(scores[name], float) for name in scores if name != "info")


def test_bleu_hand_computed():
    # "a cat sat" against "a cat sat down" (4 words) and "the cat is here now"
    # (5): closest length 4; matches 3/3, 2/2, 1/1, 0/0, so BLEU-1..3 are the
    # brevity penalty and BLEU-4 is tiny-smoothed.
    corpus, per_clip = metrics.corpus_bleu(
        [["a cat sat down", "the cat is here now"]], ["a cat sat"]
    )
    brevity = np.exp(1 - 4 / 3)
    for order in range(3):
        assert corpus[order] == pytest.approx(brevity, rel=1e-8)
    assert corpus[3] == pytest.approx(brevity * (1e-15 / 1e-9) ** 0.25, rel=1e-6)
    np.testing.assert_allclose(per_clip[0], corpus)
    # A tie between lengths 4 and 2 goes to the shorter one: no penalty.
    corpus, _ = metrics.corpus_bleu([["a cat sat down", "the cat"]], ["a cat sat"])
    assert corpus[0] == pytest.approx(1.0, abs=1e-8)


def test_cider_d_hand_computed():
    # Two clips; each word appears in one clip's references only, so every
    # n-gram has idf log(2) - log(1) = log 2 and the prediction equal to its
    # single reference has cosine 1 for orders 1..4 and no length penalty.
    references = [["a b c d e"], ["f g h i j"]]
    mean, per_clip = metrics.CiderD().score(references, ["a b c d e", "f g"])
    assert per_clip[0] == pytest.approx(10.0)
    # "f g" vs "f g h i j": unigram cos = 2/sqrt(2*5), bigram = 1/sqrt(1*4),
    # no trigrams/4-grams; bigram lengths 1 vs 4 → penalty exp(-9/72).
    expected = 10 * (2 / np.sqrt(10) + 1 / 2) / 4 * np.exp(-9 / 72)
    assert per_clip[1] == pytest.approx(expected)
    assert mean == pytest.approx((10 + expected) / 2)


def test_cider_d_reward_mode_uses_given_frequencies():
    train = [["a dog runs"], ["a cat sits"], ["a bird flies"]]
    scorer = metrics.CiderD.from_corpus(train)
    assert scorer.num_documents == 3
    assert scorer.frequency[("a",)] == 3
    _, per_clip = scorer.score([["a dog runs"]], ["a dog runs"])
    assert per_clip[0] > 0  # eval mode on one clip would give 0 (log 1)


def test_tokenize_caption_basic():
    assert metrics.tokenize_caption("A man's dog doesn't run, it walks.") == (
        "a man 's dog does n't run it walks"
    )
    assert metrics.tokenize_caption("") == ""
    assert metrics.tokenize_caption("Café  NAÏVE!") == "café naïve"


@pytest.mark.parametrize(
    "references, predictions, message",
    [
        ({"a_0_1": ["x"]}, {"b_0_1": "x"}, "b_0_1"),
        ({"a_0_1": []}, {"a_0_1": "x"}, "a_0_1"),
        ({"a_0_1": ["x"]}, {"a_0_1": 3}, "a_0_1"),
        ({"a_0_1": ["x", None]}, {"a_0_1": "x"}, "a_0_1"),
        ({"a_0_1": "x"}, {"a_0_1": "x"}, "a_0_1"),
        ({"a_0_1": ["x"]}, {}, "empty"),
    ],
)
def test_bad_input_raises(references, predictions, message):
    with pytest.raises(ValueError, match=message):
        metrics.evaluate_captions(references, predictions, metrics=["BLEU"])


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match="SPICE"):
        metrics.evaluate_captions({"a": ["x"]}, {"a": "x"}, metrics=["SPICE"])


def test_evaluate_files_and_table(tmp_path, corpus):
    references, predictions = corpus
    (tmp_path / "refs.json").write_text(json.dumps(references), encoding="utf-8")
    (tmp_path / "pred.json").write_text(json.dumps(predictions), encoding="utf-8")
    output = tmp_path / "scores.json"
    scores = metrics.evaluate_files(
        str(tmp_path / "pred.json"), str(tmp_path / "refs.json"), str(output),
        metrics=["BLEU", "ROUGE-L", "CIDEr"],
    )
    assert json.loads(output.read_text()) == scores
    table = metrics.format_table(scores)
    assert "CIDEr" in table and f"{100 * scores['CIDEr']:.2f}" in table
    assert len({len(line) for line in table.splitlines()[:8]}) == 1


@pytest.mark.parametrize("backend", ["nltk-wordnet", "meteor-1.5-jar"])
def test_nltk_meteor_is_labelled_apart_from_meteor_1_5(tmp_path, monkeypatch, backend):
    """nltk's METEOR is another metric: its name says so in every table and
    JSON (issue 21); METEOR 1.5 keeps the plain name."""
    from keras_pvc.training.runs import format_scores
    from keras_pvc.training.runs import score_captions

    if backend == "nltk-wordnet" and not meteor_module.prepare_wordnet(
        str(tmp_path / "nltk_data")
    ):
        pytest.skip("no WordNet (Debian wordnet-base + wordnet-sense-index)")
    if backend == "meteor-1.5-jar" and not HAS_JAVA:
        pytest.skip("the METEOR jar needs java")
    monkeypatch.setattr(
        meteor_module, "select_meteor_backend", lambda requested, _b=backend: _b
    )
    (tmp_path / "refs.json").write_text(json.dumps(NLTK_HAND_REFERENCES))
    (tmp_path / "pred.json").write_text(json.dumps(NLTK_HAND_PREDICTIONS))
    scores = metrics.evaluate_files(
        str(tmp_path / "pred.json"), str(tmp_path / "refs.json"), str(tmp_path / "s.json")
    )
    assert scores["meteor_backend"] == backend
    assert json.loads((tmp_path / "s.json").read_text())["meteor_backend"] == backend
    nltk = backend == "nltk-wordnet"
    table = metrics.format_table(scores)
    meteor_row = [line for line in table.splitlines() if line.startswith("METEOR")][0]
    assert meteor_row.startswith("METEOR (nltk)") == nltk
    assert f"{100 * scores['METEOR']:.2f}" in meteor_row
    assert len({len(line) for line in table.splitlines()[:9]}) == 1  # aligned

    from keras_pvc.datasets.clip import Clip

    clips = [Clip(k, refs, "test") for k, refs in NLTK_HAND_REFERENCES.items()]
    results = score_captions(clips, NLTK_HAND_PREDICTIONS)
    assert results["all"]["meteor_backend"] == backend
    header, row = format_scores(results).splitlines()
    assert ("METEOR (nltk)" in header) == nltk and "METEOR" in header
    assert f"{100 * results['all']['METEOR']:.1f}" in row
    assert len(header) == len(row)
