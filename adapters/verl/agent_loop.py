"""Our Gymnasium envs as verl 0.9.1 agent loops (SPEC §2, issue #5 item 5).

:class:`GymEnvAgentLoop` is the shared episode driver; each env adds a thin subclass with its
system prompt, tool schemas and ``extra_fields``:

==========================  ====================  ===========================================
agent name                  class                 env
==========================  ====================  ===========================================
``tau3_airline_agent``      Tau3AirlineAgentLoop  ``sgcd_envs/Tau3Airline-v0`` (tool calls)
``tau2_retail_agent``       Tau2RetailAgentLoop   ``sgcd_envs/Tau2Retail-v0`` (tool calls)
``tau2_telecom_agent``      Tau2TelecomAgentLoop  ``sgcd_envs/Tau2Telecom-v0`` (tool calls, dual control)
``appworld_agent``          AppWorldAgentLoop     ``sgcd_envs/AppWorld-v0`` (Python code actions)
==========================  ====================  ===========================================

One ``run`` = one episode:

1. ``env.reset(options={"task_id": ...})``; the prompt is the loop's system message + the env's
   observation (OpenAI chat messages), tokenised with verl's Continuous-Token builder (and the
   env's tool schemas, if it has any).
2. Loop: the rollout server generates the assistant turn from the running token ids; the raw
   decoded text is the env action (``env.step(text)``); the messages the env appends (τ³: tool
   results and the user's reply; AppWorld: a user message with AppWorld's output) are merged
   into the token stream with ``ct_merge_context_msg``.
3. The episode ends on the env's termination / truncation, on
   ``rollout.multi_turn.max_assistant_turns`` or when the response reaches ``rollout.response_length``.

Loss mask: ``response_mask`` is 1 on tokens the policy generated and 0 on every env-written
token (verl's ``align_response_metadata`` keeps it aligned with the merged tokens), so only
assistant tokens enter the loss. Reward: the env's final reward (τ³: the verifier; AppWorld:
1.0 iff all of AppWorld's state-based tests pass) becomes ``AgentLoopOutput.reward_score`` (verl
then skips its reward function); an episode cut by the agent loop (turn / length cap) before the
env ended was never evaluated and gets 0. The conversation, task id, env id and verifier details
go to ``extra_fields`` (stored with the trajectory in TransferQueue), where the SGCD / SDPO
trainers read sibling evidence and pick the env's teacher context; ``extra_fields["feedback"]``
carries the env's failure text where it has one (AppWorld's failed test requirements), for
SDPO's feedback reprompt. It is deliberately not
put in ``reward_extra_info``: verl averages those values in validation metrics, and text would
break that. The rollout server's per-turn fields are folded over the turns
(:func:`merge_turn_fields`) into ``extra_fields`` too: ``min_global_steps`` / ``max_global_steps``,
the weight versions verl's trainer tags every trajectory with (it fails on missing ones), and the
speculative-decoding counters when the server reports them.

Env calls (``make``, ``reset``, ``step``) run in the event loop's executor: AppWorld's start a
worker process and load a world (seconds), which must not block the other episodes of the
same ``AgentLoopWorker``. With ``reuse_envs`` (AppWorld's default) finished envs go back to a
per-process pool keyed by (env id, env kwargs) and the next episode ``reset``s one of them, so a
worker process is started once per concurrent episode slot, not once per episode.

Dataset rows select a loop with ``agent_name: <agent name>`` and carry
``extra_info: {task_id: "<id>"}`` (or a top-level ``task_id``). verl's workers register the loops
from ``configs/agent_loops.yaml``, whose entries also give each loop its ``env_kwargs``; the
:func:`register_default` decorators below add a bare entry only for a name the registry lacks
(they run when a worker first imports this module, after it has read the yaml: the yaml wins).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from uuid import uuid4

import gymnasium
from omegaconf import DictConfig, ListConfig, OmegaConf

import sgcd_envs  # noqa: F401  (registers the sgcd_envs/* ids)
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, _agent_loop_registry
from verl.utils.profiler import simple_timer

AGENT_NAME = "tau3_airline_agent"
ENV_ID = "sgcd_envs/Tau3Airline-v0"
RETAIL_AGENT_NAME = "tau2_retail_agent"
RETAIL_ENV_ID = "sgcd_envs/Tau2Retail-v0"
TELECOM_AGENT_NAME = "tau2_telecom_agent"
TELECOM_ENV_ID = "sgcd_envs/Tau2Telecom-v0"
APPWORLD_AGENT_NAME = "appworld_agent"
APPWORLD_ENV_ID = "sgcd_envs/AppWorld-v0"
MAX_FEEDBACK_CHARS = 2000
"""Cap on the failure text put in ``extra_fields["feedback"]``."""


# -- prompts and small pure helpers ---------------------------------------------------------
def system_prompt(policy: str, tools: list[dict[str, Any]]) -> str:
    """A τ domain's system message (airline, retail): the domain policy, the tool names and the call format."""
    names = ", ".join(t["function"]["name"] for t in tools)
    return (
        f"{policy.strip()}\n\n# Tools\nYou can call: {names}.\n"
        'Call a tool with <tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>. '
        "Text outside tool calls is sent to the user. Write ###STOP### when the conversation is over."
    )


