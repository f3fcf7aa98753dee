"""What every run command shares: its options in one object, checked and turned into a session.

``sgcd-bench compare/train/eval/inspect-credit`` declare their options for typer and hand them
over as one :class:`RunOptions` (``RunOptions.from_params(ctx.params)``); :func:`open_session`
checks all of it before anything is trained (raising :class:`~sgcd_bench.preflight.InputError`
with one line that says what to fix), loads the model and returns a :class:`Session`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from rich.console import Console

from sgcd_bench import preflight

PRESET_OVERRIDES = ("seed", "steps", "group_size", "groups_per_batch", "max_turns", "max_new_tokens", "lr",
                    "micro_batch_groups", "rollout_batch_groups", "activation_checkpointing", "eval_tasks",
                    "eval_trials", "eval_split", "device", "warm_start", "sft_demos", "sft_epochs", "sft_lr",
                    "probe_tasks", "probe_samples", "decoder")
"""Options that override a preset size of the same name (None keeps the preset's)."""


@dataclass(frozen=True)
class RunOptions:
    """The options of a run command; a size left None is the preset's."""

    preset: str = "cpu"
    model: str | None = None
    env: str | None = None
    """Env id or alias; None = the preset's."""
    out: Path = Path("runs")
    seed: int | None = None
    steps: int | None = None
    group_size: int | None = None
    groups_per_batch: int | None = None
    max_turns: int | None = None
    max_new_tokens: int | None = None
    lr: float | None = None
    micro_batch_groups: int | None = None
    rollout_batch_groups: int | None = None
    activation_checkpointing: bool | None = None
    eval_tasks: int | None = None
    eval_trials: int | None = None
    eval_split: str | None = None
    device: str | None = None
    prompt: str | None = None
    warm_start: bool | None = None
    sft_demos: int | None = None
    sft_epochs: int | None = None
    sft_lr: float | None = None
    threads: int | None = None
    decoder: str | None = None
    probe_tasks: int | None = None
    probe_samples: int | None = None
    summarizer_base_url: str | None = None
    summarizer_model: str | None = None
    summarizer_key_env: str = "SGCD_LLM_API_KEY"
    user_base_url: str | None = None
    user_model: str | None = None
    user_key_env: str = "SGCD_LLM_API_KEY"
    llm_timeout: float = 60.0
    llm_retries: int = 3

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **fixed: Any) -> RunOptions:
        """The options among a command's parameters (``typer.Context.params``; names that are
        not options are ignored), with ``fixed`` values on top; enum values become their value."""
        names = {f.name for f in fields(cls)}
        values = {k: (v.value if isinstance(v, Enum) else v) for k, v in {**params, **fixed}.items() if k in names}
        return cls(**values)

    def preset_overrides(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in PRESET_OVERRIDES},
                "prompt_variant": self.prompt, "torch_threads": self.threads}


@dataclass(frozen=True)
class Session:
    """A checked run: the sized preset, the env, what every method shares, the model and the store."""

    options: RunOptions
    preset: Any
    """``sgcd_bench.presets.Preset`` with the options applied."""
    env_id: str
    pieces: Any
    """``sgcd_bench.run.Pieces``: env factory, user simulator, summarizer."""
    base: Any
    """``adapters.local.model.LoadedModel``: the initial policy every method starts from."""
    store: Any
    """``leaderboards.store.ResultStore`` at ``OUT/results.sqlite``."""
    warm: Any = None
    """``sgcd_bench.warm_start.WarmStart`` when ``base`` is the warm-started policy."""


def sized_preset(options: RunOptions) -> Any:
    """The named preset with the options' sizes applied (validated again)."""
    from algorithms.errors import ConfigError
    from sgcd_bench.presets import PresetError, get_preset, with_overrides

    try:
        return with_overrides(get_preset(options.preset), **options.preset_overrides())
    except (PresetError, ConfigError, ValueError) as err:
        raise preflight.InputError(str(err)) from None


