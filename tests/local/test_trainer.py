"""The local trainer on a tiny random model and the real τ³-airline env."""

from __future__ import annotations

import copy
import json
import math

import gymnasium
import pytest
import torch

from adapters.local.forward import _chunk_logp, chunked_rows, collate, generated_hidden, lm_head, pack, token_logp
from algorithms import sdpo
from adapters.local.rollout import BatchCache, extend_and_sample, prefix_cache, row_sampler
from adapters.local.trainer import LocalTrainer, LoopSettings
from algorithms.config import DynamicSamplingConfig, GRPOConfig, SDPOConfig, SGCDConfig
from algorithms.credit_reference import CreditItem, CreditReference, StepRef
from algorithms.divergence import register_divergence_backend, reverse_kl_and_entropy_naive

from tests.local.helpers import NO_WRITE_TRAIN, CoinFlipUser, make_engine, tiny_llama


class FixedReferenceSummarizer:
    """TEST STAND-IN summarizer: the same small credit reference for every group."""

    label = name = "fixed-test-stand-in"

    def __init__(self) -> None:
        self.calls = self.failures = self.cache_hits = 0

    def reference(self, task_prompt, success, failures):
        self.calls += 1
        return CreditReference(items=(CreditItem(1, "decisive", StepRef(0, 1), "Ending the chat politely decided it."),),
                               source=self.label)


def make_trainer(model, tokenizer, method: str, *, seed: int = 0, sgcd_cfg: SGCDConfig | None = None,
                 micro_batch_groups: int | None = None, activation_checkpointing: bool = False):
    engine = make_engine(model, tokenizer)
    loop = LoopSettings(steps=1, max_turns=2, max_new_tokens=6, seed=seed, micro_batch_groups=micro_batch_groups,
                        activation_checkpointing=activation_checkpointing)
    return LocalTrainer(
        model, tokenizer, engine, method=method, loop=loop,
        grpo_cfg=GRPOConfig(group_size=4, lr=1e-3), sampling_cfg=DynamicSamplingConfig(groups_per_batch=2, max_rounds=4),
        configs=(sgcd_cfg or SGCDConfig(chunk_size=64), SDPOConfig(topk=20)),
        summarizer=FixedReferenceSummarizer(), task_pool=NO_WRITE_TRAIN,
    )


def test_sampler_matches_transformers_generate(tiny_model, tokenizer):
    """Shared-prefix batched sampling (greedy) == HF generate on each full sequence."""
    prefix = tokenizer("system prompt shared by all siblings", add_special_tokens=False)["input_ids"]
    suffixes = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("short", "a much longer user turn here")]
    state = BatchCache.from_prefix(prefix_cache(tiny_model, prefix), len(prefix), len(suffixes))
    outs = extend_and_sample(tiny_model, state, suffixes, max_new_tokens=8, stop_ids=[-1], pad_id=0, temperature=0.0)
    for suffix, out in zip(suffixes, outs):
        ids = torch.tensor([prefix + suffix])
        ref = tiny_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:].tolist()
        assert out == ref


def _greedy_reference(model, ids: list[int], n: int) -> list[int]:
    full = torch.tensor([ids])
    return model.generate(full, attention_mask=torch.ones_like(full), max_new_tokens=n, do_sample=False,
                          eos_token_id=None, pad_token_id=0)[0, full.shape[1]:].tolist()


