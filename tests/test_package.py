"""The package itself: importing it has no side effects."""

import json
import os
import subprocess
import sys

CHECK = """
import json, os, sys
before = dict(os.environ)
import keras_pvc
import keras_pvc.cli
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
    from keras_pvc import cli

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cli._speed_defaults()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    cli._speed_defaults()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
