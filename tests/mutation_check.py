"""Mutation check: break the core on purpose and see which test notices.

Copies the repository to a temporary folder and, one at a time, applies each
mutation below as a textual patch to the copy (a flipped sign in the
policy-gradient loss, the `<eos>` mask dropped, two FastLSTM gates swapped,
the CIDEr-D n-gram window off by one, ...). For each it runs the mutation's
tests in the copy (`pytest -x`, `PYTHONPATH` set to the copy) and reports the
first failing test, or SURVIVED when every selected test passed. A pattern
that is no longer in its file (the code changed) is reported as PATTERN NOT
FOUND, never as a pass: update that entry's `old` text. Before the
mutations, each distinct test selection runs once on the unmutated copy; a
selection that already fails there is reported as BASELINE FAILS.

Prints a table and writes JSON (`benchmarks/results/mutation_check.json` by
default). Not a test module: pytest does not collect it.

Run: `python tests/mutation_check.py [--only NAME ...] [--tests PYTEST_ARG ...]
[--no-baseline] [--dry-run] [--out PATH]` (`--dry-run` only checks that the
patterns are still found, e.g. after a merge). The backend is `KERAS_BACKEND`'s (default
TensorFlow).
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT = os.path.join(ROOT, "benchmarks", "results", "mutation_check.json")
# pytest arguments that select the slow tests too.
WITH_SLOW = ("-m", "slow or not slow")


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One deliberate bug: in `path`, each `old` text becomes its `new` text.

    Every `old` must occur exactly once in the file as it is at that point
    (replacements apply in order). `tests` are the pytest arguments (files,
    node ids, `-m`/`-k`) that should catch it, most likely killers first.
    """

    name: str
    path: str
    replacements: tuple
    tests: tuple


SELF_CRITICAL_TESTS = ("tests/test_self_critical.py",)
FAST_LSTM_TESTS = ("tests/test_fast_lstm.py", "tests/test_layers.py")
REWARD_TESTS = ("tests/test_rewards.py",)
METRIC_TESTS = ("tests/test_metrics.py",)

# The core (issue 22). The files are being rewritten by others: when a
# pattern is reported as not found, copy the new line into `old`/`new`.
CORE_MUTATIONS = (
    Mutation(
        "policy-gradient loss sign flipped",
        "keras_pvc/models/self_critical.py",
        (
            (
                "return -ops.sum(advantages * chosen * mask)",
                "return ops.sum(advantages * chosen * mask)",
            ),
        ),
        SELF_CRITICAL_TESTS,
    ),
    Mutation(
        "<eos> mask dropped (mask_after_eos all ones)",
        "keras_pvc/models/self_critical.py",
        (
            (
                'return ops.cast(ops.equal(eos_before, 0), "float32")',
                'return ops.cast(ops.greater_equal(eos_before, 0), "float32")',
            ),
        ),
        SELF_CRITICAL_TESTS,
    ),
    Mutation(
        "FastLSTM input/forget gates swapped (inference recurrence)",
        "keras_pvc/layers/fast_lstm.py",
        # (The slices `input_gate = gates[:, :units]` also open the backward
        # pass, so the swap is made where the recurrence uses them.)
        (
            (
                "new_cell = forget_gate * cell + input_gate * candidate",
                "new_cell = input_gate * cell + forget_gate * candidate",
            ),
        ),
        FAST_LSTM_TESTS,
    ),
    Mutation(
        "FastLSTM input/forget gates swapped (BPTT forward)",
        "keras_pvc/layers/fast_lstm.py",
        (
            ("gates[:, units : 2 * units] * previous_cell", "gates[:, :units] * previous_cell"),
            ("+ gates[:, :units] * candidate", "+ gates[:, units : 2 * units] * candidate"),
        ),
        FAST_LSTM_TESTS,
    ),
    Mutation(
        "CIDEr-D reward n-gram window off by one (last n-gram dropped)",
        "keras_pvc/rewards/cider_d_reward.py",
        (
            (
                "masks.append(starts[None, :] + order <= lengths[:, None])",
                "masks.append(starts[None, :] + order < lengths[:, None])",
            ),
        ),
        REWARD_TESTS,
    ),
    Mutation(
        "CIDEr-D metric n-gram window off by one (candidate up to 3-grams)",
        "keras_pvc/metrics/cider.py",
        (
            (
                "ngram_counts(prediction.split(), self.max_order)",
                "ngram_counts(prediction.split(), self.max_order - 1)",
            ),
        ),
        METRIC_TESTS,
    ),
)

