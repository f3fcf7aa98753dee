"""Small real verl batches shared by tests/verl (no mocks: real DataProto / TensorDict objects)."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict

from verl import DataProto
from verl.utils import tensordict_utils as tu

# 2 groups of 3 siblings, right-padded responses of different lengths.
UIDS = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
RESP_LENS = [5, 7, 3, 6, 4, 7]
PROMPT_LENS = [3, 2, 4, 3, 2, 5]
T = max(RESP_LENS)


def response_mask() -> torch.Tensor:
    return (torch.arange(T).unsqueeze(0) < torch.tensor(RESP_LENS).unsqueeze(1)).float()


def token_level_rewards() -> torch.Tensor:
    """Outcome reward on the last response token (as verl's reward loop writes rm_scores)."""
    out = torch.zeros(len(RESP_LENS), T)
    out[torch.arange(len(RESP_LENS)), torch.tensor(RESP_LENS) - 1] = REWARDS
    return out


def log_probs(seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return -(torch.rand(len(RESP_LENS), T, generator=g) * scale + 0.05) * response_mask()


def dataproto(**tensors: torch.Tensor) -> DataProto:
    base = {"token_level_rewards": token_level_rewards(), "response_mask": response_mask()}
    base.update(tensors)
    return DataProto.from_dict(tensors=base, non_tensors={"uid": UIDS.copy()})


def _nest(rows: list[torch.Tensor]) -> torch.Tensor:
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def micro_batch(per_token: dict[str, torch.Tensor], per_sample: dict[str, torch.Tensor] | None = None) -> TensorDict:
    """The jagged micro-batch verl's FSDP/Megatron engines hand the loss function (one dp rank)."""
    g = torch.Generator().manual_seed(7)
    b = len(RESP_LENS)
    fields = {
        "prompts": _nest([torch.randint(0, 100, (p,), generator=g) for p in PROMPT_LENS]),
        "responses": _nest([torch.randint(0, 100, (r,), generator=g) for r in RESP_LENS]),
    }
    for key, t in per_token.items():
        fields[key] = _nest([t[i, : RESP_LENS[i]].contiguous() for i in range(b)])
    fields.update(per_sample or {})
    td = TensorDict(fields, batch_size=[b])
    tu.assign_non_tensor(td, dp_size=1, batch_num_tokens=int(sum(RESP_LENS)), global_batch_size=b)
    return td


def packed_model_log_probs(logp: torch.Tensor) -> torch.Tensor:
    """The engine's model output: one value per prompt+response token, packed, shifted left by one."""
    rows = []
    for i, (p, r) in enumerate(zip(PROMPT_LENS, RESP_LENS)):
        seq = torch.zeros(p + r)
        seq[p - 1 : p - 1 + r] = logp[i, :r]
        rows.append(seq)
    return torch.cat(rows)
