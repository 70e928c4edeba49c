"""Benchmark: in-graph CIDEr-D reward vs pycocoevalcap's CiderScorer.

MSVD's shape: a batch of 20 videos × 5 sampled captions, 40 references per
video, vocabulary 3000, captions of at most 20 words; document frequencies
from 1200 training clips × 40 references. Prints a table and writes
`benchmarks/results/rewards.json`. Never asserts times.

    python benchmarks/rewards.py
"""

import json
import os
import platform
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it

import numpy as np
import tensorflow as tf

from keras_pvc import rewards

# --- knobs ---
BATCH_SIZE = 20
SAMPLES_PER_VIDEO = 5
REFERENCES_PER_VIDEO = 40
VOCABULARY_SIZE = 3000
MAX_WORDS = 20
TRAIN_CLIPS = 1200
REPEATS = 20
SEED = 0
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "rewards.json")


def zipf_caption(rng, min_words=3):
    # Zipf-like word frequencies make n-grams repeat as in real captions.
    length = int(rng.integers(min_words, MAX_WORDS + 1))
    words = np.minimum(rng.zipf(1.3, size=length), VOCABULARY_SIZE - 5) + 3
    return words.tolist()


def padded(captions, length, with_bos_eos=True):
    row = np.zeros(length, dtype=np.int32)
    ids = ([2] + captions + [3]) if with_bos_eos else captions
    row[: len(ids)] = ids
    return row


def median_seconds(function, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


class ListWithLength(list):
    """A list whose `len` is the training corpus size: CiderScorer takes
    log(len(crefs)) as log(number of documents)."""

    def __init__(self, items, length):
        super().__init__(items)
        self.length = length

    def __len__(self):
        return self.length


def main():
    rng = np.random.default_rng(SEED)
    length = MAX_WORDS + 2
    print("building training references and document frequencies ...")
    train = np.stack(
        [
            np.stack([padded(zipf_caption(rng), length) for _ in range(REFERENCES_PER_VIDEO)])
            for _ in range(TRAIN_CLIPS)
        ]
    )
    start = time.perf_counter()
    reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE)
    frequency_seconds = time.perf_counter() - start
    references = np.stack(
        [
            np.stack([padded(zipf_caption(rng), length) for _ in range(REFERENCES_PER_VIDEO)])
            for _ in range(BATCH_SIZE)
        ]
    )
    candidates = np.stack(
        [padded(zipf_caption(rng, 1), length, with_bos_eos=False)
         for _ in range(BATCH_SIZE * SAMPLES_PER_VIDEO)]
    )
    candidate_tensor, reference_tensor = tf.constant(candidates), tf.constant(references)

    results = {}
    graph_fn = tf.function(reward_fn.__call__)
    graph_rewards = graph_fn(candidate_tensor, reference_tensor).numpy()  # warm-up (trace)
    results["in-graph (tf.function)"] = median_seconds(
        lambda: graph_fn(candidate_tensor, reference_tensor).numpy()
    )
    xla_reward_fn = rewards.CiderDReward.from_references(train, VOCABULARY_SIZE, xla_compatible=True)
    xla_fn = tf.function(xla_reward_fn.__call__, jit_compile=True)
    xla_fn(candidate_tensor, reference_tensor).numpy()
    results["in-graph (tf.function, XLA)"] = median_seconds(
        lambda: xla_fn(candidate_tensor, reference_tensor).numpy()
    )

    def text(ids):
        return rewards.ids_to_text(rewards.clean_token_ids(ids))

    train_texts = [[text(row) for row in clip] for clip in train]
    from keras_pvc import metrics

    frequency, num_documents = metrics.document_frequency(train_texts)
    candidate_texts = [text(row) for row in candidates]
    reference_texts = [[text(row) for row in clip] for clip in references]
    per_candidate_references = [
        reference_texts[index // SAMPLES_PER_VIDEO] for index in range(len(candidates))
    ]
    host_scorer = metrics.CiderD(frequency, num_documents)
    results["keras_pvc.metrics.CiderD (host)"] = median_seconds(
        lambda: host_scorer.score(per_candidate_references, candidate_texts), repeats=5
    )
    max_difference = None
    try:
        from pycocoevalcap.cider.cider_scorer import CiderScorer
    except ImportError:
        CiderScorer = None
    if CiderScorer is not None:
        coco_frequency = {ngram: float(count) for ngram, count in frequency.items()}

        def coco_cider():
            scorer = CiderScorer(n=4, sigma=6.0)
            for candidate, clip_references in zip(candidate_texts, per_candidate_references):
                scorer += (candidate, clip_references)
            scorer.document_frequency.update(coco_frequency)
            scorer.crefs = ListWithLength(scorer.crefs, num_documents)
            return np.array(scorer.compute_cider())

        coco_rewards = coco_cider()
        max_difference = float(np.max(np.abs(coco_rewards - graph_rewards)))
        results["pycocoevalcap CiderScorer"] = median_seconds(coco_cider, repeats=5)

    baseline = results.get("pycocoevalcap CiderScorer")
    print()
    print(f"CIDEr-D reward: {BATCH_SIZE} videos x {SAMPLES_PER_VIDEO} samples, "
          f"{REFERENCES_PER_VIDEO} refs each, vocab {VOCABULARY_SIZE}, <= {MAX_WORDS} words")
    print(f"{'method':<34} {'ms/batch':>10} {'speed-up vs coco':>17}")
    print(f"{'-' * 34} {'-' * 10} {'-' * 17}")
    for name, seconds in results.items():
        ratio = f"{baseline / seconds:.1f}x" if baseline else "n/a"
        print(f"{name:<34} {1000 * seconds:>10.2f} {ratio:>17}")
    print(f"document frequencies from {TRAIN_CLIPS}x{REFERENCES_PER_VIDEO} refs: "
          f"{frequency_seconds:.2f} s (once); max |in-graph - coco| = {max_difference}")
    print("load average (1/5/15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))

    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    record = {
        "shape": {
            "batch_size": BATCH_SIZE, "samples_per_video": SAMPLES_PER_VIDEO,
            "references_per_video": REFERENCES_PER_VIDEO, "vocabulary_size": VOCABULARY_SIZE,
            "max_words": MAX_WORDS, "train_clips": TRAIN_CLIPS,
        },
        "milliseconds_per_batch": {name: 1000 * s for name, s in results.items()},
        "speed_up_vs_pycocoevalcap": (
            {name: baseline / s for name, s in results.items()} if baseline else None
        ),
        "document_frequency_seconds": frequency_seconds,
        "max_abs_difference_vs_pycocoevalcap": max_difference,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min": list(os.getloadavg()),
        "tensorflow": tf.__version__,
    }
    with open(OUTPUT, "w") as file:
        json.dump(record, file, indent=2)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
