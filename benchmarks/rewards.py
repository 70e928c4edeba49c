"""Benchmark: the CIDEr-D reward (keras.ops) on the current backend vs pycocoevalcap.

The self-critical shape of MSVD: a batch of 20 videos × 5 sampled captions,
40 references per video, vocabulary 3000, captions of at most 20 words;
document frequencies from 1200 training clips × 40 references. Times the
reward the ways the backend runs it (TensorFlow: eager, `tf.function`, XLA;
JAX: `jax.jit`; PyTorch: eager under `torch.no_grad`), and the host scorers
on the same captions. Prints a table and writes
`benchmarks/results/rewards_<backend>.json`. Never asserts times.

    KERAS_BACKEND=jax python benchmarks/rewards.py   # or tensorflow, torch
"""

import datetime
import json
import os
import platform
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the `keras-pvc` CLI sets it

import keras
import numpy as np
from keras import ops

from keras_pvc import metrics
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
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def zipf_caption(rng, min_words=3):
    # Zipf-like word frequencies make n-grams repeat as in real captions.
    length = int(rng.integers(min_words, MAX_WORDS + 1))
    words = np.minimum(rng.zipf(1.3, size=length), VOCABULARY_SIZE - 5) + 3
    return words.tolist()


def sampled_caption(rng, video_references, length):
    """A caption like a trained model's sample: a reference of its video with
    about a third of its words replaced (and sometimes cut short), so rewards
    are far from zero."""
    reference = video_references[rng.integers(len(video_references))]
    words = [int(word) for word in reference if word > 3]
    words = [zipf_caption(rng, 1)[0] if rng.random() < 0.35 else word for word in words]
    words = words[: rng.integers(1, len(words) + 1)] if rng.random() < 0.3 else words
    return padded(words, length, with_bos_eos=False)


def padded(captions, length, with_bos_eos=True):
    row = np.zeros(length, dtype=np.int32)
    ids = ([2] + captions + [3]) if with_bos_eos else captions
    row[: len(ids)] = ids
    return row


def timed(function, repeats=REPEATS):
    """(first call seconds: trace/compile + run, median seconds of the next `repeats`, output)."""
    start = time.perf_counter()
    output = np.asarray(function())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return first, float(np.median(times)), output


class ListWithLength(list):
    """A list whose `len` is the training corpus size: CiderScorer takes
    log(len(crefs)) as log(number of documents)."""

    def __init__(self, items, length):
        super().__init__(items)
        self.length = length

    def __len__(self):
        return self.length


def backend_variants(reward_fn, candidates, references):
    """name -> a no-argument callable returning the rewards as numpy, per backend."""
    backend = keras.backend.backend()
    candidate_tensor = ops.convert_to_tensor(candidates)
    reference_tensor = ops.convert_to_tensor(references)
    if backend == "tensorflow":
        import tensorflow as tf

        graph = tf.function(reward_fn.__call__)
        xla = tf.function(reward_fn.__call__, jit_compile=True)
        return {
            "keras.ops, eager": lambda: reward_fn(candidate_tensor, reference_tensor).numpy(),
            "keras.ops, tf.function": lambda: graph(candidate_tensor, reference_tensor).numpy(),
            "keras.ops, tf.function XLA": lambda: xla(candidate_tensor, reference_tensor).numpy(),
        }
    if backend == "jax":
        import jax

        # `__call__` jits its computation on JAX; an outer jit (as in a
        # jitted train step) gives one program.
        outer = jax.jit(reward_fn.__call__)
        return {
            "keras.ops, call (jitted inside)": lambda: np.asarray(
                reward_fn(candidate_tensor, reference_tensor)
            ),
            "keras.ops, jax.jit": lambda: np.asarray(outer(candidate_tensor, reference_tensor)),
        }
    if backend == "torch":
        import torch

        def eager():
            with torch.no_grad():
                return reward_fn(candidate_tensor, reference_tensor).cpu().numpy()

        def one_thread():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return eager()
            finally:
                torch.set_num_threads(threads)

        return {
            f"keras.ops, torch eager ({torch.get_num_threads()} threads)": eager,
            "keras.ops, torch eager (1 thread)": one_thread,
        }
    raise ValueError(f"No benchmark for backend {backend!r}.")


