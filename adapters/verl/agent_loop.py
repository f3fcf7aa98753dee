"""τ³-airline as a verl 0.9.1 agent loop driving our Gymnasium env (SPEC §2, issue #5 item 5).

One ``run`` = one episode of ``gymnasium.make("sgcd_envs/Tau3Airline-v0")``:

1. ``env.reset(options={"task_id": ...})``; the prompt is our system message (the airline
   policy) + the env's observation (OpenAI chat messages), tokenised with verl's
   Continuous-Token builder and the env's tool schemas.
2. Loop: the rollout server generates the assistant turn from the running token ids; the raw
   decoded text is the env action (``env.step(text)``); the new tool / user messages the env
   appends are merged into the token stream with ``ct_merge_context_msg``.
3. The episode ends on the env's termination / truncation, on
   ``rollout.multi_turn.max_assistant_turns`` or when the response reaches ``rollout.response_length``.

Loss mask: ``response_mask`` is 1 on tokens the policy generated and 0 on tool results and user
turns (verl's ``align_response_metadata`` keeps it aligned with the merged tokens), so only
assistant tokens enter the loss. Reward: the env's verifier reward at termination becomes
``AgentLoopOutput.reward_score`` (verl then skips its reward function). The conversation, task
id and verifier parts go to ``extra_fields`` (stored with the trajectory in TransferQueue),
where the SGCD / SDPO trainers read sibling evidence.

Registered as ``tau3_airline_agent`` (``configs/agent_loops.yaml`` and the ``@register`` below).
Dataset rows select it with ``agent_name: tau3_airline_agent`` and carry
``extra_info: {task_id: "<id>"}`` (or a top-level ``task_id``).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import gymnasium

import sgcd_envs  # noqa: F401  (registers the sgcd_envs/* ids)
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

AGENT_NAME = "tau3_airline_agent"
ENV_ID = "sgcd_envs/Tau3Airline-v0"


def system_prompt(policy: str, tools: list[dict[str, Any]]) -> str:
    """The agent's system message: the airline policy, the tool names and the call format."""
    names = ", ".join(t["function"]["name"] for t in tools)
    return (
        f"{policy.strip()}\n\n# Tools\nYou can call: {names}.\n"
        'Call a tool with <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>. '
        "Text outside tool calls is sent to the user. Write ###STOP### when the conversation is over."
    )


def _task_id(kwargs: dict[str, Any]) -> str | None:
    extra = kwargs.get("extra_info") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    tid = kwargs.get("task_id", extra.get("task_id"))
    return None if tid is None else str(tid)


@register(AGENT_NAME)
class Tau3AirlineAgentLoop(AgentLoopBase):
    """verl agent loop over ``sgcd_envs/Tau3Airline-v0`` (see the module docstring).

    Extra constructor arguments (from ``agent_loops.yaml`` entries): ``env_id`` (default
    ``sgcd_envs/Tau3Airline-v0``) and ``env_kwargs`` (passed to ``gymnasium.make``, e.g.
    ``{"split": "train"}``).
    """

    def __init__(self, *args: Any, env_id: str = ENV_ID, env_kwargs: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.response_length = int(self.rollout_config.response_length)
        self.max_assistant_turns = self.rollout_config.multi_turn.get("max_assistant_turns") or None

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        env = gymnasium.make(self.env_id, **self.env_kwargs)
        task_id = _task_id(kwargs)
        seed = kwargs.get("seed")
        obs, info = env.reset(seed=None if seed is None else int(seed), options={"task_id": task_id} if task_id else None)
        tools = info["tools"]
        system = {"role": "system", "content": system_prompt(info["policy"], tools)}
        prompt_ids = await self.ct_build_initial_tokens([system, *obs], tools=tools)

        running: list[int] = list(prompt_ids)
        mask: list[int] = []
        logprobs: list[float] | None = None
        metrics: dict[str, Any] = {}
        request_id = uuid4().hex
        turns, reward, end_info, end_reason = 0, 0.0, {}, "response_length"
        while len(mask) < self.response_length:
            with simple_timer("generate_sequences", metrics):
                out = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=running, sampling_params=sampling_params
                )
            merged, mask, new_lp = await self.ct_merge_assistant_token(
                running, out.token_ids, mask,
                logprobs if logprobs is not None else ([] if out.log_probs else None),
                assistant_logprobs=out.log_probs or None,
            )
            running, logprobs = merged.token_ids, (new_lp if new_lp is not None else logprobs)
            turns += 1
            text = self.tokenizer.decode(out.token_ids, skip_special_tokens=True)
            n_before = len(obs)
            with simple_timer("tool_calls", metrics):
                obs, reward, terminated, truncated, step_info = await self.loop.run_in_executor(None, env.step, text)
            if terminated or truncated:
                end_info, end_reason = step_info, step_info.get("termination", "env")
                break
            if self.max_assistant_turns and turns >= self.max_assistant_turns:
                end_reason = "max_assistant_turns"
                break
            # obs[n_before] is the env's record of this assistant turn (already in `running`);
            # everything after it (tool results, the user's reply) is new context, mask 0.
            previous, updated = [system, *obs[: n_before + 1]], [system, *obs]
            merged, mask, new_lp = await self.ct_merge_context_msg(
                previous, updated, running, mask, logprobs, tools=tools
            )
            running, logprobs = merged.token_ids, (new_lp if new_lp is not None else logprobs)
        env.close()

        n_resp = len(mask)
        response_ids = running[len(running) - n_resp :]
        extra = {
            "task_id": info["task_id"],
            "termination": end_reason,
            "messages": obs,
            "prompt_messages": [system, *obs[:1]],
            "db_match": end_info.get("db_match"),
            "communicate_match": end_info.get("communicate_match"),
            "write_calls": end_info.get("write_calls"),
            "turn_scores": [],
            "tool_rewards": [],
        }
        return AgentLoopOutput(
            prompt_ids=list(prompt_ids),
            response_ids=response_ids[: self.response_length],
            response_mask=mask[: self.response_length],
            response_logprobs=logprobs[: self.response_length] if logprobs else None,
            reward_score=float(reward) if end_info else 0.0,
            num_turns=len(obs) + 1,
            metrics=metrics,
            extra_fields=extra,
        )
