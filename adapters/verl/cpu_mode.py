"""verl 0.9.1's real trainer on a CPU: a platform, FSDP engines and a process group for ``VERL_PLATFORM=cpu``.

CI runs verl's own v1 sync trainer (Ray, TransferQueue, the FSDP2 engine workers, our agent loops)
end to end with this module; anyone can try the plugin the same way without a GPU (see
``adapters/verl/README.md``, "Try it on a CPU"). It is loaded only when ``VERL_PLATFORM=cpu`` is
set (:mod:`adapters.verl.plugin` imports it then, in every process, through verl's plugin entry
point): the platform is never auto-detected, so a GPU machine is never switched to it.

What it installs, each through a verl extension point (no verl file is patched):

1. :class:`CPUPlatform`, registered as ``"cpu"`` in ``PlatformRegistry``: device ``cpu``,
   collective backend ``gloo``, Ray resource ``"GPU"`` (so verl's placement groups, which always
   ask for "GPU", are satisfied by the logical GPUs the launch declares with
   ``+ray_kwargs.ray_init.num_gpus=N``), and a device module (:class:`CPUDevice`) with no-op
   stand-ins for the ``torch.cuda`` calls verl makes that ``torch.cpu`` lacks.
2. verl's own FSDP engines (``FSDPEngineWithLMHead``, ``FSDPEngineWithValueHead``) registered
   again in ``EngineRegistry`` for ``device="cpu"``.
3. The gloo process group. ``verl.utils.distributed.initialize_global_process_group_ray`` always
   asks torch for ``f"cpu:gloo,{device}:{backend}"``, which torch rejects for device ``cpu``
   (``Duplicate device type cpu``); it skips its own init when a group already exists. So
   :meth:`CPUPlatform.communication_backend_name`, which verl evaluates right before that check,
   opens the gloo group from the worker's ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` /
   ``MASTER_PORT`` (set by verl's ``RayWorkerGroup``) the first time it is asked inside a worker.

The rollout runs on :mod:`adapters.verl.transformers_rollout` (``rollout.name=transformers``).

verl internals this relies on (a verl upgrade that changes them must fail CI loudly, which the
end-to-end test in ``tests/verl/test_end_to_end.py`` does):

- ``verl.plugin.platform.PlatformRegistry`` / ``PlatformBase`` and ``VERL_PLATFORM`` selection;
- ``verl.workers.engine.EngineRegistry.register(model_type, backend, device)`` (and its
  ``_engines`` dict, read to stay idempotent) and the engine classes
  ``verl.workers.engine.fsdp.transformer_impl.FSDPEngineWithLMHead`` / ``...WithValueHead``;
- the ``get_torch_device()`` calls verl makes (the members of :class:`CPUDevice`);
- the backend string and the ``is_initialized()`` early exit of
  ``verl.utils.distributed.initialize_global_process_group_ray``, and the env vars
  ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``/``WG_BACKEND`` that
  ``verl.single_controller.ray.base.RayWorkerGroup`` gives each worker;
- for the rollout, those listed in :mod:`adapters.verl.transformers_rollout`.

The verl overrides and environment a CPU run needs besides ``VERL_PLATFORM=cpu`` are in
:mod:`adapters.verl.cpu_run` (``CPU_OVERRIDES``, each with its reason; ``launch_command``).
"""

from __future__ import annotations

import contextlib
import os
import types
from datetime import timedelta
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry

PLATFORM = "cpu"
class CPUDevice:
    """``get_torch_device()`` on the CPU platform: what ``torch.cpu`` has, plus stand-ins for the
    ``torch.cuda`` calls verl makes that ``torch.cpu`` lacks (memory reports are 0 and cache /
    IPC calls do nothing: a CPU has no device memory to report or free)."""

    Stream = torch.cpu.Stream
    stream = staticmethod(torch.cpu.stream)
    current_stream = staticmethod(torch.cpu.current_stream)
    Event = torch.Event

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> str:
        return PLATFORM

    @staticmethod
    def get_device_name(*_: Any) -> str:
        return "CPU"

    @staticmethod
    def get_device_properties(*_: Any) -> types.SimpleNamespace:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return types.SimpleNamespace(name="CPU", total_memory=total)

    @staticmethod
    def mem_get_info(*_: Any) -> tuple[int, int]:
        return 0, 0

    @staticmethod
    def get_rng_state(*_: Any) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, *_: Any) -> None:
        torch.set_rng_state(state)

    manual_seed = staticmethod(torch.manual_seed)
    manual_seed_all = staticmethod(torch.manual_seed)

    @staticmethod
    def _zero(*_: Any, **__: Any) -> int:
        return 0

    @staticmethod
    def _noop(*_: Any, **__: Any) -> None:
        return None

    memory_allocated = max_memory_allocated = memory_reserved = max_memory_reserved = _zero
    set_device = synchronize = empty_cache = ipc_collect = _noop
    reset_peak_memory_stats = reset_accumulated_memory_stats = set_per_process_memory_fraction = _noop

    def __repr__(self) -> str:
        return "<sgcd-bench CPUDevice: torch.cpu + no-op torch.cuda memory calls>"


CPU_DEVICE = CPUDevice()


def ensure_process_group() -> bool:
    """Open the gloo process group of a verl Ray worker if it is not open yet; True if it is open.

    Only inside a worker of verl's ``RayWorkerGroup`` (``WG_BACKEND=ray`` and ``RANK`` set); the
    rendezvous uses ``MASTER_ADDR`` / ``MASTER_PORT`` (``env://``) or ``DIST_INIT_METHOD``.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if os.environ.get("WG_BACKEND") != "ray" or "RANK" not in os.environ:
        return False
    dist.init_process_group(backend="gloo", rank=int(os.environ["RANK"]),
                            world_size=int(os.environ.get("WORLD_SIZE", 1)),
                            init_method=os.environ.get("DIST_INIT_METHOD") or None,
                            timeout=timedelta(seconds=int(os.environ.get("SGCD_CPU_PG_TIMEOUT_S", 1800))))
    return True


@PlatformRegistry.register(platform=PLATFORM)
class CPUPlatform(PlatformBase):
    """verl's platform interface on the CPU (selected only by ``VERL_PLATFORM=cpu``)."""

    @property
    def device_name(self) -> str:
        return PLATFORM

    @property
    def vendor_name(self) -> str:
        return PLATFORM

    @property
    def device_module(self) -> CPUDevice:  # type: ignore[override]
        return CPU_DEVICE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        return False  # never auto-detected: only VERL_PLATFORM=cpu selects it

    def current_device(self) -> str:  # type: ignore[override]
        return PLATFORM  # verl passes it to .to(...); "cpu" is the one valid value

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        ensure_process_group()  # see the module docstring, item 3
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"  # what Ray sets for its logical "GPU" resource

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> None:
        return None


def register_engines() -> None:
    """Register verl's FSDP engines for ``device="cpu"`` (idempotent)."""
    from verl.workers.engine import EngineRegistry
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, engine in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if PLATFORM not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device=PLATFORM)(engine)


def install() -> None:
    """Everything a CPU run needs in this process (the platform class registers on import)."""
    register_engines()