# The behaviours the rewritten tests of issue 22 are named for.
TEST_MUTATIONS = (
    Mutation(
        "beam rescoring ignores length",
        "keras_pvc/models/video_captioner.py",
        (("/ lengths**length_penalty", "/ lengths**0.0"),),
        ("tests/test_models.py::test_beam_rescoring_by_length",),
    ),
    Mutation(
        "graph uses the first frame's adjacency for every frame",
        "keras_pvc/layers/spatial_graph_conv.py",
        (
            (
                "grid = ops.cast(self.preprocess(adjacency), nodes.dtype)",
                "grid = ops.cast(self.preprocess(adjacency if len(adjacency.shape) == 2 "
                "else adjacency[:1, :1]), nodes.dtype)",
            ),
        ),
        ("tests/test_layers.py::test_spatial_graph_conv_mixed_and_batch_adjacency",),
    ),
    Mutation(
        "nltk METEOR with alpha 0.85",
        "keras_pvc/metrics/meteor.py",
        (
            (
                "for reference in refs], prediction.split())",
                "for reference in refs], prediction.split(), alpha=0.85)",
            ),
        ),
        ("tests/test_metrics.py::test_meteor_nltk_fallback",),
    ),
    Mutation(
        "METEOR jar corpus score = mean of the clips",
        "keras_pvc/metrics/meteor.py",
        (
            (
                "return float(score), np.array(per_clip, dtype=np.float64)",
                "return float(np.mean(per_clip)), np.array(per_clip, dtype=np.float64)",
            ),
        ),
        WITH_SLOW + ("tests/test_metrics.py::test_meteor_jar_matches_pycocoevalcap",),
    ),
    Mutation(
        "swap example goes on without spektral",
        "examples/swap_components.py",
        (("        if problem:\n", "        if False:\n"),),
        ("tests/test_examples.py::test_swap_components_example_fails_loudly_without_spektral",),
    ),
)

MUTATIONS = CORE_MUTATIONS + TEST_MUTATIONS


def copy_repository(destination):
    """The working tree (no .git, caches or run folders) under `destination`."""
    ignore = shutil.ignore_patterns(
        ".git", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "runs", "results", ".venv"
    )
    shutil.copytree(ROOT, destination, ignore=ignore)


def mutate(text, mutation):
    """`(mutated_text, None)`, or `(None, problem)` when a pattern is not unique."""
    for old, new in mutation.replacements:
        count = text.count(old)
        if count == 0:
            return None, f"PATTERN NOT FOUND: {old!r}"
        if count > 1:
            return None, f"PATTERN AMBIGUOUS ({count} matches): {old!r}"
        text = text.replace(old, new)
    return text, None


def _test_id(testcase):
    """A junit testcase as a pytest node id: `tests.test_x` + `name` ->
    `tests/test_x.py::name` (classes follow the module)."""
    classname, name = testcase.get("classname", ""), testcase.get("name", "")
    if not classname:  # a collection error: `name` is the module
        return name.replace(".", "/") + ".py"
    parts = classname.split(".")
    for index, part in enumerate(parts):
        if part.startswith("test_"):
            module = "/".join(parts[: index + 1]) + ".py"
            return "::".join([module] + parts[index + 1 :] + [name])
    return f"{classname}::{name}"


def first_failure(junit_path):
    """`(test id, one-line reason)` of the first failed or errored test, or None."""
    if not os.path.exists(junit_path):
        return None
    for testcase in ElementTree.parse(junit_path).getroot().iter("testcase"):
        for child in testcase:
            if child.tag in ("failure", "error"):
                reason = (child.get("message") or child.text or "").strip().splitlines()
                return _test_id(testcase), (reason[0][:160] if reason else child.tag)
    return None


def run_tests(copy_root, pytest_args, junit_path, timeout):
    """Runs pytest in the copy; returns a result dict."""
    env = {**os.environ, "PYTHONPATH": copy_root}
    env.setdefault("KERAS_BACKEND", "tensorflow")
    command = [
        sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
        f"--junitxml={junit_path}", *pytest_args,
    ]
    if os.path.exists(junit_path):
        os.remove(junit_path)
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            command, cwd=copy_root, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "TIMEOUT", "seconds": round(time.perf_counter() - start, 1)}
    seconds = round(time.perf_counter() - start, 1)
    failure = first_failure(junit_path)
    if completed.returncode == 0:
        status = "PASSED"
    elif completed.returncode == 1 and failure:
        status = "FAILED"
    elif completed.returncode == 5:
        status = "NO TESTS RAN"
    else:
        status = f"ERROR (pytest exit {completed.returncode})"
    result = {"status": status, "seconds": seconds}
    if failure:
        result["first_failure"], result["reason"] = failure
    if status.startswith(("ERROR", "NO TESTS")):
        result["output_tail"] = (completed.stdout + completed.stderr)[-1500:]
    return result


