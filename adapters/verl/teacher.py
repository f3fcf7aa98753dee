"""Teacher contexts built on verl's driver from a batch of finished episodes (pure, CPU).

Each episode becomes an ``algorithms.teacher_context.Attempt`` and the prompts come from the
builders the local trainer calls too: SGCD (SPEC §3.5a–c, :func:`~algorithms.teacher_context.sgcd_prompts`:
the best success and the failed siblings of a uid group → a credit reference from the
summarizer — ``adapters.llm.OfflineSummarizer``, the offline stand-in, or ``LLMSummarizer`` —
→ every sibling's system message) and SDPO (SPEC §3.6, :func:`~algorithms.teacher_context.sdpo_prompts`:
a successful sibling's conversation, or the env's feedback, in the rewritten user turn).

The teacher context follows the episode's env (:func:`teacher_envs`, keyed on the ``env_id``
the agent loop records in ``extra_fields``, or on verl's ``agent_name``), read from the env's
registration in ``sgcd_envs`` (its ``action_format``, ``write_tools`` and ``agent_names``):

=====================  =====================================  ===================================
action format          steps shown to the summarizer           chat-template tools
=====================  =====================================  ===================================
``tool_calls`` (τ³)    the structured tool calls + results    the env's tool schemas
``code`` (AppWorld)    one ``execute_python`` call per code   none (APIs are called from code)
                       action, the env's output its result
=====================  =====================================  ===================================

In both, the teacher prompt is the episode's own prompt (``extra_fields["prompt_messages"]``: the
env's system prompt, e.g. :func:`adapters.verl.agent_loop.appworld_system_prompt`, plus the task)
with the reference / demonstration added, so only the added text differs from the student's.

The trainers tokenise the returned messages with verl's Continuous-Token builder (the same path
the agent loop used for the student prompt, with :func:`teacher_tools`) and score the student's
own response tokens on them (:mod:`adapters.verl.trainer`: in the actor beside the student's
context, or on the rollout server).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import sgcd_envs
from adapters.verl.agent_loop import ENV_ID
from algorithms import credit_reference as cr
from algorithms import teacher_context as tc
from sgcd_common import did_you_mean
from sgcd_envs.registry import EnvEntry

APPWORLD_TOOL = "execute_python"
"""Tool name under which an AppWorld code action appears in the summarizer's step list."""
APPWORLD_FAILED_PREFIX = "Execution failed"
"""AppWorld's output prefix for a failed code action (``sgcd_envs.appworld.env.FAILED``)."""

_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


def _identity(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(m) for m in messages]


def appworld_step_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """AppWorld's code-action transcript → OpenAI tool-call messages for ``steps_from_messages``.

    ``[user task, assistant text, user output, assistant text, user output, ...]`` →
    ``[user task, assistant{content: prose, tool_calls: [execute_python(code)]}, tool{output}, ...]``.
    The code is what AppWorld ran (``sgcd_envs.appworld.extract_code``: the ```python blocks);
    an action without code keeps its text as ``{"text": ...}``. An output starting with
    ``Execution failed`` is marked ``is_error``. The prose is the text outside fences and
    ``<think>`` blocks. The input is not modified.
    """
    from sgcd_envs.appworld import extract_code

    out: list[dict[str, Any]] = []
    pending: str | None = None
    for pos, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content") or ""
        if role == "assistant":
            call_id = f"appworld_{pos}"
            code, _ = extract_code(str(content))
            args = {"code": code} if code is not None else {"text": str(content)}
            prose = _FENCE.sub("", _THINK.sub("", str(content))).strip()
            out.append({"role": "assistant", "content": prose,
                        "tool_calls": [{"id": call_id, "function": {"name": APPWORLD_TOOL, "arguments": args}}]})
            pending = call_id
        elif role == "user" and pending is not None:
            text = str(content)
            out.append({"role": "tool", "tool_call_id": pending, "content": text,
                        "is_error": text.lstrip().startswith(APPWORLD_FAILED_PREFIX)})
            pending = None
        else:
            out.append(dict(msg))
    return out


