"""`inspect-credit`: one group rolled out, credit weights computed as in training, tokens coloured."""

from __future__ import annotations

import gymnasium
from rich.console import Console

from adapters.local.model import LoadedModel
from sgcd_bench.inspect import show_credit, weight_style
from sgcd_bench.presets import get_preset, with_overrides
from sgcd_bench.run import Pieces
from tests.local.helpers import CoinFlipUser, NO_WRITE_TRAIN
from tests.local.test_trainer import FixedReferenceSummarizer


def test_show_credit_renders_a_trajectory(tiny_model, tokenizer):
    preset = with_overrides(get_preset("cpu"), max_turns=2, max_new_tokens=6, group_size=4)
    pieces = Pieces(preset, "sgcd_envs/Tau3Airline-v0",
                    lambda split: gymnasium.make("sgcd_envs/Tau3Airline-v0", split=split, max_turns=2,
                                                 user=CoinFlipUser(0.5)),
                    "coin-flip-test-stand-in", FixedReferenceSummarizer(), "fixed-test-stand-in")
    console = Console(record=True, width=120)
    assert show_credit(LoadedModel(tiny_model, tokenizer, "tiny"), pieces, task=NO_WRITE_TRAIN[0], episode=0,
                       console=console)
    text = console.export_text()
    assert "advantage A_i" in text and "reference" in text and "legend" in text
    assert "w range" in text


def test_weight_colours():
    assert weight_style(1.0, 0.5, 2.0) == "black on rgb(255,255,255)"
    assert weight_style(2.0, 0.5, 2.0) == "black on rgb(255,0,0)"
    assert weight_style(0.5, 0.5, 2.0) == "black on rgb(0,0,255)"
