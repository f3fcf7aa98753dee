"""Envs from outside the package (the ``sgcd_envs`` entry-point group), tested for real: each test
writes a small distribution (a package + its ``.dist-info`` with ``entry_points.txt``) into a
temp folder and runs a fresh interpreter with that folder on ``PYTHONPATH``, so
``importlib.metadata`` finds it as it would a pip-installed one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.local.helpers import tiny_llama

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from sgcd_bench.cli import main; main()"]
"""``sgcd-bench`` as its console script runs it (``sgcd_bench.cli:main``), in this venv."""

CALC_ID = "sgcd_envs/Calc-v0"

CALC_MODULE = '''
"""A two-tool calculator env from outside sgcd-bench: ``add`` (a read) and ``save_result`` (a write)."""

from dataclasses import dataclass
from typing import Any

import sgcd_envs
from sgcd_envs.core import ToolCall, ToolSpec, ToolUseEnv, function_schema


@dataclass(frozen=True)
class CalcTask:
    id: str
    request: str
    target: int | None  # None: a question whose answer must not be saved

    @property
    def category(self) -> str:
        return "no_write" if self.target is None else "action"


TASKS = {
    "train": [CalcTask("t1", "Add 2 and 3 and save the result.", 5), CalcTask("t2", "What is 4 plus 4?", None)],
    "test": [CalcTask("e1", "Add 1 and 6 and save the result.", 7), CalcTask("e2", "What is 2 plus 2?", None)],
}


def add(a: int, b: int) -> str:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """


def save_result(value: int) -> str:
    """Save a result for the user.

    Args:
        value: the number to save.
    """


class CalcUser:
    """Stand-in user: states the request, ends once asked whether there is anything else."""

    name = "calc-stand-in"

    def __init__(self, max_user_turns: int = 1) -> None:
        self.max_user_turns = max_user_turns

    def reset(self, task: CalcTask, seed: int | None = None) -> str:
        return task.request

    def respond(self, messages: list[dict[str, Any]]) -> str:
        return "###STOP###" if "anything else" in messages[-1]["content"].lower() else "Please go on."


class CalcEnv(ToolUseEnv):
    """Passes an episode whose saved result is the task's target (nothing saved for a question)."""

    def __init__(self, split: str = "train", user: Any = None, max_turns: int = 4) -> None:
        tools = [ToolSpec(function_schema(add)), ToolSpec(function_schema(save_result), writes=True)]
        super().__init__(tools, user or CalcUser(), max_turns=max_turns)
        self.tasks = {t.id: t for t in TASKS[split]}
        self.saved: int | None = None

    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def state_fingerprint(self) -> int | None:
        return self.saved

    def _begin_episode(self, options: dict[str, Any]) -> tuple[CalcTask, dict[str, Any]]:
        ids = self.task_ids()
        task = self.tasks[options.get("task_id") or ids[int(self.np_random.integers(len(ids)))]]
        self.saved = None
        return task, {"task_id": task.id, "category": task.category, "policy": "Do the user's sums."}

    def _run_tool(self, call: ToolCall) -> str:
        if call.name == "add":
            return str(call.arguments["a"] + call.arguments["b"])
        self.saved = call.arguments["value"]
        return "saved"

    def _score(self, termination: str) -> dict[str, Any]:
        match = self.saved == self._task.target
        return {"reward": float(match), "db_match": match, "category": self._task.category}


def register() -> None:
    sgcd_envs.register_env(
        "sgcd_envs/Calc-v0", entry_point="calcpkg.envs:CalcEnv", description="an outside calculator",
        alias="calc", title="Calculator", write_tools=("save_result",), task_categories=sgcd_envs.TASK_CATEGORIES,
        takes_user=True, turn_budget="max_turns", stand_in_user="calcpkg.envs:CalcUser",
    )
'''


def write_dist(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write distribution ``name`` 0.1 into ``root``: ``modules`` (dotted name → source) and a
    ``.dist-info`` declaring ``entry_points`` in the ``sgcd_envs`` group."""
    for module, source in modules.items():
        path = root.joinpath(*module.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for package in [p for p in path.parents if p != root and root in p.parents]:
            (package / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[sgcd_envs]\n{lines}")


def run(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``args`` in a fresh interpreter that sees ``root`` (and this checkout) on ``PYTHONPATH``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def calc_dist(root: Path) -> Path:
    write_dist(root, "calcpkg", {"calc": "calcpkg.envs:register"}, {"calcpkg.envs": CALC_MODULE})
    return root


BROKEN_MODULE = 'raise ImportError("needs the frobnicator package")\n'

CLASH_MODULE = '''
import sgcd_envs