def test_turn_cache_continues_like_a_fresh_forward(tiny_model, tokenizer):
    """A BatchCache kept across turns (a row that stopped early, gaps, a dropped row) samples
    exactly what HF generate samples on each row's whole sequence."""
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    prefix = enc("system prompt shared by all siblings")
    cache = prefix_cache(tiny_model, prefix)
    turn1 = [enc("short"), enc("a much longer user turn here")]
    kw = dict(pad_id=0, temperature=0.0)
    dry = extend_and_sample(tiny_model, BatchCache.from_prefix(cache, len(prefix), 2), turn1, max_new_tokens=6,
                            stop_ids=[-1], **kw)
    stop = next(t for t in dry[0][1:] if t not in dry[1])  # row 0 stops early, row 1 runs on
    state = BatchCache.from_prefix(cache, len(prefix), 2)
    gen1 = extend_and_sample(tiny_model, state, turn1, max_new_tokens=6, stop_ids=[stop], **kw)
    assert gen1[0][-1] == stop and len(gen1[0]) < 6 == len(gen1[1])
    assert state.generated_fed == [len(gen1[0]), 5]  # the stop token was fed; row 1's last token not
    turn2 = [enc(" tool result: ok"), enc(" yes")]
    new = [gen1[r][state.generated_fed[r]:] + turn2[r] for r in range(2)]
    gen2 = extend_and_sample(tiny_model, state, new, max_new_tokens=5, stop_ids=[-1], **kw)
    seqs = [prefix + turn1[r] + gen1[r] + turn2[r] for r in range(2)]
    assert gen2 == [_greedy_reference(tiny_model, seqs[r], 5) for r in range(2)]
    fed = state.generated_fed[1]
    state = state.select([1])  # row 0 is done: the gaps only it filled go, row 1 has none
    assert bool(state.attention.all()) and state.attention.shape[1] == len(seqs[1]) + fed
    assert state.generated_fed == [fed]
    turn3 = gen2[1][fed:] + enc(" and then?")
    gen3 = extend_and_sample(tiny_model, state, [turn3], max_new_tokens=4, stop_ids=[-1], **kw)
    assert gen3[0] == _greedy_reference(tiny_model, seqs[1] + gen2[1] + enc(" and then?"), 4)


def test_rollout_turn_cache_and_batching_give_the_same_episodes(tiny_model, tokenizer):
    """Keeping the KV cache across turns, or rolling out one group at a time, changes the cost,
    not the episodes (greedy; the coin-flip user ends siblings at different turns, so rows drop
    out between turns)."""
    runs = []
    for keep, batch_groups in ((True, None), (False, None), (True, 1)):
        engine = make_engine(tiny_model, tokenizer, max_turns=4, temperature=0.0, p_stop=0.4)
        engine.keep_turn_cache, engine.batch_groups = keep, batch_groups
        episodes, _ = engine.run(NO_WRITE_TRAIN[:2], 3, seed=5)
        runs.append([(ep.group, ep.suffix_ids, ep.loss_mask, ep.reward, ep.turns) for ep in episodes])
    assert len({turns for *_, turns in runs[0]}) > 1  # episodes ended at different turns
    assert runs[0] == runs[1] == runs[2]


def _record(episodes):
    return [(ep.task_id, ep.group, ep.suffix_ids, ep.loss_mask, ep.reward, ep.turns) for ep in episodes]


@pytest.mark.parametrize("batch_groups", [None, 1])
def test_greedy_riders_are_greedy_episodes_and_leave_the_sampled_ones_as_they_were(tiny_model, tokenizer,
                                                                                   batch_groups):
    """The probe's greedy rows ride in the first lockstep batch of a sampled rollout: they are
    exactly the episodes a greedy rollout of their own gives, and the sampled episodes are
    exactly those of the rollout without them (greedy rows draw no random numbers)."""
    engine = make_engine(tiny_model, tokenizer, max_turns=3, p_stop=0.4)
    engine.batch_groups = batch_groups
    alone, alone_info = engine.run(NO_WRITE_TRAIN[:2], 3, seed=5)
    sampled, greedy, info = engine.run_with_probe(NO_WRITE_TRAIN[:2], 3, NO_WRITE_TRAIN[1:4], seed=5, probe_seed=7)
    solo = make_engine(tiny_model, tokenizer, max_turns=3, p_stop=0.4, temperature=0.0)
    reference, _ = solo.run(NO_WRITE_TRAIN[1:4], 1, seed=7)
    assert _record(sampled) == _record(alone)
    assert _record(greedy) == _record(reference) and [ep.task_id for ep in greedy] == NO_WRITE_TRAIN[1:4]
    assert info["generated_tokens"] == alone_info["generated_tokens"]  # the riders' tokens are counted apart
    assert info["probe_tokens"] == sum(ep.generated_tokens for ep in greedy) > 0


