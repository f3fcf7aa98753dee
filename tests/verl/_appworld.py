"""Run one fixture-task episode through the real AppWorld agent loop (stand-in rollout server).

Shared by test_appworld_agent_loop.py and test_appworld_teacher.py. The scripted server and the
byte-level tokenizer are stand-ins (``_rollout_stand_ins.py``); the loop, verl's Continuous-Token
builder, the AppWorld engine and its evaluation are real.
"""

from __future__ import annotations

import asyncio

import hydra
from _rollout_stand_ins import ScriptedRolloutServerStub, compose_config
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap

from adapters.verl import agent_loop as al
from sgcd_envs.appworld.fixture import FIXTURE_PASSWORD, FIXTURE_TASK_ID, SUPERVISOR

LOGIN = (f'token = apis.simple_note.login(username="{SUPERVISOR["email"]}", '
         f'password="{FIXTURE_PASSWORD}")["access_token"]\nprint("logged in as fixture supervisor")')
FINISH = (
    "count = len(apis.simple_note.search_notes(access_token=token, page_limit=20))\n"
    'apis.simple_note.create_note(access_token=token, title="hello", content="x")\n'
    "apis.supervisor.complete_task(answer=count)"
)
"""The fixture solution in two turns: the second only works if the first turn's state survived."""


def run_episode(entry, tokenizer, turns: list[str], *overrides: str):
    """(AgentLoopOutput, stand-in server) of one episode of the fixture task."""
    cfg = compose_config(*overrides)
    server = ScriptedRolloutServerStub(tokenizer, turns)

    async def episode():
        # instantiated inside the running event loop with the kwargs verl's AgentLoopWorker passes
        loop = hydra.utils.instantiate(
            config=entry, trainer_config=DictConfigWrap(cfg), server_manager=server, tokenizer=tokenizer,
            processor=None, hf_model_type=None, dataset_cls=None, data_config=DictConfigWrap(cfg.data),
            tools=ToolListWrap([]),
        )
        assert isinstance(loop, al.AppWorldAgentLoop) and loop.env_kwargs["split"] == "fixture"
        return await loop.run({"temperature": 1.0}, extra_info={"task_id": FIXTURE_TASK_ID})

    return asyncio.run(episode()), server


def pooled():
    return [e for bucket in al._POOL.values() for e in bucket]
