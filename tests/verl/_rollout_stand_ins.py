"""Stand-ins shared by the agent-loop tests in tests/verl (named as such; no model, no download).

``byte_tokenizer``: a real fast tokenizer with one token per byte and a minimal chat template
(stand-in for a model's tokenizer). ``ScriptedRolloutServerStub``: stand-in for verl's rollout
server manager that replays scripted assistant texts as token ids. ``compose_config``: our real
composed verl config with overrides.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from verl.workers.rollout.replica import TokenOutput

CONFIG_DIR = Path(__file__).resolve().parents[2] / "adapters" / "verl" / "configs"
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}<tool_call>{{ c['function'] | tojson }}</tool_call>"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A real fast tokenizer with one token per byte (stand-in for a model's tokenizer)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


class ScriptedRolloutServerStub:
    """Stand-in for verl's rollout server manager: replays scripted assistant texts (no model).

    ``turn_fields`` (optional, one dict per turn) become each turn's ``TokenOutput.extra_fields``,
    e.g. the weight versions ``{"min_global_steps": 3, "max_global_steps": 4}`` that verl's
    server client reports (a turn spans two versions when weights are updated mid-generation).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast, turns: list[str],
                 turn_fields: list[dict] | None = None) -> None:
        self.tokenizer, self.turns, self.prompts = tokenizer, list(turns), []
        self.turn_fields = list(turn_fields) if turn_fields is not None else None

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **_: object) -> TokenOutput:
        self.prompts.append(list(prompt_ids))
        text = self.turns.pop(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        fields = dict(self.turn_fields.pop(0)) if self.turn_fields is not None else {}
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids), stop_reason="completed", extra_fields=fields)


def compose_config(*overrides: str) -> DictConfig:
    """Our ``sgcd_fsdp`` verl config (composed with verl's hydra defaults) with long prompt/response caps."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="sgcd_fsdp", overrides=[
            "actor_rollout_ref.model.path=/models/stand-in",
            "actor_rollout_ref.rollout.prompt_length=32768",
            "actor_rollout_ref.rollout.response_length=32768",
            *overrides,
        ])
