"""Run orchestration for the CLI: build the pieces, train, evaluate, store, print.

Wiring only: the math is in ``algorithms``, the loop in ``adapters.local.trainer``, the envs in
``sgcd_envs``, the store and tables in ``leaderboards``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import sgcd_envs
from adapters.local.model import LoadedModel, load_model
from adapters.local.prompting import STAND_IN_VARIANTS, ChatRenderer, system_prompt
from adapters.local.rollout import Episode, RolloutEngine
from adapters.local.trainer import LocalTrainer, StepResult
from algorithms.registry import get_method
from leaderboards import metrics
from leaderboards.collapse import COLLAPSE_FLAG, CollapseGuard, observe, point_from_episodes
from leaderboards.store import EpisodeResult, ResultStore, StandIns, StoreError, TrainStep, git_commit
from leaderboards.tables import DO_NOTHING
from sgcd_envs.outcome import EpisodeOutcome, episode_outcome
from sgcd_common.signals import deferred_interrupts, terminate_as_interrupt
from sgcd_envs.registry import EnvEntry

from .checkpoints import (KEEP_CHECKPOINTS, Checkpoint, CheckpointError, check_resume, checkpoint_meta,
                          model_identity, run_checkpoints)
from .presets import Preset
from .progress import Display

DO_NOTHING_MESSAGE = "Thank you for contacting us. Is there anything else I can help you with?"
"""What the do-nothing baseline agent says every turn: no tool call, a closing phrase."""


class RunError(RuntimeError):
    """A run could not start; the message says what to fix."""


@dataclass
class Pieces:
    """What every method of one comparison shares (so the comparison stays matched)."""

    preset: Preset
    env_id: str
    make_env: Callable[[str], Any]
    """split → a fresh env (with this run's user simulator)."""
    user_label: str
    summarizer: Any
    summarizer_label: str
    user_stats: Any | None = None
    """The LLM user's counters shared by all episodes (``adapters.llm.UserStats``); None otherwise."""
    user_is_stand_in: bool = False
    """The user simulator is the env's offline stand-in (its numbers are not benchmark numbers)."""
    summarizer_is_stand_in: bool = False
    """The summarizer is the offline contrast stand-in, not an LLM."""

    @property
    def entry(self) -> EnvEntry:
        return sgcd_envs.env_entry(self.env_id)

    def stand_ins(self, *, prompt: bool, summarizer: bool) -> StandIns:
        """The stand-ins of a run on these pieces; ``prompt`` / ``summarizer``: whether the run's
        agent uses the preset's prompt / its method uses the summarizer."""
        return StandIns(user=self.user_is_stand_in, summarizer=summarizer and self.summarizer_is_stand_in,
                        prompt=prompt and self.preset.prompt_variant in STAND_IN_VARIANTS,
                        world=self.preset.eval_split in self.entry.fixture_splits)


@dataclass(frozen=True)
class UserSetup:
    """The run's user simulator: a factory of fresh ones (None: the env takes no user), its label,
    whether it is a stand-in, and the LLM users' shared counters (None: no LLM user)."""

    new_user: Callable[[], Any] | None
    label: str
    stand_in: bool = False
    stats: Any | None = None


def user_setup(entry: EnvEntry, preset: Preset, llm_user_endpoint: Any | None) -> UserSetup:
    """An LLM user when an endpoint is given, else the env's own user (designed for it: its
    numbers are the env's own, no stand-in), else its registered stand-in user."""
    if not entry.takes_user:
        return UserSetup(None, "none (env has no user)")
    if llm_user_endpoint is not None:
        from adapters.llm import ChatClient, LLMUser
        from adapters.llm.user import UserStats

        client, stats = ChatClient(llm_user_endpoint, cache_dir=None), UserStats()
        return UserSetup(lambda: LLMUser(client, stats=stats), f"llm:{llm_user_endpoint.model}", stats=stats)
    if entry.own_user is not None:
        return UserSetup(entry.new_own_user, entry.new_own_user().name)
    turns = preset.scripted_user_turns

    def new_user() -> Any:
        return entry.new_stand_in_user(turns)

    return UserSetup(new_user, new_user().name, stand_in=True)


def make_pieces(preset: Preset, env_id: str, *, llm_user: Any | None, llm_summarizer: Any | None,
                cache_dir: Path) -> Pieces:
    """Resolve the env id, the user simulator and the summarizer; fail early on bad input."""
    entry = sgcd_envs.env_entry(env_id)  # UnknownEnvError with "Did you mean"
    user = user_setup(entry, preset, llm_user)

    def make_env(split: str) -> Any:
        kwargs: dict[str, Any] = {"split": split}
        if user.new_user is not None:
            kwargs["user"] = user.new_user()
        if entry.turn_budget is not None:
            kwargs[entry.turn_budget] = preset.loop.max_turns
        return sgcd_envs.make(entry.id, **kwargs)

    if llm_summarizer is not None:
        from adapters.llm import ChatClient, LLMSummarizer

        summarizer = LLMSummarizer(ChatClient(llm_summarizer, cache_dir=cache_dir / "llm"))
        label = f"llm:{llm_summarizer.model}"
    else:
        from adapters.llm import OfflineSummarizer

        summarizer = OfflineSummarizer(write_tools=entry.write_tool_names())
        label = "offline-contrast (stand-in)"
    return Pieces(preset, entry.id, make_env, user.label, summarizer, label, user.stats,
                  user_is_stand_in=user.stand_in, summarizer_is_stand_in=llm_summarizer is None)


def task_ids(make_env: Callable[[str], Any], split: str, limit: int | None) -> list[str]:
    """Task ids of a split, in the env's order (first ``limit`` of them if given)."""
    env = make_env(split)
    ids = [str(t) for t in env.unwrapped.task_ids()]  # every sgcd env lists its split's tasks
    env.close()
    if not ids:
        raise RunError(f"split {split!r} has no tasks")
    return ids[:limit] if limit else ids


def episode_record(task_id: str, trial: int, outcome: EpisodeOutcome, *, turns: int) -> EpisodeResult:
    """The stored row of one episode: its outcome, task, trial and turns."""
    return EpisodeResult(task_id=task_id, trial=trial, turns=turns, **dataclasses.asdict(outcome))


def episode_result(ep: Episode, trial: int) -> EpisodeResult:
    return episode_record(ep.task_id, trial, ep.outcome, turns=ep.turns)


def _results(episodes: Sequence[Episode]) -> list[EpisodeResult]:
    trials: dict[str, int] = {}
    out = []
    for ep in episodes:
        out.append(episode_result(ep, trials.get(ep.task_id, 0)))
        trials[ep.task_id] = trials.get(ep.task_id, 0) + 1
    return out


def evaluate(engine: RolloutEngine, ids: Sequence[str], trials: int, *, seed: int) -> tuple[list[EpisodeResult], float, int]:
    """Run every task ``trials`` times; returns (results, wall seconds, generated tokens)."""
    engine.model.eval()
    started = time.perf_counter()
    episodes, info = engine.run(list(ids), trials, seed=seed)
    return _results(episodes), time.perf_counter() - started, int(info["generated_tokens"])


def run_do_nothing(pieces: Pieces, store: ResultStore, *, commit: str | None) -> int:
    """Store the do-nothing baseline: one plain closing message per turn, no tool calls."""
    preset = pieces.preset
    ids = task_ids(pieces.make_env, preset.eval_split, preset.eval_tasks)
    run_id = store.start_run(method=DO_NOTHING, env=pieces.env_id, split=preset.eval_split, model=None,
                             user_simulator=pieces.user_label, summarizer=None, preset=preset.name,
                             seed=preset.loop.seed, commit=commit,
                             stand_ins=pieces.stand_ins(prompt=False, summarizer=False),
                             config={"agent_message": DO_NOTHING_MESSAGE, "max_turns": preset.loop.max_turns,
                                     "eval_trials": preset.eval_trials,
                                     "scripted_user_turns": preset.scripted_user_turns})
    started = time.perf_counter()
    results = []
    for task_id in ids:
        for trial in range(preset.eval_trials):
            env = pieces.make_env(preset.eval_split)
            env.reset(seed=trial, options={"task_id": task_id})
            done = False
            info: dict[str, Any] = {}
            turns = 0
            while not done:
                _, _, term, trunc, info = env.step(DO_NOTHING_MESSAGE)
                turns += 1
                done = term or trunc
            results.append(episode_record(task_id, trial, episode_outcome(info), turns=turns))
            env.close()
    store.record_evaluation(run_id, 0, results, wall_s=time.perf_counter() - started, tokens=0)
    store.finish_run(run_id, "finished")
    return run_id


def _evaluate_shown(display: Display, name: str, pieces: Pieces,
                    engine: RolloutEngine) -> tuple[list[EpisodeResult], float, int]:
    """:func:`evaluate` on the preset's eval tasks, its progress on ``display``."""
    preset = pieces.preset
    bar = display.evaluation(name, preset.eval_split)
    engine.on_progress = bar.rollout
    ids = task_ids(pieces.make_env, preset.eval_split, preset.eval_tasks)
    results, wall, tokens = evaluate(engine, ids, preset.eval_trials, seed=10_000 + preset.loop.seed)
    bar.finished(len(results), sum(r.reward >= 1 for r in results) / len(results))
    return results, wall, tokens


@dataclass
class Checkpointing:
    """When a training run writes checkpoints (``OUT/checkpoints/run_NNNN``): every ``every``
    steps (None = only at the end), at the end before the result is stored, and on Ctrl-C /
    SIGTERM. ``resume``: the checkpoint this run continues from."""

    every: int | None = None
    resume: Checkpoint | None = None


def train_method(
    method: str,
    base: LoadedModel,
    pieces: Pieces,
    store: ResultStore,
    *,
    console: Console,
    out_dir: Path,
    commit: str | None,
    checkpoints: Checkpointing | None = None,
) -> int:
    """Train one method from ``base`` (a copy; ``base`` is untouched), evaluate, store; run id.

    With ``checkpoints`` the trainer's state is saved every N steps, before the evaluation and
    on Ctrl-C / SIGTERM (the run is then flagged ``interrupted`` with the path to resume from);
    a resumed run continues the same stored run to ``--steps``."""
    preset = pieces.preset
    torch.manual_seed(preset.loop.seed)
    model = copy.deepcopy(base.model)
    engine = policy_engine(base, pieces, model, preset.train_split, preset.loop.temperature)
    uses_summarizer = get_method(method).needs_summarizer
    trainer = LocalTrainer(model, base.tokenizer, engine, method=method, loop=preset.loop, grpo_cfg=preset.grpo,
                           sampling_cfg=preset.sampling, configs=preset.method_configs(),
                           summarizer=pieces.summarizer if uses_summarizer else None,
                           task_pool=task_ids(pieces.make_env, preset.train_split, None))
    config = {**preset.summary(), "method": method, "prompt_tokens": len(engine.renderer.prefix_ids)}
    identity = model_identity(base.name, base.model)
    resume = checkpoints.resume if checkpoints else None
    if resume is not None:
        check_resume(resume, method=method, model=identity, config=config, steps=preset.loop.steps)
        trainer.load(resume.path)
    run_id = _open_run(store, method, base, pieces, config, commit, uses_summarizer, resume, console)
    save = None
    if checkpoints is not None:
        folder = run_checkpoints(out_dir, run_id)
        meta = checkpoint_meta(run_id=run_id, store=store.path, method=method, model=identity, config=config,
                               commit=commit)

        def save() -> Path:
            path = trainer.save(folder, meta=meta, keep=KEEP_CHECKPOINTS)
            console.print(f"  checkpoint: {path}", highlight=False)
            return path
    guard = CollapseGuard()
    probe = probe_tasks(pieces)
    updates = episodes_rolled = 0
    # a resumed run's own folder already holds the checkpoint of the step it starts from
    own = resume is not None and resume.path.resolve().parent == run_checkpoints(out_dir, run_id).resolve()
    saved_at = trainer.step_idx if own else -1
    unstored: StepResult | None = None
    try:
        display = Display(console)
        with terminate_as_interrupt(), display.shown():
            bar = display.training(method, preset.loop.steps, trainer.step_idx)
            engine.on_progress = bar.rollout
            while trainer.step_idx < preset.loop.steps:
                unstored = result = trainer.step(probe, probe_seed=PROBE_SEED, probe_samples=preset.probe_samples)
                point = train_step(result)
                with deferred_interrupts():  # stored and marked stored together: a signal between the two
                    store.record_step(run_id, point)  # would store the step twice
                    unstored = None
                updates += int(result.metrics.get("updated", 0))
                episodes_rolled += len(result.rollouts)
                guard = _watch_collapse(guard, result, store, run_id, console)
                bar.step(f"{_status(result, point.probe_reward)} · updates {updates}/{trainer.step_idx}")
                if save and checkpoints.every and trainer.step_idx % checkpoints.every == 0:
                    save()
                    saved_at = trainer.step_idx
            if save and saved_at != trainer.step_idx:  # before the evaluation: a failure there keeps the model
                save()
                saved_at = trainer.step_idx
            results, wall, tokens = _evaluate_shown(display, method, pieces, policy_engine(
                base, pieces, model, preset.eval_split, preset.eval_temperature))
        store.record_evaluation(run_id, trainer.step_idx, results, wall_s=wall, tokens=tokens)
        console.print(f"  {method}: {updates} update(s) in {trainer.step_idx} step(s) from {episodes_rolled} "
                      "rollouts (a step whose groups all had equal rewards makes none)", highlight=False)
    except KeyboardInterrupt:
        if unstored is not None:  # finished, but the interrupt came before it was stored
            store.record_step(run_id, train_step(unstored))
        if save and saved_at != trainer.step_idx:
            save()
        where = run_checkpoints(out_dir, run_id) if save else None
        store.flag_run(run_id, INTERRUPTED_FLAG, _interrupted_reason(method, trainer.step_idx, preset.loop.steps,
                                                                     where))
        store.finish_run(run_id, "failed")
        raise
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    store.finish_run(run_id, "finished")
    return run_id


INTERRUPTED_FLAG = "interrupted"
"""Flag of a training run stopped by Ctrl-C or SIGTERM."""


def _interrupted_reason(method: str, step: int, steps: int, checkpoint: Path | None) -> str:
    if checkpoint is None:
        return f"stopped after step {step}/{steps}; no checkpoint (train with --save-checkpoint to keep one)"
    return (f"stopped after step {step}/{steps}; resume with `sgcd-bench train {method} --resume {checkpoint}`")


def _open_run(store: ResultStore, method: str, base: LoadedModel, pieces: Pieces, config: dict[str, Any],
              commit: str | None, uses_summarizer: bool, resume: Checkpoint | None, console: Console) -> int:
    """The stored run this training writes to: the resumed one (set running again, its steps
    after the checkpoint dropped), or a new one."""
    preset = pieces.preset
    if resume is not None and _same_store(resume, store):
        run_id = int(resume.run_id)
        done = [e for e in store.evaluations(run_id) if e.step == resume.step]
        if resume.step == preset.loop.steps and done:
            raise CheckpointError(f"--resume {resume.path}: run #{run_id} is already trained to step {resume.step} "
                                  "and evaluated there; ask for more --steps")
        store.reopen_run(run_id, config=config)
        dropped = store.drop_steps_after(run_id, resume.step)
        console.print(f"  resuming run #{run_id} ({method}) at step {resume.step} of {preset.loop.steps}"
                      f"{f'; {dropped} stored step(s) after the checkpoint dropped' if dropped else ''}",
                      highlight=False)
        return run_id
    if resume is not None:
        config = {**config, "resumed_from": str(resume.path)}
    run_id = store.start_run(method=method, env=pieces.env_id, split=preset.eval_split, model=base.name,
                             user_simulator=pieces.user_label,
                             summarizer=pieces.summarizer_label if uses_summarizer else None,
                             stand_ins=pieces.stand_ins(prompt=True, summarizer=uses_summarizer),
                             preset=preset.name, seed=preset.loop.seed, commit=commit, config=config)
    if resume is not None:
        console.print(f"  resuming from {resume.path} (step {resume.step}) as new run #{run_id}: the checkpoint's "
                      "run is not in this store", highlight=False)
    return run_id


def _same_store(ckpt: Checkpoint, store: ResultStore) -> bool:
    """Whether the checkpoint's run is in ``store`` (same file, the run still there, same method)."""
    if ckpt.run_id is None or ckpt.meta.get("store") != str(Path(store.path).resolve()):
        return False
    try:
        return store.run(int(ckpt.run_id)).method == ckpt.meta.get("method")
    except StoreError:
        return False


def per_seed(pieces: Pieces, seeds: Sequence[int | None]) -> list[Pieces]:
    """The shared pieces once per seed (None keeps the preset's): everything else stays matched."""
    return [pieces if seed is None else dataclasses.replace(
        pieces, preset=dataclasses.replace(pieces.preset, loop=dataclasses.replace(pieces.preset.loop, seed=seed)))
        for seed in seeds]


def train_step(result: StepResult) -> TrainStep:
    """The stored learning-curve point of one training step: the trainer's rollout and update
    metrics, pass@1 per task category over every episode the step rolled out (as on the
    leaderboard), and the same over the step's probe episodes when the run has a probe. A
    non-finite loss is stored as ``None``."""
    m, eps, probe = result.metrics, _results(result.rollouts), _results(result.probe)
    updated = bool(m.get("updated"))
    loss = float(m.get("loss", math.nan))
    probed = {}
    if probe:
        probed = {"probe_reward": sum(r.reward for r in probe) / len(probe),
                  "probe_action_success": metrics.action_pass_rate(probe),
                  "probe_no_write_success": metrics.no_write_pass_rate(probe),
                  "probe_write_calls": metrics.writes_done_per_episode(probe)}
    return TrainStep(step=result.step, reward_mean=float(m.get("rollout_reward_mean", 0.0)),
                     action_success=metrics.action_pass_rate(eps), no_write_success=metrics.no_write_pass_rate(eps),
                     write_calls=metrics.writes_done_per_episode(eps) if eps else 0.0, episodes=len(eps),
                     updated=updated, loss=loss if updated and math.isfinite(loss) else None,
                     groups_kept=int(m.get("groups_kept", 0)), groups_drawn=int(m.get("groups_drawn", 0)),
                     step_s=float(m.get("step_s", 0.0)), **probed)


PROBE_SEED = 20_000
"""Env seed of the probe's episodes: the same episode at every step, for every seed and method."""


def probe_tasks(pieces: Pieces) -> tuple[str, ...]:
    """The run's probe: the first ``probe_tasks`` train tasks (none when the preset has
    ``probe_tasks`` unset or 0), played by ``LocalTrainer.step(probe, probe_seed=PROBE_SEED)``.

    The probe plays each task once greedily (or ``probe_samples`` times with fixed random
    numbers) in the step's first rollout batch, so it measures
    the policy that rolled the step out, before the step's update: step 1's probe is the starting
    policy, identical for every seed and method. Same tasks at every step, so the probe's curve
    moves only with the policy, not with the tasks a step drew."""
    preset = pieces.preset
    if not preset.probe_tasks:
        return ()
    return tuple(task_ids(pieces.make_env, preset.train_split, preset.probe_tasks))


def _status(result: StepResult, probe_reward: float | None = None) -> str:
    m = result.metrics
    parts = [f"{len(result.rollouts)} episodes", f"reward {m.get('rollout_reward_mean', 0):.2f}",
             f"writes/ep {m.get('rollout_writes_done', 0):.2f}",
             f"kept {int(m.get('groups_kept', 0))}/{int(m.get('groups_drawn', 0))} groups"]
    if m.get("updated"):
        parts.append(f"loss {m['loss']:+.4f}")
    else:
        parts.append("no mixed group: no update")
    if probe_reward is not None:
        parts.append(f"probe {probe_reward:.2f}")
    return " · ".join(parts)


def _watch_collapse(guard: CollapseGuard, result: StepResult, store: ResultStore, run_id: int,
                    console: Console) -> CollapseGuard:
    """Feed the tool-use collapse guard with this step's rollouts; warn and flag the run."""
    if not result.rollouts:
        return guard
    guard = observe(guard, point_from_episodes(result.step, _results(result.rollouts)))
    if guard.verdict.flag:
        console.print(f"[bold red]⚠ tool-use collapse[/] (step {result.step}): {guard.verdict.reason}")
        store.flag_run(run_id, COLLAPSE_FLAG, guard.verdict.reason)
    return guard


def load_policy(model: str | None, preset: Preset, cache_dir: Path, console: Console | None = None) -> LoadedModel:
    """Load the policy on the preset's device (``sgcd_bench.preflight.check_device`` has checked
    that torch can use it), converting the embedded default first if needed."""
    from adapters.local.model import EMBEDDED_DEFAULT, embedded_cache_path

    cached = (embedded_cache_path(cache_dir) / "model.safetensors").is_file()
    if model in (None, "", EMBEDDED_DEFAULT) and not cached and console is not None:
        console.print(f"model: converting the embedded SmolLM2-135M GGUF once into {embedded_cache_path(cache_dir)} "
                      "(about half a minute; later runs load it in seconds)", highlight=False)
    return load_model(model, device=preset.device, cache_dir=cache_dir)


def default_commit() -> str | None:
    return git_commit(Path(__file__).resolve().parent.parent)


def policy_engine(base: LoadedModel, pieces: Pieces, model: torch.nn.Module, split: str,
                  temperature: float) -> RolloutEngine:
    """A rollout engine for ``model`` on ``split`` with the preset's prompt and budgets."""
    preset = pieces.preset
    probe = pieces.make_env(split)
    _, info = probe.reset(seed=0, options={"task_id": task_ids(pieces.make_env, split, 1)[0]})
    probe.close()
    renderer = ChatRenderer(base.tokenizer, system_prompt(info["policy"], info["tools"], variant=preset.prompt_variant))
    return RolloutEngine(model, base.tokenizer, renderer, lambda: pieces.make_env(split),
                         max_new_tokens=preset.loop.max_new_tokens, max_turns=preset.loop.max_turns,
                         temperature=temperature, batch_groups=preset.loop.rollout_batch_groups,
                         decoder=preset.decoder)


def evaluate_only(base: LoadedModel, pieces: Pieces, store: ResultStore, *, console: Console,
                  commit: str | None) -> int:
    """Evaluate ``base`` as it is (method 'eval'), store and return the run id."""
    preset = pieces.preset
    engine = policy_engine(base, pieces, base.model, preset.eval_split, preset.eval_temperature)
    config = {**preset.summary(), "method": "eval", "prompt_tokens": len(engine.renderer.prefix_ids)}
    run_id = store.start_run(method="eval", env=pieces.env_id, split=preset.eval_split, model=base.name,
                             user_simulator=pieces.user_label, summarizer=None, preset=preset.name,
                             stand_ins=pieces.stand_ins(prompt=True, summarizer=False),
                             seed=preset.loop.seed, commit=commit, config=config)
    try:
        display = Display(console)
        with display.shown():
            results, wall, tokens = _evaluate_shown(display, "eval", pieces, engine)
        store.record_evaluation(run_id, 0, results, wall_s=wall, tokens=tokens)
    except BaseException:
        store.finish_run(run_id, "failed")
        raise
    store.finish_run(run_id, "finished")
    return run_id