def open_session(options: RunOptions, console: Console, *, splits: tuple[str, ...] = ("train", "eval"),
                 eval_split_option: str = "--eval-split", trains: bool = False) -> Session:
    """Check everything (env, preset sizes, device, LLM options, ``--out``, the ``splits`` the
    command uses, the model's config against the sizes, the store) before any training, then load
    the model, print the run's sizes and, for a command that ``trains``, run or load the preset's
    warm start. Each failure raises ``InputError`` with one line."""
    import sgcd_envs
    from adapters.local.model import ModelConfigError, ModelNotFoundError, default_cache_dir
    from sgcd_bench import run

    p = sized_preset(options)
    try:
        entry = sgcd_envs.env_entry(options.env or p.env)
    except sgcd_envs.UnknownEnvError as err:
        raise preflight.InputError(str(err)) from None
    env_id = entry.id
    if options.warm_start and entry.reference_turns is None:
        raise preflight.InputError(f"--warm-start: {env_id} registers no reference trajectories to clone")
    if "eval" in splits:
        from sgcd_bench.presets import PRESETS

        preflight.check_eval_trials(p.eval_trials, p.eval_temperature, preset=p.name,
                                    from_option=options.eval_trials is not None,
                                    sampling_presets={n: q.eval_temperature for n, q in PRESETS.items()
                                                      if q.eval_temperature > 0})
    out = options.out
    preflight.check_device(p.device, preset=p.name, from_option=options.device is not None)
    if p.torch_threads is not None:
        import torch

        torch.set_num_threads(p.torch_threads)
    preflight.check_llm_limits(options.llm_timeout, options.llm_retries)
    summ = preflight.llm_endpoint(options.summarizer_base_url, options.summarizer_model, options.summarizer_key_env,
                                  options.llm_timeout, options.llm_retries, "summarizer")
    user = preflight.llm_endpoint(options.user_base_url, options.user_model, options.user_key_env,
                                  options.llm_timeout, options.llm_retries, "user")
    preflight.check_out_folder(out)
    try:
        pieces = run.make_pieces(p, env_id, llm_user=user, llm_summarizer=summ, cache_dir=out / "cache")
    except (ValueError, run.RunError) as err:
        raise preflight.InputError(preflight.first_line(err)) from None
    split_sources = {"train": (f"preset '{p.name}' train split", p.train_split),
                     "eval": (eval_split_option, p.eval_split)}
    preflight.check_splits(pieces.make_env, env_id, dict(split_sources[s] for s in splits))
    warnings = preflight.check_sizes(p.loop, preflight.model_context(options.model, default_cache_dir()))
    store = preflight.open_store(out / "results.sqlite")
    for line in store.open_notices():
        console.print(line, highlight=False)
    try:
        base = run.load_policy(options.model, p, default_cache_dir(), console)
    except (ModelNotFoundError, ModelConfigError, run.RunError) as err:
        raise preflight.InputError(str(err)) from None
    from adapters.local.rollout import decode_path

    print_sizes(console, p, env_id, options.model, train_sizes="train" in splits, eval_sizes="eval" in splits,
                decode=decode_path(base.model, p.decoder))
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if pieces.user_is_stand_in:
        console.print(f"  user: {pieces.user_label}, an offline stand-in (its scores are not "
                      f"{pieces.entry.display_title} benchmark numbers)", highlight=False)
    warm = None
    if trains and p.warm_start is not None:
        if entry.reference_turns is None:
            console.print(f"  warm start: none ({env_id} registers no reference trajectories)", highlight=False)
        else:
            from sgcd_bench.warm_start import describe, warm_start

            warm = warm_start(base, pieces, p.warm_start, cache_dir=default_cache_dir(), console=console,
                              measure_tasks=16)
            console.print(f"  {describe(warm)}", highlight=False)
            base = warm.model
    return Session(options, p, env_id, pieces, base, store, warm)


def print_sizes(console: Console, p: Any, env_id: str, model: str | None, *, train_sizes: bool = True,
                eval_sizes: bool = True, decode: str | None = None) -> None:
    """The run's header: preset, env, model, device, the rollouts' ``decode`` path
    (``adapters.local.rollout.decode_path``), torch threads, prompt, then only the sizes the
    command uses: the train line (steps, groups, budgets, optimizer, dynamic sampling) for a command
    that rolls out on the train split (``train_sizes``), the eval line (split, tasks, trials,
    temperature; the budgets too when there is no train line) for one that evaluates
    (``eval_sizes``). ``sgcd-bench eval`` prints no train line."""
    from adapters.local.prompting import STAND_IN_VARIANTS

    loop, g = p.loop, p.grpo
    lines = [f"[bold]preset {p.name}[/]: env {env_id} · model {model or 'smollm2-135m (embedded)'} · "
             f"device {p.device}{f' · decode {decode}' if decode else ''}"
             f"{f' · torch threads {p.torch_threads}' if p.torch_threads else ''} · "
             f"prompt {p.prompt_variant}{' (stand-in)' if p.prompt_variant in STAND_IN_VARIANTS else ''}"]
    rollouts = f", rollouts {loop.rollout_batch_groups} group(s) at a time" if loop.rollout_batch_groups else ""
    if train_sizes:
        lines.append(
            f"  train: {loop.steps} steps × {p.sampling.groups_per_batch} groups × G={g.group_size} siblings, "
            f"≤{loop.max_turns} turns × {loop.max_new_tokens} tokens, lr {g.lr:g}, β_KL {g.beta_kl:g}, "
            f"clip [{1 - g.eps_lo:g}, {1 + g.eps_hi:g}], dynamic sampling ≤{p.sampling.max_rounds} rounds{rollouts}"
            f"{', activation checkpointing' if loop.activation_checkpointing else ''}, seed {loop.seed}")
        if p.probe_tasks:
            how = (f"{p.probe_samples} samples each at temperature {loop.temperature:g} with fixed random numbers"
                   if p.probe_samples else "greedy")
            lines.append(f"  probe: the first {p.probe_tasks} {p.train_split} tasks, {how}, in every step's first "
                         "rollout batch (the same tasks every step and seed; it measures the policy that rolls "
                         "the step out, so step 1's probe is the starting policy)")
    if eval_sizes:
        budgets = "" if train_sizes else f", ≤{loop.max_turns} turns × {loop.max_new_tokens} tokens{rollouts}"
        lines.append(f"  eval: {p.eval_split} split, {p.eval_tasks or 'all'} tasks × {p.eval_trials} trial(s), "
                     f"temperature {p.eval_temperature:g}{budgets}")
    console.print("\n".join(lines), highlight=False)
