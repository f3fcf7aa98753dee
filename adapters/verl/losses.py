"""SDPO inside verl: a policy loss in verl's registry plus the engine loss that feeds it the teacher.

verl 0.9.1's engine-level ``ppo_loss(config, model_output, data, dp_group)`` selects only
``response_mask, old_log_probs, advantages`` (+ ``rollout_is_weights``, ``ref_log_prob``) from the
micro-batch before calling the registered policy loss, so a registered loss never sees the
teacher's log-probs. :func:`sdpo_engine_loss` (installed on the actor workers with
``set_loss_fn`` by :class:`adapters.verl.trainer.SDPOTrainerSync`) therefore reads
``teacher_log_probs`` and ``sdpo_sample_mask`` from the micro-batch, pads them exactly as
``ppo_loss`` pads its own fields, exposes them to :func:`sdpo_policy_loss` through a context
variable for the duration of the call, and then defers to verl's ``ppo_loss`` — so the entropy
bonus, the optional KL-to-reference term (SPEC §3.6: "optional KL to ref stays") and verl's
metrics are verl's own. With ``policy_loss.loss_mode=sdpo`` the SDPO loss *replaces* the policy
gradient loss (λ = 0), as in the SDPO reference implementation.

Only sampled-token log-probs exist on this path (verl's ``compute_log_prob``), so the loss is the
non-full-logit reverse-KL form ``algorithms.sdpo.sdpo_loss_sampled_token``; the top-k generalised
JSD of the local trainer needs full teacher logits and is not available here.

Metrics: the SDPO means over distilled tokens (``is_ratio_mean``, ``is_clip_frac``,
``distill_per_token``) are reported over the distilled tokens only, also when some micro-batches
hold none (:func:`pool_distilled_token_means`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from algorithms import sdpo


@dataclass(frozen=True)
class TeacherBatch:
    """Teacher inputs of one micro-batch, padded like ``ppo_loss``'s fields.

    teacher_log_probs: (B, T) log π_T(y_t | reprompted context), detached.
    sample_mask: (B,) 1 where the sample has a demonstration or feedback, else 0.
    """

    teacher_log_probs: torch.Tensor
    sample_mask: torch.Tensor


_TEACHER: contextvars.ContextVar[TeacherBatch | None] = contextvars.ContextVar("sgcd_sdpo_teacher", default=None)


@contextlib.contextmanager
def teacher_context(batch: TeacherBatch) -> Iterator[None]:
    """Make ``batch`` visible to :func:`sdpo_policy_loss` inside the ``with`` block."""
    token = _TEACHER.set(batch)
    try:
        yield
    finally:
        _TEACHER.reset(token)


def sdpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    *,
    teacher_log_prob: torch.Tensor | None = None,
    sample_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """SDPO loss in verl's policy-loss signature (registered as ``"sdpo"``).

    Calls ``algorithms.sdpo.sdpo_loss_sampled_token(log_prob, teacher_log_prob, old_log_prob,
    response_mask, sample_mask, is_clip=config.policy_loss.sdpo_is_clip, loss_agg_mode=...)``;
    ``advantages`` is ignored (the SDPO loss replaces the PG loss). The teacher tensors come from
    the keyword arguments or, inside verl's ``ppo_loss``, from :func:`teacher_context`.
    The aggregation is rescaled to verl's global mini-batch normalisation
    (``config.global_batch_info``) for ``token-mean``, so gradients do not depend on the
    dp/micro-batch split. ``rollout_is_weights`` multiplies nothing here: combining SDPO with
    rollout correction is rejected with an error.
    """
    if teacher_log_prob is None or sample_mask is None:
        ctx = _TEACHER.get()
        if ctx is None:
            raise RuntimeError(
                "policy_loss.loss_mode='sdpo' needs the teacher log-probs, which verl's stock ppo_loss does not pass. "
                "Run with adapters.verl.trainer.SDPOTrainerSync (it installs adapters.verl.losses.sdpo_engine_loss "
                "on the actor workers), or call sdpo_policy_loss(..., teacher_log_prob=..., sample_mask=...)."
            )
        teacher_log_prob, sample_mask = ctx.teacher_log_probs, ctx.sample_mask
    if rollout_is_weights is not None:
        raise ValueError("policy_loss.loss_mode='sdpo' does not support algorithm.rollout_correction (got IS weights)")
    is_clip = float(getattr(getattr(config, "policy_loss", None), "sdpo_is_clip", 2.0))
    mask = response_mask.to(log_prob.dtype)
    loss, metrics = sdpo.sdpo_loss_sampled_token(
        log_prob,
        teacher_log_prob.to(log_prob.device, log_prob.dtype),
        old_log_prob,
        mask,
        sample_mask.to(log_prob.device, log_prob.dtype),
        is_clip=is_clip,
        loss_agg_mode=loss_agg_mode,
    )
    loss = loss * _global_scale(loss_agg_mode, mask, sample_mask, config)
    return loss, {k if "/" in k else f"actor/{k}": v for k, v in metrics.items()}


def _global_scale(loss_agg_mode: str, mask: torch.Tensor, sample_mask: torch.Tensor, config: Any) -> float:
    """Factor turning the local ``token-mean`` into verl's global one: n_local / N_global · dp_size.

    n_local counts the distilled tokens of this micro-batch (response mask × sample mask), the
    denominator ``algorithms.sdpo`` used; N_global is verl's ``batch_num_tokens``, the response
    tokens of the whole mini-batch over all dp ranks. So the result is
    Σ_distilled ℓ_t / N_global · dp_size, verl's ``token-mean`` convention: the loss no longer
    depends on the micro-batch split. It equals ``algorithms.sdpo`` exactly when every sample is
    distilled; otherwise it is that loss times the fraction of distilled tokens (documented gap:
    verl does not count distilled tokens per mini-batch).
    """
    info = dict(getattr(config, "global_batch_info", None) or {})
    n_global = info.get("batch_num_tokens")
    if loss_agg_mode != "token-mean" or n_global is None:
        return 1.0
    n_local = float((mask * sample_mask.to(mask.dtype).unsqueeze(-1)).sum())
    return n_local / float(n_global) * float(info.get("dp_size", 1))


def sdpo_engine_loss(config: Any, model_output: dict, data: Any, dp_group: Any = None) -> tuple[torch.Tensor, dict]:
    """Engine-level loss for SDPO (same signature as verl's ``ppo_loss``; FSDP and Megatron).

    Reads ``teacher_log_probs`` (per response token, nested like ``old_log_probs``) and
    ``sdpo_sample_mask`` (per sample) from the micro-batch ``data``, then runs verl's ``ppo_loss``
    with them visible to :func:`sdpo_policy_loss`. Requires ``policy_loss.loss_mode == "sdpo"``.
    The SDPO token means in the metrics are pooled over the dp ranks and left out for micro-batches
    without distilled tokens (:func:`pool_distilled_token_means`; a collective on ``dp_group``, which
    every dp rank reaches once per micro-batch).
    """
    from verl.workers.utils.losses import ppo_loss

    mode = config.policy_loss.get("loss_mode", "vanilla")
    if mode != "sdpo":
        raise ValueError(f"sdpo_engine_loss needs actor.policy_loss.loss_mode='sdpo', got {mode!r}")
    for key in ("teacher_log_probs", "sdpo_sample_mask"):
        if key not in data.keys():
            raise KeyError(f"sdpo_engine_loss: micro-batch lacks {key!r}; it has {sorted(data.keys())}")
    padded = data.select("response_mask", "teacher_log_probs").to_padded_tensor()
    teacher = TeacherBatch(
        teacher_log_probs=padded["teacher_log_probs"].detach(),
        sample_mask=data["sdpo_sample_mask"].reshape(-1).detach(),
    )
    with teacher_context(teacher):
        loss, metrics = ppo_loss(config, model_output, data, dp_group)
    return loss, pool_distilled_token_means(metrics, dp_group, model_output["log_probs"].device)


def _scalar(value: Any) -> float:
    """A micro-batch metric as a float (verl's ``Metric`` holds this micro-batch's one value)."""
    from verl.utils.metric.utils import Metric

    return float(value.aggregate()) if isinstance(value, Metric) else float(value)


def _dp_size(dp_group: Any) -> int:
    dist = torch.distributed
    if dp_group is None or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(dp_group)


def pool_distilled_token_means(metrics: dict[str, Any], dp_group: Any = None,
                               device: torch.device | str = "cpu") -> dict[str, Any]:
    """Make the SDPO token means (``algorithms.sdpo.DISTILLED_TOKEN_MEANS``) means over distilled tokens only.

    verl merges micro-batch metrics with ``append_to_dict`` and reports a ``mean`` ``Metric`` as
    the mean over micro-batches and dp ranks (``Metric.aggregate_dp``, which needs the same number
    of values on every rank). A micro-batch without distilled tokens has no such mean; a 0 in its
    place pulls the value down (half the micro-batches distilled: is_ratio_mean ≈ 0.5). So each
    mean is pooled over the dp ranks (one ``all_reduce`` of this micro-batch's token sums and
    counts; none for dp = 1) and emitted on every rank if any rank has distilled tokens, on none
    otherwise. Reported value: the mean over the micro-batches holding distilled tokens of their
    all-rank distilled-token mean — the exact mean over distilled tokens when a mini-batch is one
    micro-batch or its micro-batches hold equally many (verl's ``Metric`` has no weighted mean, and
    a micro-batch does not know the mini-batch's distilled-token count). Returns ``metrics``.
    """
    from verl.utils.metric.utils import AggregationType, Metric

    from algorithms.sdpo import DISTILLED_TOKEN_MEANS

    count = _scalar(metrics.get("sdpo/num_tokens", 0.0))
    # a rank without distilled tokens has no mean: its sum is 0
    sums = [_scalar(metrics[key]) * count if key in metrics else 0.0 for key in DISTILLED_TOKEN_MEANS]
    totals = torch.tensor([count, *sums], dtype=torch.float64, device=device)
    if _dp_size(dp_group) > 1:
        torch.distributed.all_reduce(totals, op=torch.distributed.ReduceOp.SUM, group=dp_group)
    count, *sums = totals.tolist()
    for key, total in zip(DISTILLED_TOKEN_MEANS, sums):
        if count > 0:
            metrics[key] = Metric(AggregationType.MEAN, total / count)
        else:
            metrics.pop(key, None)
    return metrics