def host_variants(train, candidates, references):
    """The host scorers on the same captions: keras_pvc.metrics.CiderD and pycocoevalcap."""

    def text(ids):
        return rewards.ids_to_text(rewards.clean_token_ids(ids))

    train_texts = [[text(row) for row in clip] for clip in train]
    frequency, num_documents = metrics.document_frequency(train_texts)
    candidate_texts = [text(row) for row in candidates]
    reference_texts = [[text(row) for row in clip] for clip in references]
    per_candidate_references = [
        reference_texts[index // SAMPLES_PER_VIDEO] for index in range(len(candidates))
    ]
    host_scorer = metrics.CiderD(frequency, num_documents)
    variants = {
        "keras_pvc.metrics.CiderD (host)": lambda: host_scorer.score(
            per_candidate_references, candidate_texts
        )[1]
    }
    try:
        from pycocoevalcap.cider.cider_scorer import CiderScorer
    except ImportError:
        return variants
    coco_frequency = {ngram: float(count) for ngram, count in frequency.items()}

    def coco_cider():
        scorer = CiderScorer(n=4, sigma=6.0)
        for candidate, clip_references in zip(candidate_texts, per_candidate_references):
            scorer += (candidate, clip_references)
        scorer.document_frequency.update(coco_frequency)
        scorer.crefs = ListWithLength(scorer.crefs, num_documents)
        return np.array(scorer.compute_cider())

    variants["pycocoevalcap CiderScorer"] = coco_cider
    return variants


def print_table(results, max_difference, frequency_seconds, build_seconds):
    baseline = results.get("pycocoevalcap CiderScorer", (None, None))[1]
    print()
    print(f"CIDEr-D reward on {keras.backend.backend()}: {BATCH_SIZE} videos x "
          f"{SAMPLES_PER_VIDEO} samples, {REFERENCES_PER_VIDEO} refs each, "
          f"vocab {VOCABULARY_SIZE}, <= {MAX_WORDS} words")
    print(f"{'method':<36} {'ms/batch':>10} {'first call s':>13} {'vs coco':>8}")
    print(f"{'-' * 36} {'-' * 10} {'-' * 13} {'-' * 8}")
    for name, (first, seconds) in results.items():
        ratio = f"{baseline / seconds:.1f}x" if baseline else "n/a"
        print(f"{name:<36} {1000 * seconds:>10.2f} {first:>13.2f} {ratio:>8}")
    print(f"document frequencies from {TRAIN_CLIPS}x{REFERENCES_PER_VIDEO} refs: "
          f"{frequency_seconds:.2f} s, trie and tables {build_seconds:.2f} s (once); "
          f"max |keras.ops - coco| = {max_difference}")
    print("load average (1/5/15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


def main():
    backend = keras.backend.backend()
    rng = np.random.default_rng(SEED)
    length = MAX_WORDS + 2
    print("building training references and document frequencies ...")
    train = np.stack([
        np.stack([padded(zipf_caption(rng), length) for _ in range(REFERENCES_PER_VIDEO)])
        for _ in range(TRAIN_CLIPS)
    ])
    start = time.perf_counter()
    codes, counts, num_documents = rewards.cider_d_document_frequency(train, VOCABULARY_SIZE)
    frequency_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reward_fn = rewards.CiderDReward(codes, counts, num_documents, VOCABULARY_SIZE)
    build_seconds = time.perf_counter() - start
    references = np.stack([
        np.stack([padded(zipf_caption(rng), length) for _ in range(REFERENCES_PER_VIDEO)])
        for _ in range(BATCH_SIZE)
    ])
    candidates = np.stack([
        sampled_caption(rng, references[index // SAMPLES_PER_VIDEO], length)
        for index in range(BATCH_SIZE * SAMPLES_PER_VIDEO)
    ])

    results, outputs = {}, {}
    variants = [(backend_variants(reward_fn, candidates, references), REPEATS),
                (host_variants(train, candidates, references), 5)]
    for functions, repeats in variants:
        for name, function in functions.items():
            first, seconds, outputs[name] = timed(function, repeats)
            results[name] = (first, seconds)
    reference_name = "pycocoevalcap CiderScorer"
    if reference_name not in outputs:
        reference_name = "keras_pvc.metrics.CiderD (host)"
    max_difference = max(
        float(np.max(np.abs(value - outputs[reference_name])))
        for name, value in outputs.items() if name.startswith("keras.ops")
    )
    mean_reward = float(np.mean(outputs[reference_name]))
    print_table(results, max_difference, frequency_seconds, build_seconds)
    print(f"mean reward ({reference_name}) {mean_reward:.4f}")

    os.makedirs(RESULTS, exist_ok=True)
    output = os.path.join(RESULTS, f"rewards_{backend}.json")
    baseline = results.get("pycocoevalcap CiderScorer", (None, None))[1]
    record = {
        "backend": backend,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "shape": {
            "batch_size": BATCH_SIZE, "samples_per_video": SAMPLES_PER_VIDEO,
            "references_per_video": REFERENCES_PER_VIDEO, "vocabulary_size": VOCABULARY_SIZE,
            "max_words": MAX_WORDS, "train_clips": TRAIN_CLIPS,
            "training_ngrams": int(codes.size),
        },
        "milliseconds_per_batch": {name: 1000 * s for name, (_, s) in results.items()},
        "first_call_seconds": {name: first for name, (first, _) in results.items()},
        "speed_up_vs_pycocoevalcap": (
            {name: baseline / s for name, (_, s) in results.items()} if baseline else None
        ),
        "document_frequency_seconds": frequency_seconds,
        "reward_build_seconds": build_seconds,
        "max_abs_difference_vs_" + reference_name.split()[0]: max_difference,
        "mean_reward": mean_reward,
        "machine": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min": list(os.getloadavg()),
        "keras": keras.__version__,
        "backend_version": backend_version(backend),
    }
    with open(output, "w") as file:
        json.dump(record, file, indent=2)
    print(f"wrote {output}")


def backend_version(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return __import__(module).__version__


if __name__ == "__main__":
    main()
