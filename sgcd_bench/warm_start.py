"""The warm start of a run: behaviour cloning of the env's reference trajectories, cached.

``sgcd-bench sft`` runs it on its own; ``compare`` and ``train`` run it first when the preset asks
for one (``Preset.warm_start``), so every method starts RL from the same cloned policy. The
cloned model is cached under ``CACHE/sft/<key>`` (the key hashes the base model, the env, the
prompt, the budgets and the settings), like the converted embedded model: a second run loads it.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass

import torch
from rich.console import Console

from adapters.local.model import LoadedModel, load_model
from adapters.local.sft import (SFTReport, SFTSettings, behaviour_clone, demonstrations, read_report,
                                save_warm_start, warm_start_key)

from .run import Pieces, policy_engine, task_ids


@dataclass(frozen=True)
class WarmStart:
    """A warm-started policy and how it was made."""

    model: LoadedModel
    report: SFTReport | None
    cached: bool
    path: str


def warm_start(base: LoadedModel, pieces: Pieces, settings: SFTSettings, *, cache_dir, console: Console,
               measure_tasks: int = 0) -> WarmStart:
    """``base`` cloned on ``settings.demos`` reference trajectories of the train split (or the
    cached result of the same clone); ``base`` itself is untouched."""
    preset, entry = pieces.preset, pieces.entry
    split = preset.train_split
    engine = policy_engine(base, pieces, base.model, split, preset.loop.temperature)
    budget = f"turns={preset.loop.max_turns},tokens={preset.loop.max_new_tokens}"
    key = warm_start_key(base.name, pieces.env_id, settings, engine.renderer.system + budget)
    target = cache_dir / "sft" / key
    if (target / "model.safetensors").is_file():
        loaded = load_model(str(target), device=preset.device)
        loaded = LoadedModel(loaded.model, loaded.tokenizer, f"{base.name}+sft:{key}")
        result = WarmStart(loaded, read_report(target), True, str(target))
    else:
        model = copy.deepcopy(base.model)
        engine = dataclasses.replace(engine, model=model)
        ids = task_ids(pieces.make_env, split, None)
        picks = random.Random(settings.seed).sample(ids, min(len(ids), settings.demos + settings.held_out))
        turns_of = lambda task_id: entry.demonstration(task_id, split)  # noqa: E731
        train_eps, dropped = demonstrations(engine, picks[:settings.demos], turns_of)
        held_eps, _ = demonstrations(engine, picks[settings.demos:], turns_of)
        console.print(f"warm start: cloning {len(train_eps)} reference trajectories of {entry.display_title} "
                      f"({dropped} dropped: they do not fit ≤{preset.loop.max_turns} turns × "
                      f"{preset.loop.max_new_tokens} tokens or do not score 1), {len(held_eps)} held out",
                      highlight=False)
        report = behaviour_clone(model, engine, train_eps, held_eps, settings,
                                 on_epoch=lambda e, loss: console.print(f"  sft epoch {e}/{settings.epochs}: "
                                                                        f"loss {loss:.3f}", highlight=False))
        report.dropped = dropped
        loaded = LoadedModel(model, base.tokenizer, f"{base.name}+sft:{key}")
        if measure_tasks:  # measured once, when made; a cached warm start reads it from its report
            report.train_success = success_rate(loaded, pieces, measure_tasks)
        save_warm_start(model, base.tokenizer, target, report)
        result = WarmStart(loaded, report, False, str(target))
    return result


def success_rate(policy: LoadedModel, pieces: Pieces, tasks: int) -> float:
    """Success rate on ``tasks`` sampled train tasks, one episode each at the rollout temperature."""
    preset = pieces.preset
    engine = policy_engine(policy, pieces, policy.model, preset.train_split, preset.loop.temperature)
    ids = task_ids(pieces.make_env, preset.train_split, None)
    picks = random.Random(10_007).sample(ids, min(tasks, len(ids)))
    policy.model.eval()
    with torch.no_grad():
        episodes, _ = engine.run(picks, 1, seed=preset.loop.seed)
    return sum(ep.reward >= 1 for ep in episodes) / max(len(episodes), 1)


def describe(result: WarmStart) -> str:
    """One line for the run's output."""
    r = result.report
    parts = [f"warm start {'(cached) ' if result.cached else ''}{result.path}"]
    if r is not None:
        parts.append(f"{r.demos} demos, {len(r.epoch_losses)} epochs, train loss "
                     f"{r.epoch_losses[0]:.3f} → {r.epoch_losses[-1]:.3f}" if r.epoch_losses else f"{r.demos} demos")
        if r.held_out_before is not None:
            parts.append(f"held-out loss {r.held_out_before:.3f} → {r.held_out_after:.3f} ({r.held_out} demos)")
        parts.append(f"{r.seconds:.0f} s")
        if r.train_success is not None:
            parts.append(f"train success {r.train_success:.2f} (sampled, T = rollout temperature)")
    return " · ".join(parts)


__all__ = ["WarmStart", "describe", "success_rate", "warm_start"]
