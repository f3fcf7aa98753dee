"""The real AppWorld engine behind the real process boundary, on sgcd-bench's fixture task.

One env (one worker process) is shared by the tests of this module to keep the time modest;
each test starts its own episode with ``reset``. Tests that restart the worker say so.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from sgcd_envs.appworld import (
    AppWorldDataError,
    AppWorldEnv,
    AppWorldHungError,
    UnknownTaskError,
)
from sgcd_envs.appworld.fixture import FIXTURE_PASSWORD, FIXTURE_TASK_ID, SOLUTION_CODE, SUPERVISOR
from sgcd_envs.appworld.setup import setup_appworld

LOGIN = (f'token = apis.simple_note.login(username="{SUPERVISOR["email"]}", '
         f'password="{FIXTURE_PASSWORD}")["access_token"]\nprint("logged in")')
AFTER_LOGIN = (
    "count = len(apis.simple_note.search_notes(access_token=token, page_limit=20))\n"
    'apis.simple_note.create_note(access_token=token, title="hello", content="x")\n'
    "apis.supervisor.complete_task(answer=count)"
)
"""The solution split in two: the second half only works if the first half's state survived."""

MAX_STEPS = 6
ENV_ID = "sgcd_envs/AppWorld-v0"


@pytest.fixture(scope="module")
def env(fixture_root: Path):
    environment = AppWorldEnv("fixture", root=fixture_root, max_steps=MAX_STEPS, code_timeout_s=1,
                              call_timeout_s=5, startup_timeout_s=120)
    yield environment
    environment.close()


def _episode(env: AppWorldEnv, *actions):
    env.reset(options={"task_id": FIXTURE_TASK_ID})
    return [env.step(action) for action in actions]


def test_reset_info_and_observation(env):
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert [m["role"] for m in obs] == ["user"]
    assert "FIXTURE task" in obs[0]["content"] and SUPERVISOR["email"] in obs[0]["content"]
    assert info["task_id"] == FIXTURE_TASK_ID and info["split"] == "fixture" and info["fixture"] is True
    assert info["scenario_id"] == "sgcdfixture" and info["difficulty"] == 1 and info["category"] == "difficulty_1"
    assert "simple_note" in info["app_descriptions"] and info["policy"]
    assert env.task_ids() == [FIXTURE_TASK_ID]  # from appworld.load_task_ids in the worker


def test_successful_episode_reward_1(env):
    (obs, reward, terminated, truncated, info), = _episode(env, f"Let me do it.\n```python\n{SOLUTION_CODE}```")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert obs[-1] == {"role": "user", "content": "2\n"}  # the printed count, AppWorld's output
    assert info["termination"] == "task_completed" and info["success"] is True
    assert (info["num_tests"], info["num_passed"], info["num_failed"], info["pass_fraction"]) == (3, 3, 0, 1.0)
    assert info["fixture"] is True and info["worker_restarts"] == 0


def test_failing_episode_reward_0_with_failure_counts(env):
    (_, reward, terminated, _, info), = _episode(env, "apis.supervisor.complete_task(answer=99)")
    assert (reward, terminated, info["success"]) == (0.0, True, False)
    assert (info["num_passed"], info["num_failed"]) == (0, 3)
    assert "99" in info["failures"][0]["trace"] and info["failures"][0]["requirement"].startswith("answer")


def test_raising_code_is_an_error_observation_and_the_episode_continues(env):
    first, second = _episode(env, "```python\nundefined_name + 1\n```", SOLUTION_CODE)
    obs, reward, terminated, truncated, _ = first
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert obs[-1]["content"].startswith("Execution failed. Traceback:") and "NameError" in obs[-1]["content"]
    assert second[1] == 1.0 and second[2] is True


def test_action_without_code_changes_nothing(env):
    first, second = _episode(env, "```json\n{\"name\": \"x\"}\n```", SOLUTION_CODE)
    assert "no ```python block" in first[0][-1]["content"] and first[2] is False
    assert second[1] == 1.0
    assert [e["code"] for e in env.episode_record] == [SOLUTION_CODE]


def test_max_steps_truncates_and_evaluates(env):
    results = _episode(env, *["print('thinking')"] * MAX_STEPS)
    assert all(not r[2] and not r[3] for r in results[:-1])
    _, reward, terminated, truncated, info = results[-1]
    assert (reward, terminated, truncated, info["termination"]) == (0.0, False, True, "max_steps")
    assert info["evaluated"] and info["num_failed"] == 3