@functools.cache
def _tool_schemas(env_id: str) -> list[dict[str, Any]]:
    """The tool schemas of a tool-call env built with its defaults (cached: built once)."""
    env = sgcd_envs.make(env_id)
    try:
        return env.unwrapped.tool_schemas()
    finally:
        env.close()


@dataclass(frozen=True)
class StepFormat:
    """How the episodes of one action format are read: steps and chat-template tools."""

    step_messages: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]
    chat_tools: bool


STEP_FORMATS = {
    "tool_calls": StepFormat(_identity, chat_tools=True),
    "code": StepFormat(appworld_step_messages, chat_tools=False),
}
"""An env's registered ``action_format`` → how its episodes are read."""


@dataclass(frozen=True)
class TeacherEnv:
    """How one env's episodes become teacher contexts.

    Attributes:
        env_id: the Gymnasium id the agent loop drives (``extra_fields["env_id"]``).
        agent_names: verl agent-loop names that drive this env (fallback key).
        step_messages: episode messages → the OpenAI tool-call form ``steps_from_messages`` reads.
        tools: chat-template tool schemas (as the agent loop passed them), or ``None``.
        write_tools: state-changing tools for the offline stand-in summarizer.
    """

    env_id: str
    agent_names: tuple[str, ...]
    step_messages: Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]
    tools: Callable[[], list[dict[str, Any]] | None]
    write_tools: Callable[[], frozenset[str]]


def _teacher_env(entry: EnvEntry) -> TeacherEnv:
    fmt = STEP_FORMATS[entry.action_format]
    tools = functools.partial(_tool_schemas, entry.id) if fmt.chat_tools else lambda: None
    return TeacherEnv(entry.id, entry.agent_names, fmt.step_messages, tools, entry.write_tool_names)


def teacher_envs() -> dict[str, TeacherEnv]:
    """Every registered env (``sgcd_envs.ENVS``, in registration order) → its :class:`TeacherEnv`."""
    return {env_id: _teacher_env(entry) for env_id, entry in sgcd_envs.ENVS.items()}


def teacher_env(env_id: str) -> TeacherEnv:
    """The :class:`TeacherEnv` of a registered ``env_id`` (ValueError with the allowed ids)."""
    envs = teacher_envs()
    if env_id not in envs:
        raise ValueError(f"No teacher context for env_id={env_id!r}. Allowed: {', '.join(envs)}."
                         f"{did_you_mean(str(env_id), list(envs))}")
    return envs[env_id]


def env_id_of(extra: Mapping[str, Any]) -> str:
    """The env id of an episode from its ``extra_fields``: ``env_id``, else via ``agent_name``."""
    if extra.get("env_id"):
        return teacher_env(str(extra["env_id"])).env_id
    envs = teacher_envs()
    by_agent = {a: e.env_id for e in envs.values() for a in e.agent_names}
    agent = extra.get("agent_name")
    if agent in by_agent:
        return by_agent[agent]
    hint = did_you_mean(str(agent), list(by_agent)) if agent else ""
    raise ValueError(f"Episode extra_fields name no known env: env_id={extra.get('env_id')!r}, agent_name={agent!r}. "
                     f"Allowed env ids: {', '.join(envs)}; agent names: {', '.join(by_agent)}.{hint}")


def teacher_tools(env_id: str) -> list[dict[str, Any]] | None:
    """Tool schemas for the teacher prompt's chat template, exactly as the student's (cached)."""
    return teacher_env(env_id).tools()


def offline_summarizers() -> dict[str, Any]:
    """One offline stand-in summarizer per registered env, with that env's write tools."""
    from adapters.llm.summarizer import OfflineSummarizer

    return {env_id: OfflineSummarizer(write_tools=env.write_tools()) for env_id, env in teacher_envs().items()}


