"""The package itself: importing it has no side effects."""

import json
import os
import subprocess
import sys

CHECK = """
import json, os, sys
before = dict(os.environ)
import keras_pvc
import keras_pvc.apps.cli
after = dict(os.environ)
print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after)
                  if before.get(k) != after.get(k)}))
"""


def test_import_sets_no_environment_variable():
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, env=environment,
        check=True,
    )
    changed = json.loads(result.stdout.strip().splitlines()[-1])
    assert changed == {}


def test_cli_chooses_onednn_unless_set(monkeypatch):
    from keras_pvc.apps import cli

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cli._speed_defaults()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    cli._speed_defaults()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_python_dash_m_keras_pvc_is_the_cli():
    """`python -m keras_pvc` runs the same parser as the `keras-pvc` script,
    whose entry point in pyproject.toml names `apps.cli.main`."""
    import importlib

    import pytest

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
        entry = tomllib.load(handle)["project"]["scripts"]["keras-pvc"]
    module, function = entry.split(":")
    from keras_pvc.apps import cli

    assert getattr(importlib.import_module(module), function) is cli.main
    environment = dict(os.environ, PYTHONPATH=root)
    result = subprocess.run(
        [sys.executable, "-m", "keras_pvc", "demo", "--help"],
        capture_output=True, text=True, env=environment, cwd=root,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: keras-pvc demo")
    assert "--quick" in result.stdout