def check_copy_imports_itself(copy_root):
    env = {**os.environ, "PYTHONPATH": copy_root}
    origin = subprocess.run(
        [sys.executable, "-c",
         "import importlib.util; print(importlib.util.find_spec('keras_pvc').origin)"],
        cwd=copy_root, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    if not os.path.realpath(origin).startswith(os.path.realpath(copy_root)):
        raise SystemExit(
            f"mutation_check.py: with PYTHONPATH={copy_root}, keras_pvc still imports "
            f"from {origin}; the mutations would not be tested."
        )


def print_table(rows):
    width = max(len(row["mutation"]) for row in rows)
    print(f"{'mutation':<{width}}  {'result':<18}  first failing test (seconds)")
    print("-" * (width + 70))
    for row in rows:
        detail = row.get("first_failure", row.get("problem", ""))
        seconds = f" ({row['seconds']} s)" if "seconds" in row else ""
        print(f"{row['mutation']:<{width}}  {row['result']:<18}  {detail}{seconds}")
        if row.get("reason"):
            print(f"{'':<{width}}  {'':<18}    {row['reason']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="Run the mutations whose name contains one of these words.")
    parser.add_argument("--tests", nargs="+", metavar="PYTEST_ARG",
                        help="Use these pytest arguments for every mutation instead of its own.")
    parser.add_argument("--no-baseline", action="store_true",
                        help="Skip the unmutated runs of each test selection.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Only check that every pattern is found; run no tests.")
    parser.add_argument("--timeout", type=float, default=1200, help="Seconds per pytest run.")
    parser.add_argument("--out", default=DEFAULT_OUTPUT, help="Where to write the JSON.")
    args = parser.parse_args(argv)

    mutations = [
        m for m in MUTATIONS
        if not args.only or any(word.lower() in m.name.lower() for word in args.only)
    ]
    if not mutations:
        raise SystemExit(f"No mutation matches {args.only}: {[m.name for m in MUTATIONS]}")
    if args.dry_run:
        problems = 0
        for mutation in mutations:
            with open(os.path.join(ROOT, mutation.path), encoding="utf-8") as file:
                _, problem = mutate(file.read(), mutation)
            problems += bool(problem)
            print(f"{mutation.name}: {problem or 'patterns found'}")
        return 1 if problems else 0
    selection_of = {m.name: tuple(args.tests) if args.tests else m.tests for m in mutations}

    with tempfile.TemporaryDirectory(prefix="keras_pvc_mutation_") as folder:
        copy_root = os.path.join(folder, "repo")
        copy_repository(copy_root)
        check_copy_imports_itself(copy_root)
        junit_path = os.path.join(folder, "junit.xml")

        baseline = {}
        if not args.no_baseline:
            for selection in dict.fromkeys(selection_of.values()):
                print(f"baseline: pytest -x {' '.join(selection)}", flush=True)
                baseline[selection] = run_tests(copy_root, selection, junit_path, args.timeout)
                print(f"  {baseline[selection]['status']} ({baseline[selection]['seconds']} s)",
                      flush=True)

        rows = []
        for mutation in mutations:
            selection = selection_of[mutation.name]
            row = {"mutation": mutation.name, "file": mutation.path, "tests": list(selection)}
            rows.append(row)
            base = baseline.get(selection)
            if base is not None and base["status"] != "PASSED":
                problem = base.get("first_failure", base["status"])
                row.update(result="BASELINE FAILS", problem=problem)
                continue
            path = os.path.join(copy_root, mutation.path)
            if not os.path.exists(path):
                row.update(result="FILE NOT FOUND", problem=mutation.path)
                continue
            with open(path, encoding="utf-8") as file:
                original = file.read()
            mutated, problem = mutate(original, mutation)
            if problem:
                row.update(result=problem.split(":")[0], problem=problem)
                continue
            print(f"mutation: {mutation.name}", flush=True)
            try:
                with open(path, "w", encoding="utf-8") as file:
                    file.write(mutated)
                outcome = run_tests(copy_root, selection, junit_path, args.timeout)
            finally:
                with open(path, "w", encoding="utf-8") as file:
                    file.write(original)
            status = outcome.pop("status")
            result = {"FAILED": "KILLED", "PASSED": "SURVIVED"}.get(status, status)
            row.update(result=result, **outcome)
            print(f"  {result} {outcome.get('first_failure', '')} ({outcome['seconds']} s)",
                  flush=True)

    print()
    print_table(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    report = {
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "baseline": {" ".join(k): v for k, v in baseline.items()},
        "mutations": rows,
    }
    with open(args.out, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
    print(f"\nwrote {args.out}")
    survived = [row["mutation"] for row in rows if row["result"] != "KILLED"]
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
