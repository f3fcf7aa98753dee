"""SGCD's credit weights on the verl path agree with the local trainer's on the same episodes.

Same inputs on both paths: real τ³ episodes (fixed token ids: the student prompt, the teacher
prompt with the offline stand-in summarizer's credit reference, the response with its
observation tokens masked), the same weights (SmolLM2-135M from the embedded GGUF, a 49,152-token
vocabulary), the same credit reference.

- Local: the model's hidden states on both contexts → ``algorithms.divergence.reverse_kl_and_entropy``
  (the full-vocabulary D_t of ``adapters.local.methods.sgcd``) → ``algorithms.sgcd.credit_weights``.
- verl, ``exact`` (the default on FSDP): the packed logits of each (student, teacher) record pair,
  as verl's engine hands them to its top-k logits hook, → ``adapters.verl.losses.sgcd_engine_loss``
  → ``adapters.verl.credit.apply_credit_weights`` on a ``DataProto`` whose advantages come from
  verl's ``compute_advantage``. (tests/verl/test_end_to_end.py runs the same hook inside verl's
  FSDP engine.)
- verl, ``shared_topk`` and ``k3_sampled_token``: the CPU rollout backend's server
  (``TransformersServer``, answering vLLM's ``prompt_logprobs`` request as verl's scoring call
  makes it) → ``adapters.verl.scoring`` → ``algorithms.topk.reverse_kl_shared_topk`` (or k3) →
  the same weights.

The figures (max |Δw|, Pearson r, per k and for the k3 sampled-token estimator) are printed; run
with ``-s`` to see them.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium
import pytest
import torch
from verl_required import verl  # noqa: F401  (skip / fail guard)

import sgcd_envs  # noqa: F401
from adapters.llm.summarizer import OfflineSummarizer
from adapters.verl.config import BenchAlgoConfig, SGCDSection
from adapters.verl.credit import apply_credit_weights, sampled_token_divergence
from adapters.verl.scoring import response_rows, score_params
from adapters.verl.teacher import Episode, sgcd_teacher_messages
from adapters.verl.transformers_rollout import TransformersServer
from algorithms import sgcd
from algorithms.divergence import reverse_kl_and_entropy
from algorithms.topk import reverse_kl_shared_topk
from sgcd_envs.tau3_airline import WRITE_TOOLS
from sgcd_envs.tau3_airline.tasks import get_task
from verl import DataProto
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

SYSTEM = "You are an airline customer-service agent. Call tools as <tool_call>{...}</tool_call> and follow policy."
TOLERANCE = {"max_abs": 0.05, "pearson": 0.99}
"""What the issue asks of the verl path's default estimator."""


def _episode(uid: str, task_id: str, actions: list[tuple[str, dict]], final: str) -> Episode:
    env = gymnasium.make("sgcd_envs/Tau3Airline-v0", split="all")
    obs, _ = env.reset(options={"task_id": task_id})
    reward = 0.0
    for text in [f"<tool_call>{json.dumps({'name': n, 'arguments': a})}</tool_call>" for n, a in actions] + [final]:
        obs, reward, terminated, truncated, _ = env.step(text)
        if terminated or truncated:
            break
    return Episode(uid=uid, reward=float(reward), prompt_messages=[{"role": "system", "content": SYSTEM}, *obs[:1]],
                   messages=obs)


