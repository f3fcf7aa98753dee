"""The SDPO loss registered in verl equals ``algorithms.sdpo.sdpo_loss_sampled_token``.

Checked three ways: the registered function called directly; through verl's registry getter; and
through :func:`adapters.verl.losses.sdpo_engine_loss` → verl's engine-level ``ppo_loss`` on the
jagged micro-batch the FSDP/Megatron engines build (with and without the KL-to-reference term).
"""

from __future__ import annotations

import pytest
import torch
from verl_required import verl  # noqa: F401  (skip / fail guard)

import _batch as B
from adapters.verl import plugin  # noqa: F401  (registers "sdpo")
from adapters.verl.config import SDPOPolicyLossConfig
from adapters.verl.losses import sdpo_engine_loss, sdpo_policy_loss
from algorithms import grpo, sdpo
from verl.trainer.ppo.core_algos import get_policy_loss_fn
from verl.utils.metric.utils import Metric
from verl.utils.py_functional import append_to_dict
from verl.utils.torch_functional import allgather_dict_into_dict
from verl.workers.config.actor import ActorConfig
from verl.workers.utils.losses import ppo_loss

IS_CLIP = 2.0


def _actor_config(*, use_kl_loss: bool = False, kl_coef: float = 0.0) -> ActorConfig:
    return ActorConfig(
        strategy="fsdp", rollout_n=3, ppo_micro_batch_size_per_gpu=1, loss_agg_mode="token-mean",
        use_kl_loss=use_kl_loss, kl_loss_type="low_var_kl", kl_loss_coef=kl_coef, entropy_coeff=0.0,
        policy_loss=SDPOPolicyLossConfig(loss_mode="sdpo", sdpo_is_clip=IS_CLIP),
    )


def _numbers(seed: int):
    g = torch.Generator().manual_seed(seed)
    mask = B.response_mask()
    old = B.log_probs(seed)
    # large enough moves that some ratios exceed the IS cap of 2
    logp = (old + 0.8 * torch.randn(old.shape, generator=g)).clamp(max=0.0) * mask
    teacher = (old + 0.5 * torch.randn(old.shape, generator=g)).clamp(max=0.0) * mask
    ref = (old + 0.1 * torch.randn(old.shape, generator=g)).clamp(max=0.0) * mask
    return mask, old, logp, teacher, ref


@pytest.mark.parametrize("sample_mask", [[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1]])
def test_registered_loss_equals_algorithms(sample_mask: list[int]) -> None:
    mask, old, logp, teacher, _ = _numbers(0)
    sm = torch.tensor(sample_mask, dtype=torch.float32)
    expected, _ = sdpo.sdpo_loss_sampled_token(logp, teacher, old, mask, sm, is_clip=IS_CLIP, loss_agg_mode="token-mean")
    for fn in (sdpo_policy_loss, get_policy_loss_fn("sdpo")):
        got, metrics = fn(old, logp, torch.zeros_like(old), mask.bool(), "token-mean", _actor_config(),
                          teacher_log_prob=teacher, sample_mask=sm)
        torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-6)
        assert "sdpo/is_clip_frac" in metrics
    assert metrics["sdpo/is_clip_frac"] > 0  # the IS cap was exercised


