"""The actor-side losses of SDPO and SGCD inside verl: engine losses and verl's top-k logits hook.

SGCD (:func:`sgcd_engine_loss`): verl's ``ppo_loss`` for training (the credit weights are already
in ``advantages``), and the exact teacher/student divergence of (student, teacher) record pairs
when the driver scores them (:func:`pair_divergence`).

SDPO: a policy loss in verl's registry plus the engine loss that feeds it the teacher.

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

Two forms, chosen by what the driver put into the batch (``algorithm.sdpo.divergence``):

- ``sdpo_bin_ids`` + ``sdpo_teacher_bins`` (``topk``, built by :func:`pair_topk_bins` in an earlier
  ``compute_log_prob`` over (student, teacher) record pairs): verl's FSDP engine first calls
  :func:`sdpo_engine_loss` as a logits processor (``distillation_use_topk``) with the micro-batch's
  live student logits; :func:`topk_jsd_per_token` gathers the student's log-probs at the bin ids
  (normalised over the full vocabulary), adds the tail bin and forms the generalised JSD against
  the teacher's bins, with gradient. The loss call then weights it by the capped IS ratio
  (``algorithms.sdpo.sdpo_loss_from_divergence``).
- ``teacher_log_probs`` (``sampled_token``): the reverse-KL score-function form at the sampled
  token, ``algorithms.sdpo.sdpo_loss_sampled_token``.

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

    sample_mask: (B,) 1 where the sample has a demonstration or feedback, else 0.
    teacher_log_probs: (B, T) log π_T(y_t | reprompted context), detached (``sampled_token``).
    per_token: (B, T) the generalised JSD over the top-k + tail bins, with gradient (``topk``).
    """

    sample_mask: torch.Tensor
    teacher_log_probs: torch.Tensor | None = None
    per_token: torch.Tensor | None = None


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
        teacher_log_prob, sample_mask, per_token = ctx.teacher_log_probs, ctx.sample_mask, ctx.per_token
    else:
        per_token = None
    if rollout_is_weights is not None:
        raise ValueError("policy_loss.loss_mode='sdpo' does not support algorithm.rollout_correction (got IS weights)")
    is_clip = float(getattr(getattr(config, "policy_loss", None), "sdpo_is_clip", 2.0))
    mask = response_mask.to(log_prob.dtype)
    if per_token is not None:
        loss, metrics = sdpo.sdpo_loss_from_divergence(
            per_token.to(log_prob.dtype), log_prob, old_log_prob, mask, sample_mask.to(log_prob.device, log_prob.dtype),
            is_clip=is_clip, loss_agg_mode=loss_agg_mode)
        loss = loss * _global_scale(loss_agg_mode, mask, sample_mask, config)
        return loss, {k if "/" in k else f"actor/{k}": v for k, v in metrics.items()}
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


def topk_jsd_per_token(student_logits: torch.Tensor, data: Any, *, alpha: float, chunk: int = 1024) -> torch.Tensor:
    """Per-position generalised JSD over the driver's top-k + tail bins (verl's logits-hook layout).

    ``student_logits`` (N, V): the micro-batch's packed logits (temperature applied by verl), row
    j predicting token j + 1 of its sequence. For each sequence, its R response tokens are
    predicted at rows ``end − R − 1 … end − 2`` (``verl.workers.utils.padding.no_padding_2_padding``);
    there ``ℓ_t = GJSD_α(p_S bins ‖ sg p_T bins)`` with p_S's bins
    ``log_softmax(z)[ids]`` plus :func:`algorithms.topk.tail_bin`. Other
    rows are 0. Returns (N,) with gradient through ``student_logits``. Rows go in chunks of
    ``chunk`` (float32 copies of one chunk's logits at a time).
    """
    from algorithms.topk import generalized_jsd_bins, tail_bin

    ids_rows, bins_rows = data["sdpo_bin_ids"].unbind(0), data["sdpo_teacher_bins"].unbind(0)
    out = torch.zeros(student_logits.shape[0], dtype=torch.float32, device=student_logits.device)
    for rows, ids, bins in zip(response_rows(data), ids_rows, bins_rows):
        start, r = rows.start, rows.stop - rows.start
        if r == 0:
            continue
        k = ids.numel() // r
        ids = ids.reshape(r, k).to(student_logits.device)
        teacher = bins.reshape(r, k + 1).to(student_logits.device, torch.float32).detach()
        for c in range(0, r, chunk):
            logits = student_logits[start + c: start + min(c + chunk, r)].float()
            student = tail_bin(logits.gather(-1, ids[c: c + chunk]) - torch.logsumexp(logits, dim=-1, keepdim=True))
            out = out.index_put((torch.arange(start + c, start + c + logits.shape[0], device=out.device),),
                                generalized_jsd_bins(student, teacher[c: c + chunk], alpha=alpha))
    return out


