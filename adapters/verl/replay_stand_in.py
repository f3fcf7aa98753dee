"""A CI-only contrast source: a τ³ agent loop in which every other sibling replays the task's reference actions.

**A stand-in, not a policy.** A tiny random model (what CI can afford) never earns reward, so every
GRPO group would be all-zero, SGCD would get no success/failure contrast and SDPO no demonstration
— the end-to-end test would exercise nothing. This loop (agent name
:data:`REPLAY_AGENT_NAME`, entry in ``configs/agent_loops.yaml``) gives each group a mix:

- siblings with an even ``session_id`` (verl's index of the rollout within its group) are sampled
  by the model exactly as :class:`~adapters.verl.agent_loop.Tau3AirlineAgentLoop` does;
- siblings with an odd ``session_id`` replay the task's reference tool calls (upstream's
  ``actions``), one per turn, then a closing message with the task's ``communicate_info`` and
  ``###STOP###``. Each turn still goes to the real rollout server: a one-token request whose
  prompt is the context plus the reference turn, with vLLM's ``prompt_logprobs=0``, so the turn
  gets the log-probs the current weights give its tokens and the weight version the server holds;
  but the turn's tokens are the reference text, not a sample. The real env runs the calls and
  its real verifier scores the episode.

Replay episodes carry ``extra_fields["stand_in"] = "reference_replay"`` (sampled ones
``"sampled"``); their reward is a fixture number, never a τ³ result.
Never use this loop to train a model you report on.
"""

from __future__ import annotations

from typing import Any

from verl.workers.rollout.replica import TokenOutput

from adapters.verl.agent_loop import Tau3AirlineAgentLoop, _task_id
# imported here, not in the call: the env's executor threads import the same package concurrently
from sgcd_envs.tau3_airline.demonstration import reference_turns

REPLAY_AGENT_NAME = "tau3_airline_replay_stand_in"
VERSION_FIELDS = ("global_steps", "min_global_steps", "max_global_steps")


class ReplayServerStandIn:
    """Server manager of a replay sibling: answers with the next reference turn's tokens (a
    stand-in for a sample), scored by the real server (see the module docstring)."""

    def __init__(self, server_manager: Any, tokenizer: Any, turns: list[str]) -> None:
        self.server_manager, self.tokenizer, self.turns = server_manager, tokenizer, list(turns)

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any],
                       **kwargs: Any) -> TokenOutput:
        text = self.turns.pop(0) if self.turns else "###STOP###"
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        probe = await self.server_manager.generate(
            request_id=request_id, prompt_ids=[*prompt_ids, *ids],
            sampling_params={**sampling_params, "max_tokens": 1, "prompt_logprobs": 0}, **kwargs)
        scored = probe.extra_fields["prompt_logprobs"][len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(ids)]
        log_probs = [row[0] for row in scored] if sampling_params.get("logprobs") else None
        fields = {key: probe.extra_fields.get(key) for key in VERSION_FIELDS}
        return TokenOutput(token_ids=ids, log_probs=log_probs, stop_reason="completed", extra_fields=fields)


class ReferenceReplayStandInLoop(Tau3AirlineAgentLoop):
    """τ³ agent loop whose odd siblings replay the reference actions (CI contrast stand-in)."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any):
        replay = int(kwargs.get("session_id", 0)) % 2 == 1
        if replay:
            split = self.env_kwargs.get("split", "train")
            self.server_manager = ReplayServerStandIn(self.server_manager, self.tokenizer,
                                                      reference_turns(_task_id(kwargs), split))
        out = await super().run(sampling_params, **kwargs)
        out.extra_fields["stand_in"] = "reference_replay" if replay else "sampled"
        return out


__all__ = ["REPLAY_AGENT_NAME", "ReferenceReplayStandInLoop", "ReplayServerStandIn"]
