import importlib.util
import os
import re
import subprocess
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWAP_EXAMPLE = os.path.join(ROOT, "examples", "swap_components.py")


def _import_swap_example():
    spec = importlib.util.spec_from_file_location("swap_components", SWAP_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_swap_components_example_trains_and_captions_each_variant(tmp_path):
    # The README's swapping example: the preset with (a) spektral's GCNConv,
    # (b) a GRU temporal encoder, (c) no graph, each trained a few steps.
    # spektral is in `[test]`: without it the example stops, and this fails.
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        # spektral's layers are TensorFlow-only; this checkout's code first.
        "KERAS_BACKEND": "tensorflow",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, SWAP_EXAMPLE],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {
        match.group(1): match.group(0)
        for match in re.finditer(
            r"^\s*(another graph|GRU encoder|no graph): .*$", result.stdout, re.M
        )
    }
    assert set(lines) == {"another graph", "GRU encoder", "no graph"}, result.stdout
    # (a) is spektral's GCNConv, and it ran: training moved its kernel.
    spektral_line = re.search(
        r"graph=SpektralGridGCN \(spektral\.layers\.[\w.]*GCNConv, kernel moved ([0-9.e+-]+)\)",
        lines["another graph"],
    )
    assert spektral_line, lines["another graph"]
    assert float(spektral_line.group(1)) > 0
    assert "encoder=GRUTemporalEncoder" in lines["GRU encoder"]
    assert "graph=None" in lines["no graph"]
    for line in lines.values():
        loss = float(re.search(r"loss ([0-9.]+)", line).group(1))
        assert 0 < loss < 10
        assert re.search(r"captions \['[^']*', '[^']*'\]", line)


@pytest.mark.parametrize("missing", ["spektral", "tensorflow backend"])
def test_swap_components_example_fails_loudly_without_spektral(monkeypatch, missing):
    # No silent stand-in for spektral's GCNConv: the example stops, saying
    # why and what to run instead, before it generates any data.
    example = _import_swap_example()
    if missing == "spektral":
        # On the backend spektral needs, whichever this run uses.
        monkeypatch.setattr(keras.config, "backend", lambda: "tensorflow")
        for name in ("spektral", "spektral.layers", "spektral.utils"):
            monkeypatch.setitem(sys.modules, name, None)  # import raises
    else:
        monkeypatch.setattr(keras.config, "backend", lambda: "jax")

    def no_work(*args, **kwargs):
        raise AssertionError("the example went on without spektral")

    monkeypatch.setattr(example, "generate_procedural_dataset", no_work)
    with pytest.raises(SystemExit) as stopped:
        example.main([])
    message = str(stopped.value.code)
    assert "spektral" in message and "--another-graph learned" in message
    assert ("not importable" if missing == "spektral" else "TensorFlow-only") in message
