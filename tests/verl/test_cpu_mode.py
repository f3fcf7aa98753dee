"""The CPU mode is selected only by VERL_PLATFORM=cpu, and then installs its platform and engines.

Each check runs in a fresh interpreter (verl resolves its platform once per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from verl_required import verl  # noqa: F401

PROBE = """
import json, sys
import verl
from verl.plugin.platform.platform_manager import PlatformRegistry
from verl.utils.device import get_device_name, get_torch_device
from verl.workers.engine import EngineRegistry
out = {"loaded": "adapters.verl.cpu_mode" in sys.modules, "registered": PlatformRegistry.get("cpu") is not None}
if out["loaded"]:
    from adapters.verl import cpu_mode
    device = get_torch_device()
    out.update(device=get_device_name(), backend=cpu_mode.CPUPlatform().communication_backend_name(),
               auto=cpu_mode.CPUPlatform().is_platform_available(use_smi_check=True),
               engine=EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
               memory=device.memory_allocated(), name=device.get_device_name())
print(json.dumps(out))
"""


def probe(**env: str) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("VERL_PLATFORM", "RANK", "WG_BACKEND")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_verl_platform_cpu_the_mode_is_not_loaded():
    assert probe() == {"loaded": False, "registered": False}


def test_verl_platform_cpu_selects_the_platform_and_registers_the_engines():
    got = probe(VERL_PLATFORM="cpu")
    assert got == {"loaded": True, "registered": True, "device": "cpu", "backend": "gloo", "auto": False,
                   "engine": "FSDPEngineWithLMHead", "memory": 0, "name": "CPU"}


def test_outside_a_ray_worker_no_process_group_is_opened():
    from adapters.verl import cpu_mode  # importing the module registers a platform name, nothing else

    if os.environ.get("WG_BACKEND") == "ray":
        pytest.skip("running inside a verl Ray worker")
    assert cpu_mode.ensure_process_group() is False
