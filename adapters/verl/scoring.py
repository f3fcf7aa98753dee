"""Top-k log-probs of given token sequences from verl's rollout servers (``prompt_logprobs``).

verl 0.9.1 has no scoring call on its rollout servers, but ``generate`` passes vLLM's sampling
parameters through, and ``max_tokens=1`` with ``prompt_logprobs=k`` makes the server return, for
every prompt position, the top-k next-token ids and log-probs (normalised over the full
vocabulary, at temperature 1) in ``extra_fields`` — the request verl's own on-policy
distillation makes to its teacher servers (``experimental/teacher_loop/teacher_manager.py``).
vLLM, SGLang and the CPU backend (:mod:`adapters.verl.transformers_rollout`) answer it alike.

The rollout server holds the weights that sampled the batch (π_old) until the trainer updates
them, so scoring a sequence there gives π_old's distributions: for the student's own context
(prompt + response) and for a teacher context (teacher prompt + the same response tokens).
Row j of the answer is the distribution of token j + 1 given tokens ≤ j
(``vllm_rollout.utils.extract_prompt_logprobs``), so the response's R tokens, after a prompt of
P tokens, are rows P − 1 … P + R − 2 (:func:`response_rows`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import torch


def score_params(k: int) -> dict[str, Any]:
    """Sampling parameters that turn ``generate`` into a scoring call: one token, top-k prompt log-probs."""
    if int(k) != k or k < 1:
        raise ValueError(f"the number of top log-probs must be an integer >= 1, got {k!r}")
    return {"max_tokens": 1, "prompt_logprobs": int(k), "temperature": 1.0, "detokenize": False}


@dataclass(frozen=True)
class TopK:
    """Top-k next-token distributions at the R response positions of one scored sequence.

    ids: (R, K) int64 token ids, best first. logp: (R, K) float32 log-probabilities over the
    full vocabulary.
    """

    ids: torch.Tensor
    logp: torch.Tensor


def response_rows(prompt_ids: Sequence[Sequence[int]], prompt_logprobs: Sequence[Sequence[float]], *,
                  prompt_len: int, response_len: int, k: int) -> TopK:
    """The response's rows of a ``prompt_logprobs`` answer: rows ``P − 1 … P + R − 2``.

    ``prompt_ids`` / ``prompt_logprobs``: the answer's ``extra_fields`` (S = P + R rows of width ≥ k).
    Raises ``ValueError`` when the answer is shorter than the sequence or narrower than k.
    """
    if prompt_len < 1 or response_len < 0:
        raise ValueError(f"need prompt_len >= 1 and response_len >= 0, got {prompt_len}, {response_len}")
    need = prompt_len + response_len
    if len(prompt_ids) < need or len(prompt_logprobs) < need:
        raise ValueError(f"the server scored {len(prompt_logprobs)} positions of a {need}-token sequence")
    rows = slice(prompt_len - 1, prompt_len + response_len - 1)
    ids = torch.tensor([list(r)[:k] for r in prompt_ids[rows]], dtype=torch.int64).reshape(response_len, -1)
    logp = torch.tensor([list(r)[:k] for r in prompt_logprobs[rows]], dtype=torch.float32).reshape(response_len, -1)
    if response_len and ids.shape[1] < k:
        raise ValueError(f"the server returned {ids.shape[1]} log-probs per position, {k} were asked for "
                         "(vLLM caps them at engine_kwargs.vllm.max_logprobs, default 20)")
    return TopK(ids=ids, logp=logp)


async def score_topk(client: Any, sequences: Sequence[tuple[Sequence[int], int]], k: int) -> list[TopK]:
    """Score each ``(token_ids, prompt_len)`` on the rollout server: the top-k distributions at
    its response positions (those after ``prompt_len``). Requests run concurrently through
    verl's ``LLMServerClient`` (its load balancer spreads them over the replicas)."""
    params = score_params(k)

    async def one(ids: Sequence[int], prompt_len: int) -> TopK:
        out = await client.generate(f"sgcd-score-{uuid4().hex}", prompt_ids=list(map(int, ids)),
                                    sampling_params=dict(params))
        extra = out.extra_fields
        if "prompt_logprobs" not in extra:
            raise RuntimeError("the rollout server ignored prompt_logprobs; SGCD's top-k divergence needs a "
                               "backend that returns them (vLLM, SGLang, or rollout.name=transformers)")
        return response_rows(extra["prompt_ids"], extra["prompt_logprobs"], prompt_len=prompt_len,
                             response_len=len(ids) - prompt_len, k=k)

    return list(await asyncio.gather(*(one(ids, p) for ids, p in sequences)))