def appworld_system_prompt(policy: str, app_descriptions: Mapping[str, str]) -> str:
    """AppWorld's system message: the env's action-format policy and the task's apps (one line each)."""
    apps = "\n".join(f"- {name}: {str(text).strip()}" for name, text in sorted(app_descriptions.items()))
    return (
        f"{policy.strip()}\n\n# Apps\n{apps or '(none listed)'}\n\n"
        "Reply with one ```python block per turn; you see its output in the next message."
    )


def appworld_feedback(end_info: Mapping[str, Any], max_chars: int = MAX_FEEDBACK_CHARS) -> str | None:
    """AppWorld's failed test requirements as text, or ``None`` if it passed / was not evaluated."""
    failures = end_info.get("failures") or []
    if not end_info.get("evaluated") or not failures:
        return None
    lines = [f"AppWorld's tests: {end_info.get('num_failed', len(failures))} of "
             f"{end_info.get('num_tests', '?')} failed."]
    lines += [f"- {f.get('requirement', '').strip()}" for f in failures]
    text = "\n".join(lines)
    return text if len(text) <= max_chars else text[:max_chars] + " ...[cut]"


def _task_id(kwargs: dict[str, Any]) -> str | None:
    extra = kwargs.get("extra_info") or {}
    if isinstance(extra, str):
        extra = json.loads(extra)
    tid = kwargs.get("task_id", extra.get("task_id"))
    return None if tid is None else str(tid)


WEIGHT_VERSION_KEYS = ("min_global_steps", "max_global_steps")
"""Weight versions a trajectory was generated across; verl's trainer tags each trajectory with them."""
SPEC_DECODE_KEYS = ("spec_num_draft_tokens", "spec_num_accepted_tokens", "spec_num_verify_steps")
"""Per-request speculative-decoding counters (summed over the turns, as verl's ToolAgentLoop does)."""


def merge_turn_fields(episode: Mapping[str, Any], turn: Mapping[str, Any]) -> dict[str, Any]:
    """Fold one ``generate`` call's ``TokenOutput.extra_fields`` into the episode's server fields.

    The episode spans every turn's weights: ``min_global_steps`` is the min of the turns' mins,
    ``max_global_steps`` the max of their maxes (``None`` until a turn reports one). verl's
    ToolAgentLoop keeps the first turn's min and the latest turn's max, the same thing for the
    non-decreasing versions a server reports; unlike it, version 0 counts here. Speculative-decoding
    counters are summed. ``episode`` is not modified.
    """
    merged = dict(episode)
    for key, pick in (("min_global_steps", min), ("max_global_steps", max)):
        values = [v for v in (merged.get(key), turn.get(key)) if v is not None]
        merged[key] = pick(values) if values else None
    for key in SPEC_DECODE_KEYS:
        if key in turn:
            merged[key] = int(merged.get(key, 0)) + int(turn[key])
    return merged