def sdpo_engine_loss(config: Any, model_output: dict | None = None, data: Any = None, dp_group: Any = None, *,
                     student_logits: torch.Tensor | None = None) -> Any:
    """Engine-level loss for SDPO (same signature as verl's ``ppo_loss``; FSDP and Megatron).

    In a ``compute_log_prob`` call flagged :data:`SDPO_PAIR_SCORING` (verl's top-k logits hook on):
    called with ``student_logits`` it returns :func:`pair_topk_bins`' columns; as the loss, 0.
    In the update with the hook on (``topk``): called with ``student_logits`` it returns
    ``{"sdpo_divergence": (1, N)}`` from :func:`topk_jsd_per_token`. Called as the loss: reads
    ``sdpo_sample_mask`` and either the hook's ``sdpo_divergence`` (``topk``) or
    ``teacher_log_probs`` (``sampled_token``, nested like ``old_log_probs``) from the micro-batch,
    then runs verl's ``ppo_loss`` with them visible to :func:`sdpo_policy_loss`. Requires
    ``policy_loss.loss_mode == "sdpo"``. The SDPO token means in the metrics are pooled over the
    dp ranks and left out for micro-batches without distilled tokens
    (:func:`pool_distilled_token_means`; a collective on ``dp_group``, which every dp rank
    reaches once per micro-batch).
    """
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss
    from verl.workers.utils.padding import no_padding_2_padding

    mode = config.policy_loss.get("loss_mode", "vanilla")
    if mode != "sdpo":
        raise ValueError(f"sdpo_engine_loss needs actor.policy_loss.loss_mode='sdpo', got {mode!r}")
    if student_logits is not None and tu.get_non_tensor_data(data=data, key=SDPO_PAIR_SCORING, default=False):
        return {k: v.unsqueeze(0) for k, v in
                pair_topk_bins(student_logits[0], data, int(tu.get_non_tensor_data(data=data, key="sdpo_topk", default=100))).items()}
    if model_output is not None and tu.get_non_tensor_data(data=data, key=SDPO_PAIR_SCORING, default=False):
        return torch.zeros((), device=model_output["log_probs"].device), {}
    if student_logits is not None:
        for key in ("sdpo_bin_ids", "sdpo_teacher_bins"):
            if key not in data.keys():
                raise KeyError(f"sdpo_engine_loss: the top-k hook ran but the micro-batch lacks {key!r}; "
                               f"it has {sorted(data.keys())}")
        alpha = float(config.policy_loss.get("sdpo_alpha", 0.5))
        return {"sdpo_divergence": topk_jsd_per_token(student_logits[0], data, alpha=alpha).unsqueeze(0)}
    topk = "sdpo_divergence" in model_output
    for key in ("sdpo_sample_mask",) if topk else ("teacher_log_probs", "sdpo_sample_mask"):
        if key not in data.keys():
            raise KeyError(f"sdpo_engine_loss: micro-batch lacks {key!r}; it has {sorted(data.keys())}")
    sample_mask = data["sdpo_sample_mask"].reshape(-1).detach()
    if topk:
        teacher = TeacherBatch(sample_mask=sample_mask, per_token=no_padding_2_padding(model_output["sdpo_divergence"], data))
    else:
        padded = data.select("response_mask", "teacher_log_probs").to_padded_tensor()
        teacher = TeacherBatch(sample_mask=sample_mask, teacher_log_probs=padded["teacher_log_probs"].detach())
    with teacher_context(teacher):
        loss, metrics = ppo_loss(config, model_output, data, dp_group)
    return loss, pool_distilled_token_means(metrics, dp_group, model_output["log_probs"].device)


PAIR_SCORING = "sgcd_pair_scoring"
"""Non-tensor flag of a ``compute_log_prob`` call whose records are (student, teacher) pairs."""