def test_infinite_loop_hits_appworlds_timeout_without_restart(env):
    env.reset()
    pid = env.worker_pid
    obs, reward, terminated, truncated, info = env.step("while True:\n    pass")
    assert "timed out after 1 seconds" in obs[-1]["content"] and not (terminated or truncated)
    assert env.worker_pid == pid and info["worker_restarts"] == 0
    assert env.step(SOLUTION_CODE)[1] == 1.0


def test_hung_world_is_killed_restarted_and_replayed(env):
    """Code stuck in C ignores AppWorld's SIGALRM timeout: our call timeout kills the worker."""
    env.reset()
    pid = env.worker_pid
    env.step(LOGIN)
    obs, reward, terminated, truncated, info = env.step("sum(range(10**15))")
    assert "did not answer within 5 s" in obs[-1]["content"] and "replaying your 1 earlier" in obs[-1]["content"]
    assert not (terminated or truncated) and info["worker_restarts"] == 1 and env.worker_pid != pid
    _, reward, terminated, _, info = env.step(AFTER_LOGIN)  # uses `token` from the replayed login
    assert (reward, terminated, info["worker_restarts"]) == (1.0, True, 1)
    assert [e["status"] for e in env.episode_record] == ["ok", "hung", "ok"]


def test_worker_sigkilled_between_steps_is_restored(env):
    env.reset()
    env.step(LOGIN)
    pid = env.worker_pid
    os.kill(pid, signal.SIGKILL)
    _, reward, terminated, _, info = env.step(AFTER_LOGIN)
    assert (reward, terminated, info["worker_restarts"]) == (1.0, True, 1)
    assert env.worker_pid not in (None, pid)


def test_worker_sigkilled_during_a_step_is_restored_and_the_action_retried(env):
    env.reset()
    env.step(LOGIN)
    pid = env.worker_pid
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    obs, _, terminated, truncated, info = env.step("while True:\n    pass")
    killer.join()
    # retried once in the restored world, where AppWorld's own timeout stops it
    assert "timed out after 1 seconds" in obs[-1]["content"] and not (terminated or truncated)
    assert info["worker_restarts"] == 1
    assert env.step(AFTER_LOGIN)[1] == 1.0
    assert [e["status"] for e in env.episode_record] == ["ok", "worker_died", "ok", "ok"]


def test_replay_that_diverges_ends_the_episode(env):
    """A recorded output that a fresh world cannot reproduce (the worker's pid) stops the replay."""
    env.reset()
    env.step("import os\nprint(os.getpid())")
    os.kill(env.worker_pid, signal.SIGKILL)
    obs, reward, terminated, truncated, info = env.step("print(1)")
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["termination"] == "replay_diverged" and info["evaluated"] is False
    assert "could not be restored" in obs[-1]["content"]


def test_gymnasium_env_checker(env):
    check_env(env, skip_render_check=True)


def test_registered_id_makes_the_env(fixture_root):
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="sgcd_envs.appworld.env:AppWorldEnv")
    made = gym.make(ENV_ID, split="fixture", root=fixture_root)
    try:
        assert isinstance(made.unwrapped, AppWorldEnv) and made.unwrapped.split == "fixture"
    finally:
        made.close()


def test_setup_is_idempotent_and_reports_the_data(fixture_root):
    report = setup_appworld(root=fixture_root)
    assert not (report.created_venv or report.installed_package or report.unpacked_apps)
    assert report.splits == {"fixture": 1} and "missing splits: train, dev" in report.data_message


# Kept last among the shared-env tests: it leaves the env without a worker.
def test_too_many_restarts_end_the_episode(env):
    env.reset()
    env.max_worker_restarts = 0
    try:
        os.kill(env.worker_pid, signal.SIGKILL)
        _, reward, _, truncated, info = env.step("print(1)")
    finally:
        env.max_worker_restarts = 2
    assert (reward, truncated, info["termination"]) == (0.0, True, "worker_lost")
    assert env.worker_pid is None  # the next reset starts a fresh worker (as the first reset did)



def test_unknown_task_id_suggests_close_matches(env):
    with pytest.raises(UnknownTaskError, match="Did you mean 'sgcdfixture_1'"):
        env.reset(options={"task_id": "sgcdfixture_2"})


def test_missing_split_in_real_root(fixture_root):
    with pytest.raises(AppWorldDataError, match=r"no split 'dev'.*\['fixture'\]"):
        AppWorldEnv("dev", root=fixture_root)


def test_hung_startup_raises_a_clear_error(fixture_root):
    env = AppWorldEnv("fixture", root=fixture_root, startup_timeout_s=0.2)
    try:
        with pytest.raises(AppWorldHungError, match="did not answer.*raise startup_timeout_s"):
            env.reset()
    finally:
        env.close()