def _plain(value: Any) -> Any:
    """OmegaConf containers (hydra passes the yaml's ``env_kwargs`` as DictConfig) → plain python."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def register_default(agent_name: str) -> Callable[[type[AgentLoopBase]], type[AgentLoopBase]]:
    """Class decorator: register the loop under ``agent_name`` unless an entry is already there.

    verl's ``@register`` overwrites, and a worker imports this module only at its first episode,
    after ``AgentLoopWorker.__init__`` has put the ``agent_loops.yaml`` entries (with their
    ``env_kwargs``) into the registry; so the yaml wins and this is only the fallback entry.
    """
    def decorator(cls: type[AgentLoopBase]) -> type[AgentLoopBase]:
        _agent_loop_registry.setdefault(agent_name, {"_target_": f"{cls.__module__}.{cls.__qualname__}"})
        return cls

    return decorator


# -- env pool (per process) -------------------------------------------------------------------
_POOL: dict[str, list[gymnasium.Env]] = {}
_POOL_LOCK = threading.Lock()


def _pool_key(env_id: str, env_kwargs: Mapping[str, Any]) -> str:
    return json.dumps([env_id, dict(env_kwargs)], sort_keys=True, default=str)


def close_pooled_envs() -> int:
    """Close every idle pooled env (their worker processes too); returns how many were closed."""
    with _POOL_LOCK:
        envs = [e for bucket in _POOL.values() for e in bucket]
        _POOL.clear()
    for env in envs:
        env.close()
    return len(envs)


# -- the shared loop ------------------------------------------------------------------------
class GymEnvAgentLoop(AgentLoopBase):
    """verl agent loop over one of our Gymnasium envs (see the module docstring).

    Constructor arguments beyond verl's (from ``agent_loops.yaml`` entries): ``env_id``,
    ``env_kwargs`` (passed to ``gymnasium.make``) and ``reuse_envs`` (pool finished envs).
    Subclasses set :attr:`default_env_id` / :attr:`default_reuse_envs` and override the hooks
    :meth:`system_message`, :meth:`tools`, :meth:`episode_fields` and :meth:`feedback`.
    """

    default_env_id: ClassVar[str]
    default_reuse_envs: ClassVar[bool] = False

    def __init__(self, *args: Any, env_id: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                 reuse_envs: bool | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.env_id = env_id or self.default_env_id
        env_kwargs = _plain(env_kwargs) or {}
        if not isinstance(env_kwargs, Mapping):
            raise TypeError(f"env_kwargs must be a mapping of gymnasium.make kwargs, got {type(env_kwargs).__name__}")
        self.env_kwargs = dict(env_kwargs)
        self.reuse_envs = self.default_reuse_envs if reuse_envs is None else bool(reuse_envs)
        self.response_length = int(self.rollout_config.response_length)
        self.max_assistant_turns = self.rollout_config.multi_turn.get("max_assistant_turns") or None

    # hooks -----------------------------------------------------------------------------
    def system_message(self, info: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def tools(self, info: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Tool schemas for the chat template (``None``: the env has no tools)."""
        return info.get("tools") or None

    def episode_fields(self, info: dict[str, Any], end_info: dict[str, Any]) -> dict[str, Any]:
        """Env-specific ``extra_fields`` (the task's verifier details)."""
        return {}

    def feedback(self, end_info: dict[str, Any]) -> str | None:
        """The env's failure text for SDPO's feedback reprompt (``None``: none)."""
        return None

    # env lifecycle ---------------------------------------------------------------------
    def _acquire_env(self) -> gymnasium.Env:
        if self.reuse_envs:
            with _POOL_LOCK:
                bucket = _POOL.get(_pool_key(self.env_id, self.env_kwargs))
                if bucket:
                    return bucket.pop()
        return gymnasium.make(self.env_id, **self.env_kwargs)

    def _release_env(self, env: gymnasium.Env, healthy: bool) -> None:
        if self.reuse_envs and healthy:
            with _POOL_LOCK:
                _POOL.setdefault(_pool_key(self.env_id, self.env_kwargs), []).append(env)
        else:
            env.close()

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        env = await self.loop.run_in_executor(None, self._acquire_env)
        healthy = False
        try:
            out = await self._episode(env, sampling_params, kwargs)
            healthy = True
            return out
        finally:
            self._release_env(env, healthy)

    async def _episode(self, env: gymnasium.Env, sampling_params: dict[str, Any], kwargs: dict[str, Any]) -> AgentLoopOutput:
        task_id = _task_id(kwargs)
        seed = kwargs.get("seed")
        obs, info = await self.loop.run_in_executor(None, lambda: env.reset(
            seed=None if seed is None else int(seed), options={"task_id": task_id} if task_id else None))
        tools = self.tools(info)
        system = self.system_message(info)
        prompt_ids = await self.ct_build_initial_tokens([system, *obs], tools=tools)

        running: list[int] = list(prompt_ids)
        mask: list[int] = []
        logprobs: list[float] | None = None
        metrics: dict[str, Any] = {}
        request_id = uuid4().hex
        server_fields: dict[str, Any] = dict.fromkeys(WEIGHT_VERSION_KEYS)
        turns, reward, end_info, end_reason = 0, 0.0, {}, "response_length"
        while len(mask) < self.response_length:
            with simple_timer("generate_sequences", metrics):
                out = await self.server_manager.generate(
                    request_id=request_id, prompt_ids=running, sampling_params=sampling_params
                )
            server_fields = merge_turn_fields(server_fields, out.extra_fields)
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
            # everything after it (tool results, user turns, code output) is new context, mask 0.
            previous, updated = [system, *obs[: n_before + 1]], [system, *obs]
            merged, mask, new_lp = await self.ct_merge_context_msg(
                previous, updated, running, mask, logprobs, tools=tools
            )
            running, logprobs = merged.token_ids, (new_lp if new_lp is not None else logprobs)

        n_resp = len(mask)
        response_ids = running[len(running) - n_resp :]
        extra = {
            "task_id": info["task_id"],
            "env_id": self.env_id,  # keys the SGCD / SDPO teacher context (adapters.verl.teacher)
            "termination": end_reason,
            "messages": obs,
            "prompt_messages": [system, *obs[:1]],
            **self.episode_fields(info, end_info),
            "feedback": self.feedback(end_info) if end_info else None,
            "turn_scores": [],
            "tool_rewards": [],
            **server_fields,  # weight versions (verl tags the trajectory with them), spec-decode counters
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


# -- the envs -------------------------------------------------------------------------------
class TauAgentLoop(GymEnvAgentLoop):
    """A τ domain (tool calls): tool results and user turns are masked out; the system message is
    the domain policy with the tool names (:func:`system_prompt`). Envs are cheap, so they are
    not pooled. ``env_kwargs`` e.g. ``{"split": "train"}``."""

    def system_message(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"role": "system", "content": system_prompt(info["policy"], info["tools"])}

    def episode_fields(self, info: dict[str, Any], end_info: dict[str, Any]) -> dict[str, Any]:
        return {key: end_info.get(key) for key in ("db_match", "communicate_match", "write_calls")}


@register_default(AGENT_NAME)
class Tau3AirlineAgentLoop(TauAgentLoop):
    """``sgcd_envs/Tau3Airline-v0`` (see :class:`TauAgentLoop`)."""

    default_env_id = ENV_ID


@register_default(RETAIL_AGENT_NAME)
class Tau2RetailAgentLoop(TauAgentLoop):
    """``sgcd_envs/Tau2Retail-v0`` (see :class:`TauAgentLoop`)."""

    default_env_id = RETAIL_ENV_ID


@register_default(TELECOM_AGENT_NAME)
class Tau2TelecomAgentLoop(TauAgentLoop):
    """``sgcd_envs/Tau2Telecom-v0`` (see :class:`TauAgentLoop`): the user's own tool calls run
    inside ``env.step`` and never reach the agent's observation, so the loop is airline's.
    ``configs/agent_loops.yaml`` builds its envs on the ``full`` split (every task id)."""

    default_env_id = TELECOM_ENV_ID

    def episode_fields(self, info: dict[str, Any], end_info: dict[str, Any]) -> dict[str, Any]:
        return {key: end_info.get(key) for key in ("db_match", "env_assertions", "action_matches", "write_calls",
                                                   "user_tool_calls")}


@register_default(APPWORLD_AGENT_NAME)
class AppWorldAgentLoop(GymEnvAgentLoop):
    """``sgcd_envs/AppWorld-v0``: Python code actions; AppWorld's output messages are masked out.

    ``env_kwargs`` go to :class:`sgcd_envs.appworld.AppWorldEnv`: ``split`` (train, dev, ...,
    or ``fixture``), ``root`` (default ``$APPWORLD_ROOT`` in the worker process), ``venv``
    (default ``$SGCD_APPWORLD_VENV`` or ``.venv-appworld``), ``max_steps``, ``code_timeout_s``, ...
    Envs are pooled (``reuse_envs`` defaults to True): each holds an AppWorld worker process.
    """

    default_env_id = APPWORLD_ENV_ID
    default_reuse_envs = True

    def system_message(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"role": "system", "content": appworld_system_prompt(info["policy"], info.get("app_descriptions") or {})}

    def episode_fields(self, info: dict[str, Any], end_info: dict[str, Any]) -> dict[str, Any]:
        fields = {key: info.get(key) for key in ("split", "scenario_id", "difficulty", "fixture")}
        fields |= {key: end_info.get(key) for key in ("success", "evaluated", "num_tests", "num_passed",
                                                       "num_failed", "pass_fraction", "worker_restarts")}
        return fields

    def feedback(self, end_info: dict[str, Any]) -> str | None:
        return appworld_feedback(end_info)


__all__ = [
    "AGENT_NAME", "APPWORLD_AGENT_NAME", "APPWORLD_ENV_ID", "ENV_ID", "RETAIL_AGENT_NAME", "RETAIL_ENV_ID",
    "AppWorldAgentLoop", "GymEnvAgentLoop", "TauAgentLoop", "Tau2RetailAgentLoop",
    "SPEC_DECODE_KEYS", "Tau3AirlineAgentLoop", "WEIGHT_VERSION_KEYS", "appworld_feedback", "appworld_system_prompt",
    "close_pooled_envs", "merge_turn_fields", "register_default", "system_prompt",
]
