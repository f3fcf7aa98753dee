"""Running the real `sgcd-bench` app in-process (typer's CliRunner) and checking its error lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from sgcd_bench.cli import app
from tests.local.helpers import tiny_llama

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    """Run ``sgcd-bench ARGS`` with a 200-column terminal (``env`` adds environment variables)."""
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def one_line_error(result, *needles: str) -> None:
    """Exit code 1, the last line is ``error: ...``, and each needle is in the output."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output


def only_an_error_line(result, *needles: str) -> None:
    """:func:`one_line_error`, and nothing else was printed (no traceback, no run header)."""
    one_line_error(result, *needles)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output


def config_only_model(folder: Path, **config: Any) -> Path:
    """A model folder holding only a config.json (a tiny Llama unless ``config`` overrides it):
    enough for every check that must run before weights or a tokenizer are read."""
    base = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    return folder


def tiny_model_dir(folder: Path, tokenizer: Any) -> Path:
    """A tiny random Llama with the real tokenizer, saved as the folder ``--model`` takes."""
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