@dataclass(frozen=True)
class Episode:
    """What the driver knows about one trajectory (from the agent loop's ``extra_fields``).

    ``env_id`` selects the teacher context (:func:`teacher_envs`); built from a batch with
    :func:`episode_from_extra`, it is the one the agent loop recorded.
    """

    uid: str
    reward: float
    prompt_messages: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    feedback: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    env_id: str = ENV_ID


def episode_feedback(extra: Mapping[str, Any]) -> str | None:
    """Env feedback text: the agent loop's ``extra_fields["feedback"]`` (e.g. AppWorld's failed
    tests), else ``reward_extra_info["feedback"]`` (a reward function's), else ``None``."""
    for value in (extra.get("feedback"), (extra.get("reward_extra_info") or {}).get("feedback")):
        if isinstance(value, str) and value.strip():
            return value
    return None


def episode_from_extra(uid: str, reward: float, extra: Mapping[str, Any]) -> Episode:
    """One :class:`Episode` from a trajectory's uid, reward and ``extra_fields``."""
    return Episode(uid=str(uid), reward=float(reward), prompt_messages=list(extra.get("prompt_messages") or []),
                   messages=list(extra.get("messages") or []), feedback=episode_feedback(extra), extra=extra,
                   env_id=env_id_of(extra))


def episode_steps(ep: Episode) -> list[cr.Step]:
    """The episode's steps for the summarizer / demonstrations, read the env's way."""
    return cr.steps_from_messages(teacher_env(ep.env_id).step_messages(ep.messages))


def _summarizer_for(summarizer: Any, env_id: str) -> Any:
    if isinstance(summarizer, Mapping):
        if env_id not in summarizer:
            raise ValueError(f"No summarizer for env_id={env_id!r}; the mapping has: {', '.join(summarizer)}.")
        return summarizer[env_id]
    return summarizer


def attempt(ep: Episode) -> tc.Attempt:
    """A verl episode as the shared teacher-prompt builders see it (``algorithms.teacher_context``):
    the prompt the agent loop recorded (system + the env's first message), the conversation after
    that first message, the steps read the env's way, the env's own feedback."""
    return tc.Attempt(group=ep.uid, reward=float(ep.reward), prompt=tuple(ep.prompt_messages),
                      conversation=tuple(ep.messages[1:]), steps=tuple(episode_steps(ep)), feedback=ep.feedback)


def sgcd_teacher_messages(
    episodes: Sequence[Episode], summarizer: Any, *, success_threshold: float = 1.0
) -> tuple[list[list[dict[str, Any]] | None], dict[str, float]]:
    """Teacher messages per episode (None: no reference for its group → w = 1 there), from
    :func:`algorithms.teacher_context.sgcd_prompts` — the local trainer's builder.

    ``summarizer``: one summarizer for every env, or a mapping env id → summarizer (e.g.
    :func:`offline_summarizers`); a group uses its episodes' env (siblings share one task).
    Summarizer failures are counted, never raised (SPEC §3.5b).
    """
    per_group = {ep.uid: _summarizer_for(summarizer, ep.env_id) for ep in episodes}
    return tc.sgcd_prompts([attempt(ep) for ep in episodes], per_group, success_threshold=success_threshold)


def sdpo_teacher_messages(
    episodes: Sequence[Episode], *, success_threshold: float = 1.0, use_feedback: bool = True,
    max_chars: int = 40_000,
) -> tuple[list[list[dict[str, Any]] | None], torch.Tensor]:
    """Reprompted teacher messages per episode and the SDPO sample mask (B,), from
    :func:`algorithms.teacher_context.sdpo_prompts` — the local trainer's builder.

    Sample i is distilled (mask 1) when a *different* sibling of its group succeeded (its
    conversation is the demonstration) or, failing that, when its env gave feedback and
    ``use_feedback``; otherwise its entry is None and its mask 0.
    """
    out = tc.sdpo_prompts([attempt(ep) for ep in episodes], success_threshold=success_threshold,
                          include_feedback=use_feedback, max_chars=max_chars)
    return out, torch.tensor([float(p is not None) for p in out])