@pytest.mark.parametrize("batch_groups", [None, 1])
def test_a_sampled_probe_draws_its_own_fixed_random_numbers(tiny_model, tokenizer, batch_groups):
    """K sampled probe rows per task: each draws from generators seeded by (probe seed, task,
    sample, turn) alone, so the probe episodes are the same whatever rollout they ride in (other
    tasks, another rollout seed, none), the sampled episodes are those of the rollout without
    riders, and a task's samples differ from one another (they are draws, not the argmax)."""
    engine = make_engine(tiny_model, tokenizer, max_turns=3, p_stop=0.4)
    engine.batch_groups = batch_groups
    probe = NO_WRITE_TRAIN[1:3]
    alone, _ = engine.run(NO_WRITE_TRAIN[:2], 3, seed=5)
    sampled, drawn, info = engine.run_with_probe(NO_WRITE_TRAIN[:2], 3, probe, seed=5, probe_seed=7, probe_samples=4)
    _, other_batch, _ = engine.run_with_probe(NO_WRITE_TRAIN[2:5], 2, probe, seed=11, probe_seed=7, probe_samples=4)
    _, no_batch, _ = engine.run_with_probe([], 3, probe, seed=0, probe_seed=7, probe_samples=4)
    _, other_seed, _ = engine.run_with_probe([], 3, probe, seed=0, probe_seed=8, probe_samples=4)
    assert _record(sampled) == _record(alone)
    assert [(ep.task_id, ep.group) for ep in drawn] == [(t, j) for j, t in enumerate(probe) for _ in range(4)]
    assert _record(drawn) == _record(other_batch) == _record(no_batch)
    assert _record(other_seed) != _record(drawn)
    assert len({tuple(ep.suffix_ids) for ep in drawn[:4]}) > 1
    assert info["probe_tokens"] == sum(ep.generated_tokens for ep in drawn) > 0
    with pytest.raises(ValueError, match="probe_samples must be >= 0"):
        engine.run_with_probe([], 3, probe, seed=0, probe_samples=-1)