sgcd_envs.register_env("sgcd_envs/ClashExtra-v0", entry_point="clashpkg.envs:Nothing", alias="clash-extra")
sgcd_envs.register_env("sgcd_envs/TinyShop-v0", entry_point="clashpkg.envs:Shop")
'''


def test_an_installed_plugin_env_is_listed_built_and_run(tmp_path):
    root = calc_dist(tmp_path)
    listed = run(root, *CLI, "envs")
    assert listed.returncode == 0, listed.stderr
    assert CALC_ID in listed.stdout and "an outside calculator" in listed.stdout
    assert "sgcd_envs/TinyShop-v0" in listed.stdout and "broken" not in listed.stdout
    script = textwrap.dedent(f"""
        import json, sys
        import gymnasium, sgcd_envs
        lazy = "calcpkg.envs" not in sys.modules  # importing sgcd_envs loads no plugin
        entry = sgcd_envs.env_entry("calc")
        env = gymnasium.make({CALC_ID!r}, split="test").unwrapped
        _, info = env.reset(seed=0, options={{"task_id": "e1"}})
        env.step('<tool_call>{{"name": "save_result", "arguments": {{"value": 7}}}}</tool_call>')
        *_, end = env.step("Saved. Anything else?")
        print(json.dumps([lazy, entry.id, entry.plugin, sorted(env.tools), end["reward"]]))
    """)
    made = run(root, sys.executable, "-c", script)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == [True, CALC_ID, "calc (calcpkg 0.1)", ["add", "save_result"], 1.0]


def test_an_installed_plugin_env_gets_the_shared_suite(tmp_path):
    suite = run(calc_dist(tmp_path), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/envs/test_registry_suite.py", "-k", "Calc")
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert " passed" in suite.stdout and " 0 passed" not in suite.stdout


@pytest.fixture
def model_dir(tmp_path, tokenizer):
    folder = tmp_path / "tiny"
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_eval_on_an_installed_plugin_env(tmp_path, model_dir):
    root = calc_dist(tmp_path / "site")
    evaluated = run(root, *CLI, "eval", "--env", "calc", "--model", str(model_dir), "--out", str(tmp_path / "runs"),
                    "--max-turns", "1", "--max-new-tokens", "3")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert f"Calculator leaderboard ({CALC_ID})" in evaluated.stdout
    assert "calc-stand-in, an offline stand-in" in evaluated.stdout


def test_a_broken_plugin_is_reported_and_the_others_still_load(tmp_path):
    calc_dist(tmp_path)
    write_dist(tmp_path, "brokenpkg", {"broken": "brokenpkg.envs"}, {"brokenpkg.envs": BROKEN_MODULE})
    listed = run(tmp_path, *CLI, "envs")
    assert listed.returncode == 0, listed.stderr
    assert CALC_ID in listed.stdout and "sgcd_envs/TinyShop-v0" in listed.stdout
    report = [line for line in listed.stdout.splitlines() if "broken" in line]
    assert report == ["broken env plugin: broken (brokenpkg 0.1) = brokenpkg.envs: "
                      "ImportError: needs the frobnicator package"]
    unknown = run(tmp_path, *CLI, "eval", "--env", "frobnicate")
    assert unknown.returncode == 1
    assert "Unknown environment 'frobnicate'" in unknown.stdout
    assert "An env plugin failed to load and may have provided it: broken (brokenpkg 0.1)" in unknown.stdout


def test_a_plugin_registering_a_taken_id_is_broken_naming_both(tmp_path):
    write_dist(tmp_path, "clashpkg", {"clash": "clashpkg.envs"}, {"clashpkg.envs": CLASH_MODULE})
    script = ("import sgcd_envs; print(sgcd_envs.env_ids()); "
              "print(*sgcd_envs.broken_plugins(), sep='\\n'); print(sgcd_envs.env_entry('tiny-shop').entry_point)")
    out = run(tmp_path, sys.executable, "-c", script)
    assert out.returncode == 0, out.stderr
    ids, broken, shop = out.stdout.splitlines()
    assert "sgcd_envs/ClashExtra-v0" not in ids  # what the failed plugin had registered is dropped
    assert broken == ("clash (clashpkg 0.1) = clashpkg.envs: ValueError: env id 'sgcd_envs/TinyShop-v0' is "
                      "registered twice: by package sgcd_envs, entry point sgcd_envs.tiny_shop.env:TinyShopEnv "
                      "and by plugin clash (clashpkg 0.1), entry point clashpkg.envs:Shop")
    assert shop == "sgcd_envs.tiny_shop.env:TinyShopEnv"


SLOW_MODULE = '''
import time

import calcpkg.envs

CALLS = []


def register() -> None:
    CALLS.append(1)
    time.sleep(0.3)  # a slow plugin: the other threads' lookups must wait for it, not see it half-loaded
    calcpkg.envs.register()
'''

THREADS_SCRIPT = """
import threading
import sgcd_envs
import slowpkg.envs

barrier, found, errors = threading.Barrier(8), [], []

def look_up():
    barrier.wait()
    try:
        found.append(sgcd_envs.env_entry("calc").id)
    except Exception as err:
        errors.append(repr(err))

threads = [threading.Thread(target=look_up) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(len(slowpkg.envs.CALLS), sorted(set(found)), len(found), errors)
"""


def test_concurrent_first_lookups_load_the_plugins_once(tmp_path):
    write_dist(tmp_path, "slowpkg", {"calc": "slowpkg.envs:register"},
               {"calcpkg.envs": CALC_MODULE, "slowpkg.envs": SLOW_MODULE})
    out = run(tmp_path, sys.executable, "-c", THREADS_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"1 ['{CALC_ID}'] 8 []"


def test_a_plugin_entry_point_that_is_not_callable_is_broken(tmp_path):
    write_dist(tmp_path, "oddpkg", {"odd": "oddpkg.envs:VALUE"}, {"oddpkg.envs": "VALUE = 3\n"})
    out = run(tmp_path, sys.executable, "-c", "import sgcd_envs; print(*sgcd_envs.broken_plugins())")
    assert out.stdout.strip() == ("odd (oddpkg 0.1) = oddpkg.envs:VALUE: TypeError: oddpkg.envs:VALUE is not a "
                                  "module or a callable (its type: int)")