def _response(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """The conversation after the prompt as agent-loop response tokens: assistant turns trained
    (mask 1), tool results and user turns observed (mask 0)."""
    ids: list[int] = []
    mask: list[int] = []
    for m in messages:
        if m["role"] == "assistant":
            calls = "".join(f"<tool_call>{json.dumps({'name': c['function']['name'], 'arguments': c['function']['arguments']})}"
                            "</tool_call>" for c in m.get("tool_calls") or ())
            piece, trained = (m.get("content") or "") + calls + "<|im_end|>\n", 1
        else:
            piece, trained = f"<|im_start|>{m['role']}\n{m.get('content') or ''}<|im_end|>\n<|im_start|>assistant\n", 0
        new = tokenizer.encode(piece, add_special_tokens=False)
        ids += new
        mask += [trained] * len(new)
    return ids, mask


@pytest.fixture(scope="module")
def case(converted_model_dir, tokenizer):
    gold = [(a.name, a.arguments) for a in get_task("21").actions]
    episodes = [
        _episode("g1", "21", gold, "All updated. ###STOP###"),
        _episode("g1", "21", [("cancel_reservation", {"reservation_id": "OBUT9V"})], "Done. ###STOP###"),
        _episode("g2", "21", gold, "Your flights are changed. ###STOP###"),
        _episode("g2", "21", [], "I cannot help with that. ###STOP###"),
    ]
    teacher_msgs, _ = sgcd_teacher_messages(episodes, OfflineSummarizer(write_tools=WRITE_TOOLS))
    assert all(m is not None for m in teacher_msgs), "every group has a success/failure contrast"
    builder = create_continuous_token_builder(tokenizer)
    rows = []
    for ep, msgs in zip(episodes, teacher_msgs):
        response, mask = _response(tokenizer, ep.messages[1:])
        rows.append({"student": builder.build_initial_tokens(ep.prompt_messages), "response": response, "mask": mask,
                     "teacher": builder.build_initial_tokens(msgs)})
    torch.set_num_threads(2)  # the only job on the machine (CI: 2 cores); uncontended, 2 threads halve a forward
    server = TransformersServer(SimpleNamespace(prompt_length=8192, response_length=2048, max_model_len=None, seed=0),
                                SimpleNamespace(local_path=str(converted_model_dir), path=str(converted_model_dir)),
                                replica_rank=0, device="cpu")
    return episodes, rows, server


def _padded(values: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(values), width)
    for i, v in enumerate(values):
        out[i, : v.numel()] = v
    return out


def _divergences(model, row) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-vocabulary D_t at the response positions, both ways from one forward of each context:
    the local trainer's (hidden states → ``reverse_kl_and_entropy``, as ``adapters.local.methods.sgcd``)
    and verl's (``sgcd_engine_loss`` called as verl's logits hook on the packed (student, teacher) pair)."""
    from tensordict import TensorDict

    from adapters.verl.losses import sgcd_engine_loss

    n = len(row["response"])
    hidden, logits = [], []
    for prompt in (row["student"], row["teacher"]):
        with torch.no_grad():
            out = model(input_ids=torch.tensor([prompt + row["response"]]), output_hidden_states=True)
        hidden.append(out.hidden_states[-1][0][len(prompt) - 1: len(prompt) + n - 1])
        logits.append(out.logits[0].float())
    local, _ = reverse_kl_and_entropy(hidden[0], hidden[1], model.lm_head.weight.detach())
    nest = lambda xs: torch.nested.as_nested_tensor([torch.tensor(x) for x in xs], layout=torch.jagged)  # noqa: E731
    micro = TensorDict({"prompts": nest([row["student"], row["teacher"]]),
                        "responses": nest([row["response"], row["response"]])}, batch_size=[2])
    out = sgcd_engine_loss(None, data=micro, student_logits=torch.cat(logits).unsqueeze(0))["sgcd_divergence"][0]
    p = len(row["student"])
    return local, out[p - 1: p + n - 1]


def _top(server, prompt: list[int], response: list[int], k: int):
    """The server's answer to verl's scoring request (``prompt_logprobs=k``; k = 0: the actual
    token's log-prob) at the response positions."""
    out = server._generate(prompt + response, score_params(max(k, 1)) | {"prompt_logprobs": k})
    return response_rows(out.extra_fields["prompt_ids"], out.extra_fields["prompt_logprobs"], prompt_len=len(prompt),
                         response_len=len(response), k=max(k, 1))


def _weights(episodes, rows, divergences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """SGCD weights through verl's GRPO advantages and ``apply_credit_weights`` (B, T), and the mask."""
    width = max(len(r["response"]) for r in rows)
    mask = _padded([torch.tensor(r["mask"], dtype=torch.float32) for r in rows], width)
    rewards = torch.zeros(len(rows), width)
    for i, (ep, r) in enumerate(zip(episodes, rows)):
        rewards[i, len(r["mask"]) - 1] = ep.reward
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors={"uid": [ep.uid for ep in episodes]})
    section = SGCDSection()
    data = compute_advantage(data, adv_estimator="grpo", num_repeat=2, norm_adv_by_std_in_grpo=True,
                             config=BenchAlgoConfig(adv_estimator="grpo", method="sgcd", sgcd=section))
    apply_credit_weights(data, _padded(divergences, width), section)
    return data.batch["credit_weights"], mask


def _agreement(w_a: torch.Tensor, w_b: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    a, b = w_a[mask > 0], w_b[mask > 0]
    return float((a - b).abs().max()), float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_verl_credit_weights_agree_with_the_local_trainers(case) -> None:
    episodes, rows, server = case
    local, pairs = zip(*(_divergences(server.model, r) for r in rows))
    w_local, mask = _weights(episodes, rows, list(local))
    # w is local SGCD's credit_weights on the same D_t: the verl pipeline adds nothing of its own
    local_direct, _ = sgcd.credit_weights(sgcd.credit_scores(_padded(local, mask.shape[1]), torch.zeros_like(mask)),
                                          mask)
    assert torch.allclose(torch.where(mask > 0, w_local, 1.0), torch.where(mask > 0, local_direct, 1.0), atol=1e-5)

    figures = {"exact (pairs)": _agreement(_weights(episodes, rows, list(pairs))[0], w_local, mask)}
    top = [(_top(server, r["student"], r["response"], 100), _top(server, r["teacher"], r["response"], 100))
           for r in rows]
    for k in (5, 20, 100):
        divergences = []
        for (s, t), full in zip(top, local):
            d = reverse_kl_shared_topk(s.ids[:, :k], s.logp[:, :k], t.ids[:, :k], t.logp[:, :k])  # best first
            assert bool((d <= full + 1e-4).all()), "a partition KL exceeds the full-vocabulary KL"
            divergences.append(d)
        figures[f"shared top-{k}"] = _agreement(_weights(episodes, rows, divergences)[0], w_local, mask)
    k3 = [sampled_token_divergence(_top(server, r["student"], r["response"], 0).logp[:, 0],
                                   _top(server, r["teacher"], r["response"], 0).logp[:, 0]) for r in rows]
    figures["k3 sampled token"] = _agreement(_weights(episodes, rows, k3)[0], w_local, mask)

    print(f"\ncross-path SGCD weights, {int(mask.sum())} trained tokens in {len(rows)} episodes, vocabulary "
          f"{server.model.config.vocab_size}:")
    for name, (max_abs, r) in figures.items():
        print(f"  {name:>17}: max |w_verl - w_local| = {max_abs:.4f}, Pearson r = {r:.4f}")
    assert SGCDSection().divergence_estimator == "exact"
    max_abs, r = figures["exact (pairs)"]
    assert max_abs <= TOLERANCE["max_abs"] and r >= TOLERANCE["pearson"], figures
    # the top-k partition approaches the full KL as k grows
    assert figures["shared top-100"][1] > figures["shared top-20"][1] > figures["shared top-5"][1]


def _logits(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """(P + R, V) logits of ``prompt + response`` (one forward)."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([prompt + response])).logits[0].float()


def _response_rows(logits: torch.Tensor, prompt_len: int, response_len: int) -> torch.Tensor:
    """The rows of a sequence's logits that predict its response tokens."""
    return logits[prompt_len - 1: prompt_len + response_len - 1]


def _pair_bins(student_logits: torch.Tensor, teacher_logits: torch.Tensor, student: list[int], teacher: list[int],
               response: list[int], k: int):
    """SDPO's bins from ``sdpo_engine_loss`` as verl's logits hook on one (student, teacher) pair
    (the full logits of both sequences, packed)."""
    from tensordict import TensorDict

    from adapters.verl.config import SDPOPolicyLossConfig
    from adapters.verl.losses import SDPO_PAIR_SCORING, bin_columns, sdpo_engine_loss
    from verl.utils import tensordict_utils as tu
    from verl.workers.config.actor import ActorConfig

    logits = torch.cat([student_logits, teacher_logits])
    nest = lambda xs: torch.nested.as_nested_tensor([torch.tensor(x) for x in xs], layout=torch.jagged)  # noqa: E731
    micro = TensorDict({"prompts": nest([student, teacher]), "responses": nest([response, response])}, batch_size=[2])
    tu.assign_non_tensor(micro, **{SDPO_PAIR_SCORING: True, "sdpo_topk": k})
    cfg = ActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=1,
                      policy_loss=SDPOPolicyLossConfig(loss_mode="sdpo"))
    columns = sdpo_engine_loss(cfg, data=micro, student_logits=logits.unsqueeze(0))
    rows = slice(len(student) - 1, len(student) + len(response) - 1)
    id_names, bin_names = bin_columns(k)
    return (torch.stack([columns[n][0, rows] for n in id_names], -1),
            torch.stack([columns[n][0, rows] for n in bin_names], -1))


def test_verl_sdpo_loss_and_gradient_agree_with_the_local_trainers(case) -> None:
    """SDPO on the same episodes: local = ``algorithms.sdpo.sdpo_loss`` (student top-100 + tail,
    full logits of both contexts); verl = ``sdpo_engine_loss`` as verl's logits hook on each
    (student, reprompted teacher) pair → ``fold_bins`` → the hook again in the update → the loss.
    IS ratio 1 (on-policy)."""
    from tensordict import TensorDict

    from adapters.verl.config import SDPOPolicyLossConfig
    from adapters.verl.losses import sdpo_engine_loss
    from adapters.verl.teacher import sdpo_teacher_messages
    from adapters.verl.trainer import fold_bins
    from algorithms import sdpo
    from verl.utils import tensordict_utils as tu
    from verl.workers.config.actor import ActorConfig

    episodes, rows, server = case
    k = 100
    builder = create_continuous_token_builder(server.tokenizer)
    reprompts, sample_mask = sdpo_teacher_messages(episodes)
    distilled = [i for i, m in enumerate(reprompts) if m is not None]
    assert distilled, "no episode got a demonstration"
    width = max(len(r["response"]) for r in rows)
    mask = _padded([torch.tensor(r["mask"], dtype=torch.float32) for r in rows], width)
    student_logits = torch.zeros(len(rows), width, server.model.config.vocab_size)
    teacher_logits = torch.zeros_like(student_logits)
    per_row = {}
    for i, r in enumerate(rows):
        n = len(r["response"])
        student_full = _logits(server.model, r["student"], r["response"])
        student_logits[i, :n] = _response_rows(student_full, len(r["student"]), n)
        if reprompts[i] is None:
            teacher_logits[i, :n] = student_logits[i, :n]
            continue
        teacher_prompt = builder.build_initial_tokens(reprompts[i])
        teacher_full = _logits(server.model, teacher_prompt, r["response"])
        teacher_logits[i, :n] = _response_rows(teacher_full, len(teacher_prompt), n)
        per_row[i] = _pair_bins(student_full, teacher_full, r["student"], teacher_prompt, r["response"], k)
        del student_full, teacher_full
    old = torch.zeros(len(rows), width)  # IS ratio exp(logp − old) = 1: logp below equals old
    lens = [len(r["response"]) for r in rows]

    local_logits = student_logits.clone().requires_grad_(True)
    local_loss, _ = sdpo.sdpo_loss(local_logits, teacher_logits, old, old, mask, sample_mask, alpha=0.5, topk=k,
                                   is_clip=2.0)
    local_loss.backward()

    # verl's packed layout with a one-token prompt per row: row 0 of a sequence predicts its first response token
    packed = torch.cat([torch.cat([student_logits[i, :n], torch.zeros(1, student_logits.shape[-1])])
                        for i, n in enumerate(lens)]).requires_grad_(True)
    nest = lambda rows_: torch.nested.as_nested_tensor(rows_, layout=torch.jagged)  # noqa: E731
    micro = TensorDict({"prompts": nest([torch.zeros(1, dtype=torch.int64) for _ in lens]),
                        "responses": nest([torch.zeros(n, dtype=torch.int64) for n in lens]),
                        "response_mask": nest([mask[i, :n] for i, n in enumerate(lens)]),
                        "old_log_probs": nest([old[i, :n] for i, n in enumerate(lens)]),
                        "advantages": nest([old[i, :n] for i, n in enumerate(lens)]),
                        "sdpo_sample_mask": sample_mask, **fold_bins(per_row, lens, k)}, batch_size=[len(rows)])
    tu.assign_non_tensor(micro, dp_size=1, batch_num_tokens=int((mask * sample_mask.unsqueeze(-1)).sum()),
                         global_batch_size=len(rows))
    cfg = ActorConfig(strategy="fsdp", rollout_n=2, ppo_micro_batch_size_per_gpu=1, loss_agg_mode="token-mean",
                      use_kl_loss=False, entropy_coeff=0.0,
                      policy_loss=SDPOPolicyLossConfig(loss_mode="sdpo", sdpo_is_clip=2.0, sdpo_alpha=0.5))
    hooked = sdpo_engine_loss(cfg, data=micro, student_logits=packed.unsqueeze(0))
    offsets = torch.tensor([0] + [n + 1 for n in lens]).cumsum(0)
    divergence = torch.nested.nested_tensor_from_jagged(hooked["sdpo_divergence"][0], offsets)
    log_probs = torch.nested.nested_tensor_from_jagged(torch.zeros(packed.shape[0]), offsets)
    verl_loss, _ = sdpo_engine_loss(cfg, {"log_probs": log_probs, "sdpo_divergence": divergence}, micro)
    verl_loss.backward()

    verl_grad = torch.cat([packed.grad[offsets[i]: offsets[i] + n] for i, n in enumerate(lens)])
    local_grad = torch.cat([local_logits.grad[i, :n] for i, n in enumerate(lens)])
    trained = torch.cat([mask[i, :n] for i, n in enumerate(lens)]) > 0
    verl_grad, local_grad = verl_grad[trained], local_grad[trained]
    rel_loss = abs(float(verl_loss) - float(local_loss)) / abs(float(local_loss))
    cosine = float(torch.nn.functional.cosine_similarity(verl_grad.reshape(1, -1), local_grad.reshape(1, -1)))
    rel_grad = float((verl_grad - local_grad).norm() / local_grad.norm())
    print(f"\ncross-path SDPO (top-{k} + tail, alpha 0.5), {len(distilled)} distilled episodes: loss local "
          f"{float(local_loss):.6f}, verl {float(verl_loss):.6f} (relative difference {rel_loss:.2e}); "
          f"gradient wrt the logits: cosine {cosine:.6f}, relative L2 difference {rel_grad:.2e}")
    assert rel_loss <= 1e-4 and rel_grad <= 1e-3, (rel_loss, cosine, rel_grad)