def test_row_sampler_samples_some_rows_and_takes_the_argmax_of_the_others():
    logits = torch.tensor([[0.0, 1.0, 0.0], [9.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    draws = {tuple(row_sampler([1.0, 0.0, 2.0], 3, generator=torch.Generator().manual_seed(s))(logits).tolist())
             for s in range(40)}
    assert {d[1] for d in draws} == {0}  # the greedy row
    assert len({d[2] for d in draws}) == 3 and len({d[0] for d in draws}) > 1  # the sampled rows
    assert row_sampler(0.0, 3)(logits).tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match="2 temperatures for 3 rows"):
        row_sampler([1.0, 0.0], 3)
    with pytest.raises(ValueError, match=">= 0"):
        row_sampler([1.0, -0.5, 0.0], 3)
    with pytest.raises(ValueError, match="1 row generators for 3 rows"):
        row_sampler(1.0, 3, row_generators=[None])


def test_a_row_with_its_own_generator_draws_by_inverse_cdf_apart_from_the_shared_stream():
    """Rows with their own generator draw ``softmax(z/τ)`` by the inverse CDF of one uniform
    each: the right frequencies, never a zero-probability token, none of the shared stream's
    numbers, and, as common random numbers, mostly the same token under a slightly moved ``z``."""
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = probs.clamp(min=1e-30).log().expand(3, 4).clone()
    logits[:, 3] = -math.inf
    shared, own = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    pick = row_sampler([1.0, 1.0, 0.0], 3, generator=shared, row_generators=[None, own, None])
    draws = torch.stack([pick(logits) for _ in range(4000)])
    counts = torch.bincount(draws[:, 1], minlength=4).float() / len(draws)
    assert torch.allclose(counts, probs, atol=0.03) and counts[3] == 0
    assert (draws[:, 2] == 0).all()  # the greedy row
    only_shared = row_sampler([1.0, 0.0], 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.stack([only_shared(logits[:2])[0] for _ in range(4000)]), draws[:, 0])
    moved = logits.clone()
    moved[:, 0] += 0.05  # p_0: 0.5 → about 0.51
    first, second = (torch.stack([row_sampler(1.0, 1, row_generators=[torch.Generator().manual_seed(s)])(z[:1])
                                  for s in range(2000)]) for z in (logits, moved))
    assert (first == second).float().mean() > 0.95  # independent draws would agree about 0.38 of the time


def test_a_step_with_a_probe_returns_its_greedy_episodes_apart_from_the_rollouts(tiny_model, tokenizer):
    trainer = make_trainer(tiny_model, tokenizer, "grpo")
    result = trainer.step(NO_WRITE_TRAIN[:2], probe_seed=3)
    assert [ep.task_id for ep in result.probe] == NO_WRITE_TRAIN[:2]
    assert not {id(ep) for ep in result.probe} & {id(ep) for ep in result.rollouts}
    assert result.metrics["rollout_episodes"] == len(result.rollouts)
    sampled = trainer.step(NO_WRITE_TRAIN[:2], probe_seed=3, probe_samples=2)
    assert [ep.task_id for ep in sampled.probe] == [NO_WRITE_TRAIN[0]] * 2 + [NO_WRITE_TRAIN[1]] * 2


def test_rollout_masks_only_generated_tokens(tiny_model, tokenizer):
    engine = make_engine(tiny_model, tokenizer)
    episodes, stats = engine.run(NO_WRITE_TRAIN[:2], 3, seed=1)
    assert len(episodes) == 6 and stats["generated_tokens"] == sum(ep.generated_tokens for ep in episodes)
    for ep in episodes:
        assert len(ep.suffix_ids) == len(ep.loss_mask)
        assert sum(ep.loss_mask) == ep.generated_tokens > 0
        assert ep.termination in {"user_stop", "max_turns", "agent_stop", "too_many_errors"}
        # the user's opening message lies in the unmasked (environment) part
        first_generated = ep.loss_mask.index(1)
        assert "reservation" in tokenizer.decode(ep.suffix_ids[:first_generated])


def test_teacher_forced_logp_equals_full_forward(tiny_model, tokenizer):
    """Prefix-cache + suffix log-probs == one plain forward over prefix + suffix."""
    engine = make_engine(tiny_model, tokenizer)
    episodes, _ = engine.run(NO_WRITE_TRAIN[:1], 2, seed=3)
    batch = collate(episodes, pad_id=engine.pad_id)
    prefix = engine.renderer.prefix_ids
    with torch.no_grad():
        hidden = generated_hidden(tiny_model, [prefix] * len(episodes), batch, grad=False)
        logp = token_logp(tiny_model, hidden, batch.targets[batch.mask])
        expected = []
        for ep in episodes:
            ids = torch.tensor([prefix + ep.suffix_ids])
            full = torch.log_softmax(tiny_model(ids).logits[0, :-1].float(), -1)
            tgt = ids[0, 1:]
            lp = full.gather(-1, tgt[:, None])[:, 0][len(prefix) - 1:]
            expected.append(lp[1:][torch.tensor(ep.loss_mask[1:], dtype=torch.bool)])
    torch.testing.assert_close(logp, torch.cat(expected), atol=1e-5, rtol=1e-5)


def test_chunked_token_logp_equals_one_pass(tiny_model):
    """Checkpointed chunks of the LM head give the one-pass log-probs and gradients."""
    torch.manual_seed(0)
    hidden = torch.randn(37, tiny_model.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, tiny_model.config.vocab_size, (37,))
    results = []
    for chunked in (False, True):
        tiny_model.zero_grad(set_to_none=True)
        hidden.grad = None
        logp = token_logp(tiny_model, hidden, targets, chunk_size=8) if chunked else \
            _chunk_logp(lm_head(tiny_model), hidden, targets)
        (logp * torch.linspace(-1, 1, 37)).sum().backward()
        results.append((logp.detach(), hidden.grad.clone(), lm_head(tiny_model).weight.grad.clone()))
    for one_pass, chunked in zip(*results):
        torch.testing.assert_close(chunked, one_pass, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(token_logp(tiny_model, hidden, targets, chunk_size=5), results[0][0])


def test_chunked_sdpo_divergence_equals_the_full_logit_loss():
    """SDPO from per-token GJSD in checkpointed chunks == sdpo_loss on full packed logits."""
    torch.manual_seed(1)
    head, teacher_head = torch.nn.Linear(16, 211, bias=False), torch.nn.Linear(16, 211, bias=False)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    hidden = torch.randn(int(mask.sum()), 16, requires_grad=True)
    t_hidden = torch.randn(int(mask.sum()), 16)
    _, pmask = pack(torch.zeros(int(mask.sum())), mask)  # (3, 5): each row's generated tokens
    logp, old_logp = -torch.rand(pmask.shape), -torch.rand(pmask.shape)
    sample_mask = torch.tensor([True, False, True])
    kw = dict(alpha=0.5, topk=20, add_tail=True)
    results = []
    for chunked in (False, True):
        head.zero_grad(set_to_none=True)
        hidden.grad = None
        if chunked:
            fn = lambda h, t: sdpo.generalized_jsd_topk(head(h), teacher_head(t).detach(), **kw)  # noqa: E731
            per_token, _ = pack(chunked_rows(fn, hidden, t_hidden, chunk_size=4), mask)
            loss, _ = sdpo.sdpo_loss_from_divergence(per_token, logp, old_logp, pmask.float(), sample_mask)
        else:
            s_logits, _ = pack(head(hidden), mask)
            t_logits, _ = pack(teacher_head(t_hidden).detach(), mask)
            loss, _ = sdpo.sdpo_loss(s_logits, t_logits, logp, old_logp, pmask.float(), sample_mask, **kw)
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), head.weight.grad.clone()))
    for full, chunked in zip(*results):
        torch.testing.assert_close(chunked, full, rtol=1e-5, atol=1e-7)
    assert results[0][1].abs().sum() > 0