def pair_divergence(logits: torch.Tensor, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact per-token ``D_t = KL(p_S‖p_T)`` and ``H_t = H(p_S)`` of (student, teacher) record pairs.

    ``logits`` (N, V): a micro-batch's packed logits (temperature applied by verl) whose
    sequences are pairs — record 2j the student context, 2j + 1 the teacher context, both ending
    in the same R response tokens, predicted at rows ``end − R − 1 … end − 2``
    (``verl.workers.utils.padding.no_padding_2_padding``). Returns (N,) divergences and entropies
    at the student's rows (0 elsewhere), computed over the full vocabulary by
    ``algorithms.divergence.reverse_kl_and_entropy_from_logits`` — the local trainer's formula.
    """
    from algorithms.divergence import reverse_kl_and_entropy_from_logits

    kl = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device)
    entropy = torch.zeros_like(kl)
    for student_rows, teacher_rows in _pair_rows(data):
        if student_rows.stop > student_rows.start:
            with torch.no_grad():
                kl[student_rows], entropy[student_rows] = reverse_kl_and_entropy_from_logits(
                    logits[student_rows], logits[teacher_rows])
    return kl, entropy


SDPO_PAIR_SCORING = "sdpo_pair_scoring"
"""Non-tensor flag of a ``compute_log_prob`` call that builds SDPO's bins from (student, teacher) pairs;
``sdpo_topk`` (non-tensor) gives k."""


def response_rows(data: Any) -> list[slice]:
    """Per sequence of a packed micro-batch, the rows of its logits that predict its response
    tokens: ``end − R − 1 … end − 2`` (``verl.workers.utils.padding.no_padding_2_padding``)."""
    prompt_lens = data["prompts"].offsets().diff()
    response_lens = data["responses"].offsets().diff()
    ends = (prompt_lens + response_lens).cumsum(0).tolist()
    return [slice(end - r - 1, end - 1) for end, r in zip(ends, response_lens.tolist())]


def _pair_rows(data: Any) -> list[tuple[slice, slice]]:
    """(student rows, teacher rows) predicting the response tokens of each record pair (see :func:`pair_divergence`)."""
    rows = response_rows(data)
    if len(rows) % 2:
        raise ValueError(f"pair scoring needs (student, teacher) pairs in each micro-batch, got {len(rows)} sequences")
    out = []
    for j in range(0, len(rows), 2):
        student, teacher = rows[j], rows[j + 1]
        if teacher.stop - teacher.start != student.stop - student.start:
            raise ValueError(f"pair {j // 2}: the teacher record has {teacher.stop - teacher.start} response tokens, "
                             f"the student's {student.stop - student.start}")
        out.append((student, teacher))
    return out


def bin_columns(k: int) -> tuple[list[str], list[str]]:
    """Names of the per-token columns of SDPO's pair scoring: k student top-k ids, k + 1 teacher bins.

    verl's logits hook returns one value per token per key, so the (k, k + 1) values a token
    needs travel as that many keys and are stacked again on the driver (``adapters.verl.trainer``).
    """
    return [f"sdpo_id_{j:03d}" for j in range(k)], [f"sdpo_tb_{j:03d}" for j in range(k + 1)]


def pair_topk_bins(logits: torch.Tensor, data: Any, k: int, *, chunk: int = 1024) -> dict[str, torch.Tensor]:
    """SDPO's bins from (student, teacher) record pairs, at the student's response rows.

    Per response token: the student's top-k ids (π_old in the student's context) and the
    teacher's log-probs at those ids, normalised over the full vocabulary, with the tail bin
    ``log(1 − Σ)`` last — the lasgroup/SDPO support (``distillation_topk`` + ``distillation_add_tail``).
    ``logits`` (N, V) packed as in :func:`pair_divergence`. Returns the :func:`bin_columns`,
    each (N,), 0 outside the student's response rows.
    """
    from algorithms.topk import tail_bin

    ids = torch.zeros(logits.shape[0], k, dtype=torch.int64, device=logits.device)
    teacher = torch.zeros(logits.shape[0], k + 1, dtype=torch.float32, device=logits.device)
    with torch.no_grad():
        for student_rows, teacher_rows in _pair_rows(data):
            for r0 in range(0, student_rows.stop - student_rows.start, chunk):
                s = logits[student_rows.start + r0: min(student_rows.start + r0 + chunk, student_rows.stop)].float()
                t = logits[teacher_rows.start + r0: teacher_rows.start + r0 + s.shape[0]].float()
                top = s.topk(k, dim=-1).indices
                rows = slice(student_rows.start + r0, student_rows.start + r0 + s.shape[0])
                ids[rows] = top
                teacher[rows] = tail_bin(t.gather(-1, top) - torch.logsumexp(t, dim=-1, keepdim=True))
    id_names, bin_names = bin_columns(k)
    return {**{n: ids[:, j] for j, n in enumerate(id_names)}, **{n: teacher[:, j] for j, n in enumerate(bin_names)}}


def sgcd_engine_loss(config: Any, model_output: dict | None = None, data: Any = None, dp_group: Any = None, *,
                     student_logits: torch.Tensor | None = None) -> Any:
    """SGCD's engine-level loss: verl's ``ppo_loss``, plus the exact divergence of scoring pairs.

    Training (the credit weights are already in ``advantages``): verl's ``ppo_loss`` unchanged.
    A ``compute_log_prob`` call flagged :data:`PAIR_SCORING` runs verl's top-k logits hook
    (``distillation_use_topk``): called with ``student_logits`` it returns
    ``{"sgcd_divergence"}`` from :func:`pair_divergence`; called as the loss
    afterwards it returns 0 (nothing is trained in that call).
    """
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.losses import ppo_loss

    if student_logits is not None:
        kl, _ = pair_divergence(student_logits[0], data)  # H_t is verl's own entropy of the old-log-prob pass
        return {"sgcd_divergence": kl.unsqueeze(0)}
    if tu.get_non_tensor_data(data=data, key=PAIR_SCORING, default=False):
        return torch.zeros((), device=model_output["log_probs"].device), {}
    return ppo_loss(config, model_output, data, dp_group)


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