@pytest.mark.parametrize("use_kl_loss", [False, True])
def test_engine_loss_through_verl_ppo_loss_equals_algorithms(use_kl_loss: bool) -> None:
    mask, old, logp, teacher, ref = _numbers(1)
    sm = torch.ones(6)
    micro = B.micro_batch(
        {"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old), "ref_log_prob": ref,
         "teacher_log_probs": teacher},
        {"sdpo_sample_mask": sm},
    )
    student = logp.clone().requires_grad_(True)
    cfg = _actor_config(use_kl_loss=use_kl_loss, kl_coef=0.05)
    got, metrics = sdpo_engine_loss(cfg, {"log_probs": B.packed_model_log_probs(student)}, micro)
    got.backward()

    local = logp.clone().requires_grad_(True)
    expected, _ = sdpo.sdpo_loss_sampled_token(local, teacher, old, mask, sm, is_clip=IS_CLIP)
    if use_kl_loss:
        expected = expected + 0.05 * grpo.aggregate_loss(grpo.kl_k3(local, ref), mask, "token-mean")
    expected.backward()
    torch.testing.assert_close(got.detach(), expected.detach(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(student.grad * mask, local.grad * mask, atol=1e-7, rtol=1e-5)
    assert ("kl_loss" in metrics) == use_kl_loss


def test_engine_loss_normalises_by_global_tokens_when_some_samples_have_no_teacher() -> None:
    mask, old, logp, teacher, _ = _numbers(2)
    sm = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    micro = B.micro_batch(
        {"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old), "teacher_log_probs": teacher},
        {"sdpo_sample_mask": sm},
    )
    got, _ = sdpo_engine_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(logp)}, micro)
    local, _ = sdpo.sdpo_loss_sampled_token(logp, teacher, old, mask, sm, is_clip=IS_CLIP)
    distilled = float((mask * sm.unsqueeze(-1)).sum())
    torch.testing.assert_close(got, local * distilled / float(mask.sum()), atol=1e-7, rtol=1e-6)


def test_stock_ppo_loss_without_teacher_fails_with_a_pointer() -> None:
    mask, old, logp, _, _ = _numbers(3)
    micro = B.micro_batch({"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old)})
    with pytest.raises(RuntimeError, match="SDPOTrainerSync"):
        ppo_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(logp)}, micro)


def test_engine_loss_names_missing_field() -> None:
    mask, old, logp, _, _ = _numbers(4)
    micro = B.micro_batch({"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old)})
    with pytest.raises(KeyError, match="teacher_log_probs"):
        sdpo_engine_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(logp)}, micro)


def _engine_metrics(sample_mask: list[float], seed: int, dp_group=None) -> dict:
    """The metrics ``sdpo_engine_loss`` returns for one micro-batch (verl ``Metric`` objects)."""
    mask, old, logp, teacher, _ = _numbers(seed)
    micro = B.micro_batch(
        {"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old), "teacher_log_probs": teacher},
        {"sdpo_sample_mask": torch.tensor(sample_mask)},
    )
    _, metrics = sdpo_engine_loss(_actor_config(), {"log_probs": B.packed_model_log_probs(logp)}, micro, dp_group)
    return metrics


def _distilled_token_mean(seeds_and_masks: list[tuple[int, list[float]]]) -> float:
    """The IS ratio averaged over every distilled token of the given micro-batches."""
    total = count = 0.0
    for seed, sm in seeds_and_masks:
        mask, old, logp, _, _ = _numbers(seed)
        lm = mask * torch.tensor(sm).unsqueeze(-1)
        total += float((torch.exp(logp - old).clamp(max=IS_CLIP) * lm).sum())
        count += float(lm.sum())
    return total / count


def test_micro_batch_without_distilled_tokens_leaves_the_distilled_token_means_alone() -> None:
    """verl merges micro-batch metrics with ``append_to_dict`` and takes each ``Metric``'s mean:
    a micro-batch with no distilled tokens must not pull ``is_ratio_mean`` towards 0."""
    merged: dict = {}
    for metrics in (_engine_metrics([1.0] * 6, seed=5), _engine_metrics([0.0] * 6, seed=6)):
        append_to_dict(merged, metrics)
    got = {key: merged[key].aggregate() for key in sdpo.DISTILLED_TOKEN_MEANS}
    assert got["sdpo/is_ratio_mean"] == pytest.approx(_distilled_token_mean([(5, [1.0] * 6)]), rel=1e-6)
    assert 0 < got["sdpo/is_clip_frac"] < 1
    assert merged["sdpo/num_tokens"].aggregate() == pytest.approx(sum(B.RESP_LENS) / 2)


def _dp_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """One gloo dp rank: its micro-batch's SDPO metrics, gathered and reduced as verl's worker does."""
    import json

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sample_mask = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0] if rank == 0 else [0.0] * 6  # rank 1 distils nothing
        metrics = _engine_metrics(sample_mask, seed=10 + rank, dp_group=torch.distributed.group.WORLD)
        gathered = allgather_dict_into_dict(metrics, group=torch.distributed.group.WORLD)
        reduced = {key: Metric.aggregate_dp(val) for key, val in gathered.items() if key in sdpo.DISTILLED_TOKEN_MEANS}
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({key: float(v) for key, v in reduced.items()}, f)
    finally:
        torch.distributed.destroy_process_group()


def test_dp_ranks_report_the_distilled_token_mean_pooled_over_ranks(tmp_path) -> None:
    """With dp > 1 every rank emits the same keys (verl's ``Metric.aggregate_dp`` needs equal counts)
    and the value is the mean over the distilled tokens of all ranks, even when a rank has none."""
    import json

    torch.multiprocessing.spawn(_dp_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0] == reports[1] and set(reports[0]) == set(sdpo.DISTILLED_TOKEN_MEANS)
    expected = _distilled_token_mean([(10, [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]), (11, [0.0] * 6)])
    assert reports[0]["sdpo/is_ratio_mean"] == pytest.approx(expected, rel=1e-6)


# -- the top-k + tail form (algorithm.sdpo.divergence=topk) ----------------------------------------

V = 40


def _pairs_micro_batch(student: torch.Tensor, teacher: torch.Tensor, k: int):
    """A pair-scoring micro-batch as the engine's hook sees it: record 2i = row i's student context
    (prompt B.PROMPT_LENS[i]), record 2i + 1 its teacher context (a prompt 2 tokens longer), both
    ending in the same response; the packed logits put ``student`` / ``teacher`` (B, T, V) at the
    rows predicting the response tokens."""
    from tensordict import TensorDict
    from verl.utils import tensordict_utils as tu

    from adapters.verl.losses import SDPO_PAIR_SCORING

    prompts, responses, blocks = [], [], []
    for i, (p, r) in enumerate(zip(B.PROMPT_LENS, B.RESP_LENS)):
        for prompt_len, logits in ((p, student[i]), (p + 2, teacher[i])):
            block = torch.zeros(prompt_len + r, V)
            block[prompt_len - 1: prompt_len - 1 + r] = logits[:r]
            blocks.append(block)
            prompts.append(torch.zeros(prompt_len, dtype=torch.int64))
            responses.append(torch.zeros(r, dtype=torch.int64))
    nest = lambda xs: torch.nested.as_nested_tensor(xs, layout=torch.jagged)  # noqa: E731
    micro = TensorDict({"prompts": nest(prompts), "responses": nest(responses)}, batch_size=[len(prompts)])
    tu.assign_non_tensor(micro, **{SDPO_PAIR_SCORING: True, "sdpo_topk": k})
    return micro, torch.cat(blocks)


def _bins_through_the_pair_hook(student: torch.Tensor, teacher: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """The driver's fields, built as SDPOTrainerSync builds them: pair hook → columns → fold_bins."""
    from adapters.verl.losses import bin_columns
    from adapters.verl.trainer import fold_bins

    micro, packed = _pairs_micro_batch(student, teacher, k)
    columns = sdpo_engine_loss(_actor_config(), data=micro, student_logits=packed.unsqueeze(0))
    id_names, bin_names = bin_columns(k)
    assert set(columns) == {*id_names, *bin_names}
    per_row, offset = {}, 0
    for i, (p, r) in enumerate(zip(B.PROMPT_LENS, B.RESP_LENS)):
        rows = slice(offset + p - 1, offset + p - 1 + r)
        per_row[i] = (torch.stack([columns[n][0, rows] for n in id_names], -1),
                      torch.stack([columns[n][0, rows] for n in bin_names], -1))
        offset += 2 * (p + r) + 2
    return fold_bins(per_row, B.RESP_LENS, k)


def _topk_case(seed: int, k: int):
    """Student logits packed as the engine's update sees them, teacher logits, the driver's bins."""
    g = torch.Generator().manual_seed(seed)
    mask, old, logp, _, ref = _numbers(seed)
    student = torch.randn(len(B.RESP_LENS), B.T, V, generator=g) * 2
    teacher = torch.randn(len(B.RESP_LENS), B.T, V, generator=g) * 2
    packed = torch.cat([torch.cat([torch.zeros(p - 1, V), student[i, :r], torch.zeros(1, V)])
                        for i, (p, r) in enumerate(zip(B.PROMPT_LENS, B.RESP_LENS))])
    return mask, old, logp, ref, packed, student, teacher, _bins_through_the_pair_hook(student, teacher, k)


def _topk_engine_loss(cfg, mask, old, logp, ref, packed, fields, sm):
    micro = B.micro_batch({"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old),
                           "ref_log_prob": ref}, {"sdpo_sample_mask": sm, **fields})
    hooked = sdpo_engine_loss(cfg, data=micro, student_logits=packed.unsqueeze(0))
    assert set(hooked) == {"sdpo_divergence"} and hooked["sdpo_divergence"].shape == (1, packed.shape[0])
    offsets = torch.tensor([0] + [p + r for p, r in zip(B.PROMPT_LENS, B.RESP_LENS)]).cumsum(0)
    divergence = torch.nested.nested_tensor_from_jagged(hooked["sdpo_divergence"][0], offsets)
    return sdpo_engine_loss(cfg, {"log_probs": B.packed_model_log_probs(logp), "sdpo_divergence": divergence}, micro)


def _response_grads(packed_grad: torch.Tensor) -> torch.Tensor:
    grads, offset = torch.zeros(len(B.RESP_LENS), B.T, V), 0
    for i, (p, r) in enumerate(zip(B.PROMPT_LENS, B.RESP_LENS)):
        grads[i, :r] = packed_grad[offset + p - 1: offset + p - 1 + r]
        offset += p + r
    return grads


@pytest.mark.parametrize(("k", "sample_mask"), [(8, [1, 1, 1, 1, 1, 1]), (8, [1, 0, 1, 0, 1, 1]), (V, [1] * 6)])
def test_topk_engine_loss_equals_local_sdpo_loss(k: int, sample_mask: list[int]) -> None:
    """Pair hook → bins → update hook → loss == ``algorithms.sdpo.sdpo_loss`` (student top-k + tail), loss and gradient."""
    mask, old, logp, ref, packed, student, teacher, fields = _topk_case(5, k=k)
    sm = torch.tensor(sample_mask, dtype=torch.float32)
    packed = packed.clone().requires_grad_(True)
    got, metrics = _topk_engine_loss(_actor_config(), mask, old, logp, ref, packed, fields, sm)
    got.backward()

    local_logits = student.clone().requires_grad_(True)
    expected, _ = sdpo.sdpo_loss(local_logits, teacher, logp, old, mask, sm, alpha=0.5, topk=k, is_clip=IS_CLIP)
    expected.backward()
    scale = float((mask * sm.unsqueeze(-1)).sum()) / float(mask.sum())  # verl's global token-mean
    torch.testing.assert_close(got.detach(), expected.detach() * scale, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(_response_grads(packed.grad), local_logits.grad * scale, atol=1e-7, rtol=1e-4)
    assert "sdpo/distill_per_token" in metrics


def test_pair_scoring_call_trains_nothing() -> None:
    micro, _ = _pairs_micro_batch(torch.zeros(6, B.T, V), torch.zeros(6, B.T, V), 4)
    loss, metrics = sdpo_engine_loss(_actor_config(), {"log_probs": torch.zeros(3)}, micro)
    assert float(loss) == 0.0 and metrics == {}


def test_topk_hook_names_missing_bins() -> None:
    mask, old, logp, _, _ = _numbers(4)
    micro = B.micro_batch({"response_mask": mask, "old_log_probs": old, "advantages": torch.zeros_like(old)},
                          {"sdpo_sample_mask": torch.ones(6)})
    with pytest.raises(KeyError, match="sdpo_bin_ids"):
        sdpo_engine_loss(_actor_config(), data=micro, student_logits=torch.zeros(1, 5, V))


def test_topk_jsd_is_the_same_in_chunks_of_rows() -> None:
    from adapters.verl.losses import topk_jsd_per_token

    mask, old, logp, ref, packed, _, _, fields = _topk_case(7, k=8)
    micro = B.micro_batch({"response_mask": mask}, fields)
    whole = topk_jsd_per_token(packed, micro, alpha=0.5)
    torch.testing.assert_close(topk_jsd_per_token(packed, micro, alpha=0.5, chunk=2), whole, atol=1e-7, rtol=0)