@pytest.mark.parametrize("method", ["grpo", "sgcd", "sdpo"])
def test_each_method_trains(tiny_model, tokenizer, method):
    trainer = make_trainer(tiny_model, tokenizer, method)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    result = trainer.step()
    m = result.metrics
    assert m["updated"] == 1.0, m
    assert m["groups_kept"] >= 1 and len({ep.group for ep in result.episodes}) == m["groups_kept"]
    assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    assert any(not torch.equal(b, p) for b, p in zip(before, tiny_model.parameters()))
    rewards = [ep.reward for ep in result.episodes]
    assert 0.0 in rewards and 1.0 in rewards  # dynamic sampling kept only mixed groups
    if method == "sgcd":
        assert m["sgcd/groups_with_reference"] >= 1
        w = trainer.method.last_credit_weights
        assert bool((w >= 0.5 - 1e-6).all()) and bool((w <= 2.0 + 1e-6).all())
        assert not w.requires_grad
    if method == "sdpo":
        assert trainer.method.teacher.model is not None
        assert any(not torch.equal(t, p) for t, p in zip(before, trainer.method.teacher.model.parameters()))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", ["grpo", "sgcd", "sdpo"])
def test_each_method_trains_on_cuda(tiny_model, tokenizer, method):
    """One step of each method with the policy on CUDA: sampling, collation, the update and, for
    SGCD, the automatic divergence backend (the fused kernel where Triton is installed)."""
    model = tiny_model.to("cuda")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(model, tokenizer, method)
    m = trainer.step().metrics
    assert m["updated"] == 1.0, m
    assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    if method == "sgcd":
        assert trainer.method.last_credit_weights.is_cuda


def test_sgcd_with_uniform_divergence_is_exactly_grpo(tokenizer):
    """Constant divergence ⇒ w ≡ 1 ⇒ the SGCD update equals the GRPO+KL update bit for bit."""

    def uniform(student_hidden, teacher_hidden, weight, **_):
        n = student_hidden.shape[:-1]
        return torch.full(n, 0.7), torch.full(n, 1.3)

    register_divergence_backend("uniform-test", uniform, overwrite=True)
    grpo_model, sgcd_model = tiny_llama(len(tokenizer), seed=5), tiny_llama(len(tokenizer), seed=5)
    grpo_trainer = make_trainer(grpo_model, tokenizer, "grpo", seed=2)
    sgcd_trainer = make_trainer(sgcd_model, tokenizer, "sgcd", seed=2,
                                sgcd_cfg=SGCDConfig(divergence_backend="uniform-test"))
    a, b = grpo_trainer.step(), sgcd_trainer.step()
    assert a.metrics["updated"] == b.metrics["updated"] == 1.0
    assert [ep.suffix_ids for ep in a.episodes] == [ep.suffix_ids for ep in b.episodes]
    assert b.metrics["sgcd/groups_with_reference"] >= 1
    assert bool((sgcd_trainer.method.last_credit_weights == 1).all())
    assert a.metrics["loss"] == b.metrics["loss"]
    for p, q in zip(grpo_model.parameters(), sgcd_model.parameters()):
        assert torch.equal(p, q)


