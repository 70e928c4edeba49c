"""The package itself: importing it has no side effects."""

import ast
import importlib
import json
import os
import subprocess
import sys

import pytest

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


# The tiers of docs/architecture.md: a module imports only its own tier and
# lower ones. `keras_pvc/__init__.py` has no tier: it imports nothing and
# resolves its names lazily, so `keras_pvc.NAME` counts as NAME's module.
TIERS = {
    "layers": 1, "backbones": 1, "metrics": 1, "rewards": 1, "video": 1, "errors": 1,
    "models": 2, "presets": 2,
    "datasets": 3,
    "training": 4,
    "apps": 5, "__main__": 5,
}
PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_pvc")


def facade_names():
    """`keras_pvc.NAME -> defining module` for the facade's lazy names."""
    with open(os.path.join(PACKAGE, "__init__.py"), encoding="utf-8") as handle:
        for node in ast.parse(handle.read()).body:
            if isinstance(node, ast.Assign) and node.targets[0].id == "_PUBLIC":
                return {f"keras_pvc.{k}": v for k, v in ast.literal_eval(node.value).items()}
    raise AssertionError("keras_pvc/__init__.py has no _PUBLIC table")


def tier_of(module):
    """The tier of a dotted `keras_pvc...` name: None outside the package and
    for the facade itself (`import keras_pvc` runs no tier's code)."""
    module = facade_names().get(module, module)
    parts = module.split(".")
    if parts[0] != "keras_pvc" or len(parts) == 1 or parts[1] not in TIERS:
        return None
    return TIERS[parts[1]]


def imported_modules(source, module, is_package=False):
    """Every module `source` imports (at the top or inside a function),
    relative imports resolved against `module`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append(target)
            if target == "keras_pvc" or node.module is None:
                # `from keras_pvc import training`: the submodule (or a facade name).
                found.extend(f"{target}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "keras_pvc"
        ):
            found.append(f"keras_pvc.{node.attr}")  # `keras_pvc.from_preset(...)`
    return found


def upward_imports(source, module, is_package=False):
    """`module -> imported` for each import of a higher tier than `module`'s."""
    own = tier_of(module)
    bad = []
    for target in imported_modules(source, module, is_package):
        tier = tier_of(target)
        if tier is not None and tier > own:
            bad.append(f"{module} (tier {own}) -> {target} (tier {tier})")
    return sorted(set(bad))


def package_modules():
    """`(dotted name, path, is_package)` for each module under keras_pvc/."""
    root = os.path.dirname(PACKAGE)
    for folder, _, names in os.walk(PACKAGE):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[: -len(".py")].replace(os.sep, ".")
                is_package = name == "__init__.py"
                if is_package:
                    dotted = dotted[: -len(".__init__")]
                yield dotted, path, is_package


def test_the_tier_check_finds_a_hand_made_upward_import():
    source = (
        "import numpy\nfrom keras_pvc.layers import FrameCNN\n"
        "def f():\n    from keras_pvc.training.runs import train_run\n"
        "from keras_pvc import apps\nfrom ..training import callbacks\n"
        "import keras_pvc\nkeras_pvc.from_preset('p')\n"
    )
    upward = [
        "keras_pvc.apps (tier 5)",
        "keras_pvc.training (tier 4)",
        "keras_pvc.training.runs (tier 4)",
    ]
    assert upward_imports(source, "keras_pvc.datasets.msvd") == [
        f"keras_pvc.datasets.msvd (tier 3) -> {target}" for target in upward
    ]
    # The facade's names count as their modules: `from_preset` is tier 2.
    assert upward_imports(source, "keras_pvc.layers.frame_cnn") == [
        f"keras_pvc.layers.frame_cnn (tier 1) -> {target}"
        for target in upward[:1] + ["keras_pvc.from_preset (tier 2)"] + upward[1:]
    ]
    assert upward_imports(source, "keras_pvc.apps.cli") == []


def test_no_module_imports_a_higher_tier():
    bad = []
    seen = set()
    for module, path, is_package in package_modules():
        seen.add(module.split(".")[1] if "." in module else module)
        with open(path, encoding="utf-8") as handle:
            bad.extend(upward_imports(handle.read(), module, is_package))
    assert seen - {"keras_pvc"} == set(TIERS), "a top-level module without a tier"
    assert bad == []
