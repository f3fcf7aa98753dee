"""Entry-point target of the ``verl.plugins`` group: importing this module registers our names.

verl 0.9.1 imports every ``verl.plugins`` entry point at the end of ``import verl`` (in the driver,
the Ray task runner and every worker), so the registration below happens in every process without
forking or patching verl. verl swallows plugin import errors at *debug* level, hence
:func:`check_registered`, which the launcher and the trainers call before doing any work.

Declared in ``pyproject.toml``::

    [project.entry-points."verl.plugins"]
    sgcd_bench = "adapters.verl.plugin"

What gets registered (names are stable, tests pin them):

- policy loss ``"sdpo"`` (:func:`adapters.verl.losses.sdpo_policy_loss`) in
  ``verl.trainer.ppo.core_algos.POLICY_LOSS_REGISTRY``;
- rollout backend ``"transformers"`` (:mod:`adapters.verl.transformers_rollout`, loaded lazily);
- with ``VERL_PLATFORM=cpu`` only: the CPU platform and engines of :mod:`adapters.verl.cpu_mode`.

The SGCD weights need no registration: they are written into the batch on the driver (see
:mod:`adapters.verl.credit`) and verl's stock ``vanilla`` loss runs unchanged. The τ³-airline agent
loop is registered lazily through ``configs/agent_loops.yaml`` (hydra ``_target_``), so importing
this plugin does not pull in verl's agent-loop stack.
"""

from __future__ import annotations

import importlib.metadata as md
import os

ENTRY_POINT_GROUP = "verl.plugins"
ENTRY_POINT_NAME = "sgcd_bench"
ENTRY_POINT_VALUE = "adapters.verl.plugin"
SDPO_LOSS_NAME = "sdpo"
POLICY_LOSSES: tuple[str, ...] = (SDPO_LOSS_NAME,)


class PluginNotRegisteredError(RuntimeError):
    """The sgcd-bench names are missing from verl's registries (entry point absent or broken)."""


def register() -> None:
    """Register our names in verl's registries (idempotent; safe to call again)."""
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, register_policy_loss

    from adapters.verl import transformers_rollout
    from adapters.verl.losses import sdpo_policy_loss

    if POLICY_LOSS_REGISTRY.get(SDPO_LOSS_NAME) is not sdpo_policy_loss:
        register_policy_loss(SDPO_LOSS_NAME)(sdpo_policy_loss)
    transformers_rollout.register()
    if os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu":
        from adapters.verl import cpu_mode

        cpu_mode.install()


def entry_point_declared() -> bool:
    """True if the installed sgcd-bench metadata declares our ``verl.plugins`` entry point."""
    return any(
        ep.name == ENTRY_POINT_NAME and ep.value == ENTRY_POINT_VALUE
        for ep in md.entry_points(group=ENTRY_POINT_GROUP)
    )


def check_registered(*, require_entry_point: bool = True) -> None:
    """Fail loudly unless ``import verl`` registered the sgcd-bench names.

    Checks, in order: the entry point is declared in the installed metadata (so Ray workers,
    which import verl but never this module, register too); the policy losses are in verl's
    registry. On failure the message names what is missing and how to fix it, and re-imports
    the module to surface the exception verl hid.
    """
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY

    problems: list[str] = []
    if require_entry_point and not entry_point_declared():
        problems.append(
            f"entry point {ENTRY_POINT_NAME} = {ENTRY_POINT_VALUE!r} is not declared in group "
            f"{ENTRY_POINT_GROUP!r} of the installed sgcd-bench (reinstall: pip install -e '.[verl]')"
        )
    policy = os.getenv("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    if policy == "none" or (policy != "auto" and ENTRY_POINT_NAME not in {p.strip() for p in policy.split(",")}):
        problems.append(f"VERL_USE_EXTERNAL_PLUGINS={policy!r} disables the {ENTRY_POINT_NAME!r} plugin")
    missing = [name for name in POLICY_LOSSES if name not in POLICY_LOSS_REGISTRY]
    if missing:
        try:
            register()
            hint = "importing adapters.verl.plugin by hand worked, so verl never loaded the entry point"
        except Exception as exc:  # surface what verl logged only at debug level
            hint = f"importing the plugin raises {type(exc).__name__}: {exc}"
        problems.append(f"policy losses {missing} are not in verl's POLICY_LOSS_REGISTRY ({hint})")
    if problems:
        raise PluginNotRegisteredError("sgcd-bench verl plugin not registered: " + "; ".join(problems))


register()