def record_gradients(trainer) -> list[list[torch.Tensor]]:
    """The gradients the optimizer is handed at each step (recorded just before it steps)."""
    seen: list[list[torch.Tensor]] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append([p.grad.detach().clone() for p in trainer.model.parameters() if p.grad is not None])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    return seen


@pytest.mark.parametrize("method", ["grpo", "sgcd", "sdpo"])
def test_micro_batches_give_the_one_pass_update(tokenizer, method):
    """Gradient accumulation over micro-batches of one group with whole-batch denominators
    reproduces the one-pass loss and gradient."""
    one_pass, micro = tiny_llama(len(tokenizer), seed=7), tiny_llama(len(tokenizer), seed=7)
    a = make_trainer(one_pass, tokenizer, method, seed=4)
    b = make_trainer(micro, tokenizer, method, seed=4, micro_batch_groups=1)
    grads_a, grads_b = record_gradients(a), record_gradients(b)
    ra, rb = a.step(), b.step()
    assert ra.metrics["updated"] == rb.metrics["updated"] == 1.0
    assert ra.metrics["micro_batches"] == 1.0 and rb.metrics["micro_batches"] == rb.metrics["groups_kept"] >= 2
    assert rb.metrics["loss"] == pytest.approx(ra.metrics["loss"], rel=1e-5, abs=1e-7)
    # Compared before AdamW: its first step moves each parameter by ≈ lr·sign(g), which hides a
    # wrong denominator and turns fp32 summation-order noise in a near-zero g into a full lr step.
    assert len(grads_a) == len(grads_b) == 1
    scale = max(float(g.abs().max()) for g in grads_a[0])
    for g, h in zip(grads_a[0], grads_b[0], strict=True):
        torch.testing.assert_close(h, g, rtol=1e-4, atol=1e-6 * scale)


@pytest.mark.parametrize("method", ["grpo", "sgcd", "sdpo"])
def test_activation_checkpointing_gives_the_same_update(tokenizer, method):
    """With activation checkpointing the decoder layers really recompute in the backward pass
    (their MLPs run twice as often) and still read the shared prefix cache: same update."""
    plain, ckpt = tiny_llama(len(tokenizer), seed=7), tiny_llama(len(tokenizer), seed=7)
    a = make_trainer(plain, tokenizer, method, seed=4)
    b = make_trainer(ckpt, tokenizer, method, seed=4, activation_checkpointing=True)
    episodes, _, _, _ = a.collect()
    calls = {"plain": 0, "ckpt": 0}

    def counting(forward, name):  # not a forward hook: hooks do not fire in the recompute
        def run(*args, **kwargs):
            calls[name] += 1
            return forward(*args, **kwargs)
        return run

    for name, model in (("plain", plain), ("ckpt", ckpt)):
        for layer in model.model.layers:
            layer.mlp.forward = counting(layer.mlp.forward, name)
    ma, mb = a.update(copy.deepcopy(episodes)), b.update(copy.deepcopy(episodes))
    assert ma["updated"] == mb["updated"] == 1.0
    assert calls["ckpt"] > calls["plain"] > 0
    assert mb["loss"] == pytest.approx(ma["loss"], rel=1e-5, abs=1e-7)
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_no_mixed_group_means_no_update(tiny_model, tokenizer):
    trainer = make_trainer(tiny_model, tokenizer, "grpo")
    trainer.engine.make_env = lambda: gymnasium.make("sgcd_envs/Tau3Airline-v0", split="train", max_turns=1,
                                                     user=CoinFlipUser(p_stop=1.0))
    before = [p.detach().clone() for p in tiny_model.parameters()]
    result = trainer.step()
    assert result.metrics["updated"] == 0.0 and result.metrics["groups_kept"] == 0
    assert result.metrics["groups_dropped"] == result.metrics["groups_drawn"] > 0
    assert all(torch.equal(b, p) for b, p in zip(before, tiny_model.parameters()))


