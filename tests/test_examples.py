import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_swap_components_example_trains_and_captions_each_variant(tmp_path):
    # The README's swapping example: the preset with (a) another graph layer,
    # (b) a GRU temporal encoder, (c) no graph, each trained a few steps.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "swap_components.py")],
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
    assert "encoder=GRUTemporalEncoder" in lines["GRU encoder"]
    assert "graph=None" in lines["no graph"]
    for line in lines.values():
        loss = float(re.search(r"loss ([0-9.]+)", line).group(1))
        assert 0 < loss < 10
        assert re.search(r"captions \['[^']*', '[^']*'\]", line)
