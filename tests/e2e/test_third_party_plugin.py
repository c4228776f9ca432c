"""A third-party package adds a model through the `framework.plugins` entry point group."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Runner

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""A model plugin that lives outside the framework."""
from typing import Literal

from pydantic import Field, PositiveInt

from framework.config.model import ModelConfig
from framework.registry import models
from framework.training.model import ModelPlugin


class ShallowTreeConfig(ModelConfig):
    type: Literal["shallow_tree"] = "shallow_tree"
    max_depth: PositiveInt = Field(3, description="Depth of the tree.")


@models.register("shallow_tree", config=ShallowTreeConfig)
class ShallowTree(ModelPlugin):
    task = "classification"
    scale_invariant = True

    def estimator(self, seed):
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_depth=self.config.max_depth, random_state=seed)
'''


def _install_plugin_package(root: Path) -> None:
    """Lay out an installed distribution (code + dist-info with an entry point) on a path."""
    (root / "shallow_tree_plugin").mkdir(parents=True)
    (root / "shallow_tree_plugin" / "__init__.py").write_text(PLUGIN)
    info = root / "shallow_tree_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: shallow-tree-plugin\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[framework.plugins]\nshallow_tree = shallow_tree_plugin\n"
    )


def test_entry_point_plugin_is_used_from_config(cli: Runner, tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install_plugin_package(site)
    conf = tmp_path / "my_conf" / "model"
    conf.mkdir(parents=True)
    (conf / "shallow_tree.yaml").write_text(
        textwrap.dedent("""\
        type: shallow_tree
        max_depth: 4
    """)
    )
    env = {"PYTHONPATH": str(site)}
    run = cli(
        "--config-dir",
        str(tmp_path / "my_conf"),
        "model=shallow_tree",
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "train shallow_tree on breast_cancer" in run.stdout
    assert "Registered breast_cancer version 1" in run.stdout
    manifest = json.loads(
        (tmp_path / "model_registry/breast_cancer/versions/1/manifest.json").read_text()
    )
    assert manifest["config"]["model"] == {"type": "shallow_tree", "max_depth": 4}

    # Its config is validated like any built-in one.
    bad = cli(
        "--config-dir",
        str(tmp_path / "my_conf"),
        "model=shallow_tree",
        "model.max_depth=0",
        env=env,
    )
    assert bad.returncode == 2
    assert "model.max_depth: got 0; expected an integer > 0" in bad.stderr

    # Without the package on the path, the name is unknown and the options are listed.
    gone = cli("--config-dir", str(tmp_path / "my_conf"), "model=shallow_tree")
    assert gone.returncode == 2
    assert "model.type: unknown plugin 'shallow_tree'" in gone.stderr
