"""The plugin registers through verl's ``verl.plugins`` entry point, and a missing one fails loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from verl_required import verl  # noqa: F401  (skip / fail guard)

from adapters.verl import plugin
from verl.trainer.ppo import core_algos

_PROBE = """
import json, sys
import verl
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
fn = POLICY_LOSS_REGISTRY.get("sdpo")
print(json.dumps({"registered": fn is not None, "module": getattr(fn, "__module__", None),
                  "plugin_imported": "adapters.verl.plugin" in sys.modules}))
"""


def _fresh_import_verl(**env: str) -> dict:
    """``import verl`` in a fresh interpreter (no adapters import) and report the registry."""
    full_env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=full_env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_entry_point_is_declared_in_installed_metadata() -> None:
    assert plugin.entry_point_declared(), (
        'pyproject.toml lacks [project.entry-points."verl.plugins"] sgcd_bench = "adapters.verl.plugin" '
        "(or the package was installed before it was added: rerun scripts/setup_verl.sh)"
    )


def test_import_verl_registers_sdpo_loss_through_entry_point() -> None:
    report = _fresh_import_verl(VERL_USE_EXTERNAL_PLUGINS="auto")
    assert report == {"registered": True, "module": "adapters.verl.losses", "plugin_imported": True}


def test_check_registered_passes_in_this_process() -> None:
    plugin.check_registered()
    assert core_algos.get_policy_loss_fn("sdpo") is core_algos.POLICY_LOSS_REGISTRY["sdpo"]


def test_check_registered_fails_loudly_when_the_loss_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(core_algos.POLICY_LOSS_REGISTRY, "sdpo")
    with pytest.raises(plugin.PluginNotRegisteredError, match="POLICY_LOSS_REGISTRY"):
        plugin.check_registered()


def test_check_registered_names_the_env_var_that_disabled_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    with pytest.raises(plugin.PluginNotRegisteredError, match="VERL_USE_EXTERNAL_PLUGINS='none'"):
        plugin.check_registered()


def test_register_is_idempotent() -> None:
    plugin.register()
    plugin.register()
    assert core_algos.POLICY_LOSS_REGISTRY["sdpo"].__module__ == "adapters.verl.losses"
