"""Adding an env = one module + one ``register_env`` call: a toy env that only this file knows
(two tools, a verifier, a stand-in user) runs through `sgcd-bench eval` and a tiny `compare grpo`,
and passes the shared registry suite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

import sgcd_envs
from leaderboards.store import ResultStore, StandIns
from sgcd_bench.presets import get_preset
from sgcd_bench.run import make_pieces
from sgcd_envs.core import ToolCall, ToolSpec, ToolUseEnv, function_schema
from tests.cli.helpers import invoke, tiny_model_dir

TOY_ID = "sgcd_envs/ToyCounter-v0"
TOY_ALIAS = "toy-counter"


@dataclass(frozen=True)
class CounterTask:
    id: str
    request: str
    target: int

    @property
    def category(self) -> str:
        return "action" if self.target else "no_write"


TASKS = {
    "train": [CounterTask("t1", "Please add 2 to my counter.", 2), CounterTask("t2", "What is my counter?", 0)],
    "test": [CounterTask("e1", "Please add 3 to my counter.", 3), CounterTask("e2", "Read my counter.", 0)],
}


def get_counter() -> str:
    """Read the counter."""


def add_to_counter(by: int) -> str:
    """Add to the counter.

    Args:
        by: how much to add.
    """


class ToyUser:
    """TEST STAND-IN user: states the task's request and ends the conversation once the agent
    asks whether there is anything else."""

    name = "toy-stand-in"

    def __init__(self, max_user_turns: int = 1) -> None:
        self.max_user_turns = max_user_turns

    def reset(self, task: CounterTask, seed: int | None = None) -> str:
        return task.request

    def respond(self, messages: list[dict[str, Any]]) -> str:
        return "###STOP###" if "anything else" in messages[-1]["content"].lower() else "Please go on."


class ToyCounterEnv(ToolUseEnv):
    """A counter the agent reads (``get_counter``) and adds to (``add_to_counter``, a write);
    the verifier passes an episode whose counter ends at the task's target."""

    def __init__(self, split: str = "train", user: Any = None, max_turns: int = 4) -> None:
        tools = [ToolSpec(function_schema(get_counter)), ToolSpec(function_schema(add_to_counter), writes=True)]
        super().__init__(tools, user or ToyUser(), max_turns=max_turns)
        if split not in TASKS:
            raise ValueError(f"Unknown split {split!r}. Choose one of: {', '.join(TASKS)}")
        self.tasks = {t.id: t for t in TASKS[split]}
        self.counter = 0

    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def state_fingerprint(self) -> int:
        return self.counter

    def _begin_episode(self, options: dict[str, Any]) -> tuple[CounterTask, dict[str, Any]]:
        ids = self.task_ids()
        task = self.tasks[options.get("task_id") or ids[int(self.np_random.integers(len(ids)))]]
        self.counter = 0
        return task, {"task_id": task.id, "category": task.category, "policy": "Keep the user's counter."}

    def _run_tool(self, call: ToolCall) -> str:
        if call.name == "add_to_counter":
            self.counter += call.arguments["by"]
        return str(self.counter)

    def _score(self, termination: str) -> dict[str, Any]:
        match = self.counter == self._task.target
        return {"reward": float(match), "db_match": match, "category": self._task.category}


@pytest.fixture
def toy_env():
    sgcd_envs.register_env(
        TOY_ID, entry_point=f"{ToyCounterEnv.__module__}:ToyCounterEnv", description="a toy counter",
        alias=TOY_ALIAS, title="Toy counter", write_tools=("add_to_counter",),
        task_categories=sgcd_envs.TASK_CATEGORIES, takes_user=True, turn_budget="max_turns", stand_in_user=ToyUser,
    )
    yield TOY_ID
    sgcd_envs.unregister_env(TOY_ID)


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    folder = tmp_path / "tiny"
    tiny_model_dir(folder, tokenizer)
    return folder


def test_the_registration_is_all_the_run_wiring_reads(toy_env, tmp_path):
    pieces = make_pieces(get_preset("cpu"), toy_env, llm_user=None, llm_summarizer=None, cache_dir=tmp_path)
    assert pieces.summarizer.write_tools == {"add_to_counter"}
    assert pieces.user_label == "toy-stand-in" and pieces.user_is_stand_in
    env = pieces.make_env("test").unwrapped
    assert isinstance(env.user, ToyUser) and env.max_turns == get_preset("cpu").loop.max_turns


def test_the_toy_env_passes_the_shared_registry_suite(toy_env):
    from tests.envs import test_registry_suite as suite  # a module: pytest collects nothing from it here

    for check in suite.SUITE:
        check(toy_env)


def test_eval_and_compare_on_a_toy_env(toy_env, model_dir, tmp_path):
    out = tmp_path / "runs"
    sizes = ("--model", str(model_dir), "--out", str(out), "--max-turns", "1", "--max-new-tokens", "3")
    evaluated = invoke("eval", "--env", TOY_ALIAS, *sizes)
    assert evaluated.exit_code == 0, evaluated.output
    assert "Toy counter leaderboard (sgcd_envs/ToyCounter-v0)" in evaluated.output
    assert "toy-stand-in, an offline stand-in" in evaluated.output
    compared = invoke("compare", "grpo", "--env", TOY_ALIAS, "--steps", "1", "--group-size", "2",
                      "--rollout-batch-groups", "1", *sizes)
    assert compared.exit_code == 0, compared.output
    with ResultStore(out / "results.sqlite") as store:
        runs = store.runs(env=toy_env)
        assert [r.method for r in runs] == ["eval", "do-nothing", "grpo"]
        assert {r.stand_ins for r in runs} == {StandIns(user=True)}  # the cpu preset's prompt is the faithful one
        baseline = store.episodes(store.latest_evaluation(runs[1].id).id)
    assert [(e.task_id, e.category, e.reward, e.db_match, e.write_calls) for e in baseline] == [
        ("e1", "action", 0.0, False, 0), ("e2", "no_write", 1.0, True, 0)]