def test_checkpoint_roundtrip(tiny_model, tokenizer, tmp_path):
    trainer = make_trainer(tiny_model, tokenizer, "sdpo")
    trainer.step()
    path = trainer.save(tmp_path)
    fresh_model = copy.deepcopy(tiny_model)
    for p in fresh_model.parameters():
        torch.nn.init.zeros_(p) if p.ndim == 1 else torch.nn.init.normal_(p)
    restored = make_trainer(fresh_model, tokenizer, "sdpo")
    restored.load(tmp_path)
    assert restored.step_idx == trainer.step_idx == 1
    for p, q in zip(tiny_model.parameters(), fresh_model.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(trainer.method.teacher.model.parameters(), restored.method.teacher.model.parameters()):
        assert torch.equal(p, q)
    assert path.name == "step_000001"
    with pytest.raises(ValueError, match="written by method 'sdpo'"):
        make_trainer(copy.deepcopy(tiny_model), tokenizer, "grpo").load(path)


def test_packing_keeps_rows():
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    values = torch.tensor([1.0, 2.0, 3.0])
    packed, pmask = pack(values, mask)
    assert packed.tolist() == [[1.0, 2.0], [3.0, 0.0], [0.0, 0.0]]
    assert pmask.tolist() == [[True, True], [True, False], [False, False]]


def test_loop_settings_validate():
    with pytest.raises(ValueError, match="LoopSettings.steps"):
        LoopSettings(steps=0)
    with pytest.raises(ValueError, match="temperature"):
        LoopSettings(temperature=0.0)


def _draws(trainer):
    """Record the tasks each dynamic-sampling round draws."""
    seen, draw = [], trainer._draw_tasks

    def recording(n):
        picks = draw(n)
        seen.append(picks)
        return picks
    trainer._draw_tasks = recording
    return seen


@pytest.mark.parametrize("interrupt_in_rollout", [False, True])
def test_a_resumed_trainer_continues_as_the_uninterrupted_one(tiny_model, tokenizer, tmp_path, interrupt_in_rollout):
    """Train 2 steps straight; or 1 step, (Ctrl-C in step 2's rollout,) checkpoint, resume in a
    fresh trainer and train step 2: the same tasks, rewards and weights."""
    init = copy.deepcopy(tiny_model)
    straight = make_trainer(copy.deepcopy(init), tokenizer, "grpo")
    straight.step()
    straight_draws = _draws(straight)
    second = straight.step()

    first = make_trainer(copy.deepcopy(init), tokenizer, "grpo")
    first.step()
    if interrupt_in_rollout:  # the rollout of step 2 has drawn its tasks when Ctrl-C lands
        run = first.engine.run

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        first.engine.run = interrupted
        with pytest.raises(KeyboardInterrupt):
            first.step()
        first.engine.run = run
        assert first.step_idx == 1
    first.save(tmp_path, meta={"method": "grpo"})
    resumed = make_trainer(copy.deepcopy(init), tokenizer, "grpo")
    resumed.load(tmp_path)
    resumed_draws = _draws(resumed)
    again = resumed.step()

    assert resumed_draws == straight_draws
    assert [ep.reward for ep in again.rollouts] == [ep.reward for ep in second.rollouts]
    assert again.metrics["updated"] == second.metrics["updated"] == 1.0  # step 2 changed the weights
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert json.loads((tmp_path / "step_000001" / "checkpoint.json").read_text()) == {"method": "grpo", "step": 1}


def test_save_keeps_only_the_newest_checkpoints(tiny_model, tokenizer, tmp_path):
    trainer = make_trainer(tiny_model, tokenizer, "grpo")
    for _ in range(3):
        trainer._end_step()
        trainer.save(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000003"]


def test_the_trained_policy_is_the_one_the_rollout_sampled_from(tiny_model, tokenizer):
    """At rollout temperature τ the trainer's log-probs are log softmax(z/τ): the distribution
    the sampler drew from (verl divides by ``rollout.temperature`` likewise)."""
    tau = 0.6
    trainer = make_trainer(tiny_model, tokenizer, "grpo")
    trainer.engine.temperature = tau
    episodes, _ = trainer.engine.run(NO_WRITE_TRAIN[:1], 2, seed=3)
    adv = torch.zeros(len(episodes))
    with torch.no_grad():
        x = trainer.forward(episodes, torch.zeros(2), torch.zeros(2, dtype=torch.long), adv, [None, None], None)
    prefix = trainer.engine.renderer.prefix_ids
    for row, ep in enumerate(episodes):
        ids = torch.tensor([prefix + ep.suffix_ids])
        with torch.no_grad():
            logits = tiny_model(ids).logits[0, :-1].float()
        picked = torch.log_softmax(logits / tau, -1).gather(-1, ids[0, 1:, None])[:, 0][len(prefix):]
        expected = picked[torch.tensor(ep.loss_mask[1:], dtype=torch.bool)]
        torch.testing.assert_close(x.logp[row][x.pmask[row]], expected, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(expected, torch.log_softmax(logits, -1).gather(
            -1, ids[0, 1:, None])[:, 0][len(prefix):][torch.tensor(ep.loss_mask[1:], dtype=torch.bool)])


def test_an_ema_teacher_is_scored_with_its_own_lm_head(tiny_model, tokenizer):
    """SGCD with teacher="ema": D_t uses the EMA model's head on the EMA hidden states (not the
    student's head); with equal weights it equals the shared-head kernel."""
    trainer = make_trainer(tiny_model, tokenizer, "sgcd", sgcd_cfg=SGCDConfig(chunk_size=7, teacher="ema"))
    method = trainer.method
    torch.manual_seed(0)
    hs, ht = torch.randn(20, tiny_model.config.hidden_size), torch.randn(20, tiny_model.config.hidden_size)
    shared = reverse_kl_and_entropy_naive(hs, ht, lm_head(tiny_model).weight.detach())
    torch.testing.assert_close(method.divergence(hs, ht, method.teacher.model), shared, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the EMA copy drifts: its head is no longer the student's
        lm_head(method.teacher.model).weight.mul_(1.5)
    kl, ent = method.divergence(hs, ht, method.teacher.model)
    zs, zt = hs @ lm_head(tiny_model).weight.T, ht @ lm_head(method.teacher.model).weight.T
    ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
    torch.testing.assert_close(kl, (ls.exp() * (ls - lt)).sum(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, -(ls.exp() * ls).sum(-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(kl, shared[0], atol=1e-3)


def test_the_teacher_on_the_students_own_prompt_sees_what_the_student_sees(tiny_model, tokenizer):
    """The teacher's view (its whole prompt, then the student's tokens from the first generated
    one) with the student's own prompt gives the student's hidden rows; a rewritten prompt does not."""
    from adapters.local.methods.base import attempt, student_prompt_ids, teacher_hidden

    engine = make_engine(tiny_model, tokenizer)
    episodes, _ = engine.run(NO_WRITE_TRAIN[:1], 2, seed=3)
    renderer = engine.renderer
    own = [renderer.prompt_ids(list(attempt(ep, renderer.system).prompt)) for ep in episodes]
    assert own == [student_prompt_ids(ep, renderer.prefix_ids) for ep in episodes]
    with torch.no_grad():
        student = generated_hidden(tiny_model, [renderer.prefix_ids] * 2, collate(episodes, pad_id=engine.pad_id),
                                   grad=False)
        teacher = teacher_hidden(tiny_model, episodes, own, pad_id=engine.pad_id, device="cpu")
        torch.testing.assert_close(teacher, student, atol=1e-5, rtol=1e-5)
        other = [renderer.prompt_ids([{"role": "system", "content": renderer.system + " Be brief."},
                                      dict(ep.env_messages[0])]) for ep in episodes]
        moved = teacher_hidden(tiny_model, episodes, other, pad_id=engine.pad_id, device="cpu")
    assert moved.shape == student.shape and not torch.allclose(moved, student, atol=1e-3)
