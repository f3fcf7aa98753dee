"""Checkpoints of ``sgcd-bench train`` and the checks ``--resume`` makes before it trains.

A run's checkpoints live in ``OUT/checkpoints/run_NNNN/step_NNNNNN/`` (one folder per stored run
id, so no run overwrites another's): ``trainer.pt`` (model, optimizer, the method's state, the
RNG states the next step starts from; :meth:`~adapters.local.trainer.LocalTrainer.save`) and
``checkpoint.json`` (:func:`checkpoint_meta`: the run id and store, the method, the model's
identity, the run's full config). ``--resume PATH`` continues that run to the requested
``--steps`` only if the method, the model and every setting that shapes training match; what
does not is said in one line (:func:`check_resume`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .preflight import InputError

if TYPE_CHECKING:
    import torch

META_FILE = "checkpoint.json"
KEEP_CHECKPOINTS = 1
"""Newest checkpoints kept per run (each holds the model and the optimizer state; saves are atomic,
so the newest is always whole)."""
RESUMABLE_SETTINGS = frozenset({"loop.steps", "torch_threads", "device", "decoder", "eval_split", "eval_tasks",
                                "eval_trials", "eval_temperature"})
"""Settings a resumed run may change: the total steps, and what does not shape the training
(threads, the device, the rollouts' decode path, the evaluation). Anything else must match the
checkpoint."""
SETTINGS_ADDED = {"probe_samples": 0}
"""Settings added after checkpoints were first written, each with the value every run had before
it existed: a checkpoint whose stored config lacks one ran with that value."""


class CheckpointError(InputError):
    """A ``--resume`` folder that cannot be resumed here; the message is one line."""


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint folder and what it records."""

    path: Path
    step: int
    meta: dict[str, Any]

    @property
    def run_id(self) -> int | None:
        return self.meta.get("run_id")


def run_checkpoints(out: Path, run_id: int) -> Path:
    """The checkpoint folder of stored run ``run_id``."""
    return Path(out) / "checkpoints" / f"run_{run_id:04d}"


def model_identity(name: str, model: "torch.nn.Module") -> dict[str, Any]:
    """What says two policies are the same model: its name (path or embedded id, warm start
    included), architecture and parameter count."""
    return {"name": name, "architecture": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters())}


def checkpoint_meta(*, run_id: int, store: Path, method: str, model: dict[str, Any], config: dict[str, Any],
                    commit: str | None) -> dict[str, Any]:
    """The ``checkpoint.json`` of a run (the trainer adds the step)."""
    return {"run_id": run_id, "store": str(Path(store).resolve()), "method": method, "model": model,
            "config": config, "commit": commit}


def find_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in ``path`` (a step folder, or a run folder: its newest step)."""
    path = Path(path)
    shown = f"--resume {path}"
    if not path.exists():
        raise CheckpointError(f"{shown}: no such folder")
    if not path.is_dir():
        raise CheckpointError(f"{shown}: not a folder (give a run's checkpoint folder, "
                              "OUT/checkpoints/run_NNNN, or one of its step_NNNNNN folders)")
    if (path / "trainer.pt").is_file():
        step_dir = path
    else:
        steps = sorted(p for p in path.glob("step_*") if (p / "trainer.pt").is_file())
        if not steps:
            raise CheckpointError(f"{shown}: no checkpoint in it (expected step_NNNNNN/trainer.pt, as written by "
                                  "`sgcd-bench train --save-checkpoint`)")
        step_dir = steps[-1]
    meta_file = step_dir / META_FILE
    if not meta_file.is_file():
        raise CheckpointError(f"{shown}: {step_dir} has no {META_FILE} (written by an older sgcd-bench), so its "
                              "method, model and settings cannot be checked; start a new run")
    try:
        meta = json.loads(meta_file.read_text())
        step = int(meta["step"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{shown}: {meta_file} is damaged ({type(err).__name__}: {err})") from None
    return Checkpoint(step_dir, step, meta)


def flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys: ``{"loop": {"steps": 4}}`` → ``{"loop.steps": 4}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def mismatches(ckpt: Checkpoint, *, method: str, model: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """What differs between the checkpoint and the run asked for, as ``what: checkpoint ≠ now``."""
    found = []
    if ckpt.meta.get("method") != method:
        found.append(f"method: {ckpt.meta.get('method')} ≠ {method}")
    for key, value in model.items():
        if ckpt.meta.get("model", {}).get(key) != value:
            found.append(f"model {key}: {ckpt.meta.get('model', {}).get(key)} ≠ {value}")
    then = SETTINGS_ADDED | flat(ckpt.meta.get("config", {}))
    now = flat(json.loads(json.dumps(config)))
    for key in sorted(set(then) | set(now)):
        if key not in RESUMABLE_SETTINGS and then.get(key) != now.get(key):
            found.append(f"{key}: {then.get(key, '(unset)')} ≠ {now.get(key, '(unset)')}")
    return found


def check_resume(ckpt: Checkpoint, *, method: str, model: dict[str, Any], config: dict[str, Any],
                 steps: int) -> None:
    """One-line :class:`CheckpointError` unless ``ckpt`` can continue this run to ``steps``."""
    shown = f"--resume {ckpt.path}"
    found = mismatches(ckpt, method=method, model=model, config=config)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise CheckpointError(f"{shown}: the checkpoint does not match this run: {'; '.join(found[:3])}{more}. "
                              f"Resume with its settings (in {ckpt.path / META_FILE}) or start a new run")
    if ckpt.step > steps:
        raise CheckpointError(f"{shown}: the checkpoint is at step {ckpt.step}, past --steps {steps}")


__all__ = ["KEEP_CHECKPOINTS", "META_FILE", "RESUMABLE_SETTINGS", "SETTINGS_ADDED", "Checkpoint", "CheckpointError",
           "check_resume", "checkpoint_meta", "find_checkpoint", "flat", "mismatches", "model_identity",
           "run_checkpoints"]
