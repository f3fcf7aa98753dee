"""What a method adds to the local trainer's step, and the types it exchanges with the loop.

The loop (:mod:`adapters.local.trainer`) owns what every method shares: rollouts, dynamic
sampling, GRPO advantages, the student and reference forward passes, backward and the optimizer
step. A method (:class:`LocalMethod`) adds up to three things:

- :meth:`~LocalMethod.prepare`: what it computes from the whole kept batch before any loss, as a
  :class:`Signal` (SGCD: credit references → teacher contexts; SDPO: demonstrations);
- :meth:`~LocalMethod.loss`: its loss on one micro-batch of whole groups (:class:`UpdateInputs`);
- :meth:`~LocalMethod.after_step`: what it updates after the optimizer step (an EMA teacher).

``algorithms.registry.MethodSpec.local`` names the class; :func:`build_method` builds it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from algorithms import sdpo
from algorithms.config import GRPOConfig
from algorithms.credit_reference import steps_from_messages
from algorithms.registry import MethodSpec, get_method
from algorithms.teacher_context import Attempt
from sgcd_common import load_entry_point

from ..forward import RolloutBatch, collate, generated_hidden
from ..prompting import ChatRenderer
from ..rollout import Episode


@dataclass(frozen=True)
class MethodContext:
    """What the trainer hands a method when it builds it."""

    model: torch.nn.Module
    """The policy being trained (the student)."""
    renderer: ChatRenderer
    """The rollout prompt: ``system``, ``prefix_ids`` and ``prefix_ids_for(other_system)``."""
    grpo: GRPOConfig
    """Shared PPO/GRPO settings (clip, β_KL, loss aggregation)."""
    summarizer: Any = None
    """Sibling contrast → credit reference (methods with ``needs_summarizer``)."""
    temperature: float = 1.0
    """The rollout's sampling temperature τ: every policy, reference and teacher distribution is
    softmax(z/τ), the distribution the rollout sampled from."""
    pad_id: int = 0
    """Padding token of batches the method builds itself (the teacher's views)."""


@dataclass(frozen=True)
class Signal:
    """A method's per-batch output of :meth:`LocalMethod.prepare`, one entry per kept episode."""

    teacher_prefixes: list[list[int] | None]
    """Token ids of each episode's teacher prompt (its system message, first user turn and
    generation prompt, with the method's privileged text: ``ChatRenderer.prompt_ids``), after
    which the teacher scores the student's own tokens; None = the episode gets no teacher signal."""
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def none(cls, episodes: int) -> Signal:
        return cls([None] * episodes)

    def rows(self, index: Sequence[int]) -> list[list[int] | None]:
        return [self.teacher_prefixes[i] for i in index]


@dataclass(frozen=True)
class UpdateInputs:
    """One micro-batch as every loss sees it: the episodes, their batch, the student's hidden
    rows at generated tokens (with grad), packed log-probs (N, G) with ``pmask``, rewards and
    groups (N,), GRPO ``adv`` (N,) and the method's teacher contexts for these rows."""

    episodes: list[Episode]
    batch: RolloutBatch
    hidden: torch.Tensor
    logp: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    pmask: torch.Tensor
    rewards: torch.Tensor
    groups: torch.Tensor
    adv: torch.Tensor
    teacher_prefixes: list[list[int] | None]
    totals: dict[str, float] | None = None
    """Whole-batch denominators when this is one of several micro-batches (None: one pass)."""

    def denominators(self, tokens_key: str = "batch_num_tokens") -> dict[str, float]:
        """``algorithms.grpo.aggregate_loss``'s whole-batch denominators ({} for a single pass);
        ``tokens_key="teacher_tokens"`` counts only the tokens of rows with a teacher context."""
        if self.totals is None:
            return {}
        return {"batch_num_tokens": self.totals[tokens_key], "global_batch_size": self.totals["global_batch_size"]}


class LocalMethod:
    """One method's part of the local step. The base class adds nothing: a subclass overrides
    :meth:`loss` and, where the method needs them, :meth:`prepare` and :meth:`after_step`."""

    def __init__(self, ctx: MethodContext, config: Any = None) -> None:
        self.ctx, self.config = ctx, config

    def prepare(self, episodes: list[Episode], rewards: torch.Tensor, groups: torch.Tensor) -> Signal:
        """Per-batch work before the loss (default: no teacher signal)."""
        return Signal.none(len(episodes))

    def loss(self, x: UpdateInputs) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after each optimizer step."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep besides the policy and the optimizer."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class EMATeacher:
    """A frozen copy of the policy that follows it by ``θ_T ← (1 − r)·θ_T + r·θ_S`` after each
    step (``algorithms.sdpo.ema_update_``)."""

    def __init__(self, student: torch.nn.Module, rate: float) -> None:
        self.student, self.rate = student, rate
        self.model = frozen_copy(student)

    def update(self) -> None:
        sdpo.ema_update_(self.model, self.student, rate=self.rate)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "teacher" in state:
            self.model.load_state_dict(state["teacher"])


def attempt(ep: Episode, system: str) -> Attempt:
    """A local episode as the shared teacher-prompt builders see it (``algorithms.teacher_context``):
    the prompt is the rollout's system message and the env's first message, the conversation
    the env's messages after it; feedback only where the env itself reported some."""
    feedback = ep.info.get("feedback")
    return Attempt(group=ep.group, reward=float(ep.reward),
                   prompt=({"role": "system", "content": system}, dict(ep.env_messages[0])),
                   conversation=tuple(ep.env_messages[1:]), steps=tuple(steps_from_messages(ep.env_messages)),
                   feedback=feedback if isinstance(feedback, str) and feedback.strip() else None)


def student_prompt_ids(ep: Episode, prefix_ids: Sequence[int]) -> list[int]:
    """The student's own prompt tokens: the shared prefix and the episode's tokens before the
    first one it generated."""
    return [*prefix_ids, *ep.suffix_ids[:ep.loss_mask.index(1)]]


def teacher_hidden(teacher: torch.nn.Module, episodes: Sequence[Episode], prompts: Sequence[Sequence[int]], *,
                   pad_id: int, device: torch.device | str) -> torch.Tensor:
    """The teacher's hidden rows at the student's generated tokens (M, H), in the episodes'
    mask order (as the student's), with the teacher's prompt ``prompts[i]`` in place of the
    student's: each episode is fed as that prompt followed by its own tokens from the first
    generated one. The prompt's last token opens the fed suffix, so that token is a target."""
    prefixes, views = [], []
    for ep, prompt in zip(episodes, prompts):
        start = ep.loss_mask.index(1)
        prefixes.append(list(prompt[:-1]))
        views.append(replace(ep, suffix_ids=[prompt[-1], *ep.suffix_ids[start:]], loss_mask=[0, *ep.loss_mask[start:]]))
    return generated_hidden(teacher, prefixes, collate(views, pad_id=pad_id, device=device), grad=False)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in eval mode with every parameter frozen."""
    clone = copy.deepcopy(model)
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def method_config(spec: MethodSpec, configs: Sequence[object]) -> Any:
    """The instance of ``spec.config`` among ``configs`` (its defaults if none is given)."""
    if spec.config is None:
        return None
    return next((c for c in configs if isinstance(c, spec.config)), None) or spec.config()


def build_method(name: str, ctx: MethodContext, configs: Sequence[object] = ()) -> LocalMethod:
    """The local part of the registered method ``name``, with its settings from ``configs``."""
    spec = get_method(name)
    cls = load_entry_point(spec.local)
    if not (isinstance(cls, type) and issubclass(cls, LocalMethod)):
        raise TypeError(f"method {name!r}: MethodSpec.local = {spec.local!r} is not a LocalMethod subclass")
    if spec.needs_summarizer and ctx.summarizer is None:
        raise ValueError(f"method {name!r} needs a summarizer (sibling contrast → credit reference)")
    return cls(ctx, method_config(spec, configs))
