"""Checks of a command's input that run before any expensive work (model loading, training).

Each check raises :class:`InputError`, whose message is the one line the CLI prints (exit
code 1): devices torch cannot use, output paths that cannot be written, LLM options out of
range, splits the env does not have, a model folder whose config cannot describe a causal LM,
sizes that cannot fit in the model's context, several greedy eval trials (pass^k over copies of
one trial), and a result store that cannot be read.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    from adapters.local.trainer import LoopSettings

MAX_TURNS = 1000
"""Ceiling on agent turns per episode (ours), whatever the context length: τ³ ends an episode at
200 messages (about 100 agent turns) and AppWorld's default budget is 50 steps, so more than
1,000 is a typo (``--max-turns 100000``), never a longer episode."""

MAX_NEW_TOKENS = 32_768
"""Ceiling on new tokens per agent turn (ours) when the model's config names no context length."""

MIN_TOKENS_PER_TURN = 8
"""Fewest tokens one agent turn can add to the conversation (ours): at least one generated
token plus the chat template's framing of it and of the reply that follows (ChatML:
``<|im_start|>assistant\\n`` … ``<|im_end|>\\n<|im_start|>user\\n`` … ``<|im_end|>\\n``)."""

EXPORT_FORMATS = {".md": "markdown", ".csv": "csv", ".json": "json"}
"""``leaderboard --export`` file suffix → format."""


class InputError(ValueError):
    """Bad input found before the work starts; the message is the one line to print."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (its type name if it has none)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def os_reason(err: OSError) -> str:
    """What the OS said, without the errno prefix and path (``Permission denied``)."""
    return err.strerror or first_line(err)


# ----------------------------------------------------------------------------- devices
def device_problem(device: str) -> str | None:
    """Why torch cannot run a model on ``device`` here, or None when it can.

    A device is usable when torch parses it and its backend (``torch.cuda``, ``torch.mps``,
    ``torch.xpu``) is available with that index; ``cpu`` always is.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        return "not a torch device"
    if parsed.type == "cpu":
        return None
    backend = getattr(torch, parsed.type, None)
    if not callable(getattr(backend, "is_available", None)):
        return f"sgcd-bench cannot run a model on '{parsed.type}' devices"
    label = parsed.type.upper() if parsed.type == "cuda" else parsed.type
    if not backend.is_available():
        built = " (this torch is built without CUDA)" if parsed.type == "cuda" and torch.version.cuda is None else ""
        return f"no {label} device is available{built}"
    count = backend.device_count() if callable(getattr(backend, "device_count", None)) else 1
    if parsed.index is not None and parsed.index >= count:
        last = f"{parsed.type}:{count - 1}"
        return f"there is no {device}: this machine has {count} {label} device(s), {parsed.type}:0 to {last}"
    return None


def check_device(device: str, *, preset: str, from_option: bool) -> None:
    """Fail unless torch can run a model on ``device`` (from ``--device`` or the preset)."""
    problem = device_problem(device)
    if problem is None:
        return
    if from_option:
        advice = "--device cpu" if device.startswith("cuda") else "--device cpu or --device cuda[:N]"
        raise InputError(f"--device {device}: {problem}; use {advice}")
    raise InputError(f"preset '{preset}' wants device '{device}' but {problem}; use --preset cpu or --device cpu")


# ----------------------------------------------------------------------------- output paths
def check_writable_folder(folder: Path, label: str) -> None:
    """Create ``folder`` if missing and write (then remove) a probe file in it; ``label`` starts
    the error line (the option and its value)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{label}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{label}: cannot create the folder ({os_reason(err)})") from None
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sgcd-write-probe-"):
            pass
    except OSError as err:
        raise InputError(f"{label}: cannot write there ({os_reason(err)})") from None


def check_out_folder(out: Path) -> None:
    """``--out`` must be a folder we can write results.sqlite, checkpoints and the cache into."""
    check_writable_folder(out, f"--out {out}")


def export_format(path: Path) -> str:
    """The ``--export`` format named by the file's suffix."""
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--export {path}: use a .md, .csv or .json file name")
    return fmt


def check_export_file(path: Path) -> str:
    """The export format of ``path``, after checking that the file can be written."""
    fmt = export_format(path)
    if path.is_dir():
        raise InputError(f"--export {path}: is a folder; pass a file name")
    check_writable_folder(path.parent, f"--export {path} (folder {path.parent})")
    return fmt


def check_plot_file(path: Path, option: str = "--plot") -> Path:
    """``path`` if a PNG of the learning curves can be written there (a ``.png`` name, not a
    folder, in a folder we can write); checked before any training."""
    if path.suffix.lower() != ".png":
        raise InputError(f"{option} {path}: use a .png file name")
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; pass a file name")
    check_writable_folder(path.parent, f"{option} {path} (folder {path.parent})")
    return path


# ----------------------------------------------------------------------------- the result store
@contextmanager
def store_errors(path: Path) -> Iterator[None]:
    """Turn the result store's errors (damaged file, newer schema, lock held past the budget)
    into one :class:`InputError` line; a damaged file is never written to."""
    from leaderboards.store import SchemaVersionError, StoreError

    try:
        yield
    except (StoreError, SchemaVersionError) as err:
        raise InputError(first_line(err)) from None
    except sqlite3.DatabaseError as err:  # anything the store did not classify itself
        raise InputError(f"{path}: cannot be read as a result store ({first_line(err)}); "
                         "the file was left untouched") from None


def open_store(path: Path):
    """The :class:`~leaderboards.store.ResultStore` at ``path``, or one line saying why not."""
    from leaderboards.store import ResultStore

    with store_errors(path):
        return ResultStore(path)


# ----------------------------------------------------------------------------- LLM endpoints
LLM_FIELD_OPTIONS = {"timeout_s": "--llm-timeout", "max_retries": "--llm-retries"}
"""``LLMEndpoint`` fields shared by every endpoint → their CLI option."""


def _shown(value: Any) -> str:
    """A value as the user typed it (``0`` for ``0.0``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _validation_message(err: Any, options: Mapping[str, str]) -> str:
    """One line for a pydantic ``ValidationError``: the option, the value and the reason."""
    problem = err.errors()[0]
    field = str(problem["loc"][0]) if problem.get("loc") else ""
    reason = str(problem["msg"]).removeprefix("Value error, ")
    option = options.get(field, field)
    return f"{option} {_shown(problem.get('input'))}: {reason[:1].lower()}{reason[1:]}"


def check_llm_limits(timeout_s: float, retries: int) -> None:
    """``--llm-timeout`` and ``--llm-retries`` within ``LLMEndpoint``'s own bounds (checked even
    when no endpoint is set, so a bad value never waits for the day one is)."""
    from pydantic import TypeAdapter, ValidationError

    from adapters.llm import LLMEndpoint

    for name, value in (("timeout_s", timeout_s), ("max_retries", retries)):
        field = LLMEndpoint.model_fields[name]
        try:
            TypeAdapter(Annotated[(field.annotation, *field.metadata)]).validate_python(value)
        except ValidationError as err:
            reason = str(err.errors()[0]["msg"])
            raise InputError(f"{LLM_FIELD_OPTIONS[name]} {_shown(value)}: {reason[:1].lower()}{reason[1:]}") from None


def llm_endpoint(base_url: str | None, model: str | None, key_env: str, timeout_s: float, retries: int,
                 what: str):
    """The ``LLMEndpoint`` of ``--{what}-base-url`` / ``--{what}-model`` (None when neither is set)."""
    if base_url is None and model is None:
        return None
    if base_url is None or model is None:
        given = f"--{what}-base-url" if base_url else f"--{what}-model"
        raise InputError(f"--{what}-base-url and --{what}-model go together; got only {given}")
    from pydantic import ValidationError

    from adapters.llm import LLMEndpoint

    options = {**LLM_FIELD_OPTIONS, "base_url": f"--{what}-base-url", "model": f"--{what}-model",
               "api_key_env": f"--{what}-key-env"}
    try:
        return LLMEndpoint(base_url=base_url, model=model, api_key_env=key_env, timeout_s=timeout_s,
                           max_retries=retries)
    except ValidationError as err:
        raise InputError(_validation_message(err, options)) from None


# ----------------------------------------------------------------------------- splits
def check_splits(make_env: Callable[[str], Any], env_id: str, splits: Mapping[str, str]) -> None:
    """Build the env once per split the command uses (``{how it is set: split}``): its
    constructor checks the name against the env's own splits, with "Did you mean"."""
    for source, split in splits.items():
        try:
            make_env(split).close()
        except ValueError as err:
            raise InputError(f"{source} {split}: {first_line(err)}") from None
        except (RuntimeError, OSError) as err:  # the env's own setup (e.g. AppWorld's venv or data)
            raise InputError(f"cannot build {env_id} for split '{split}': {first_line(err)}") from None


# ----------------------------------------------------------------------------- eval trials
def check_eval_trials(trials: int, temperature: float, *, preset: str, from_option: bool,
                      sampling_presets: Mapping[str, float]) -> None:
    """Refuse several eval trials per task at temperature 0: greedy decoding repeats one trial,
    so pass^k over them only repeats pass@1. ``sampling_presets``: preset name → its eval
    temperature, for the presets whose evaluation samples (named in the advice)."""
    if trials <= 1 or temperature > 0:
        return
    given = f"--eval-trials {trials}" if from_option else f"preset '{preset}' evaluates {trials} trials"
    others = [f"--preset {name} (temperature {t:g})" for name, t in sampling_presets.items() if name != preset]
    advice = "use --eval-trials 1" + (f", or a preset whose evaluation samples: {', '.join(others)}" if others else "")
    raise InputError(f"{given} at temperature 0 repeats one greedy trial {trials} times: pass^k needs sampled "
                     f"trials (an eval temperature > 0; sgcd-bench has no --eval-temperature option); {advice}")


# ----------------------------------------------------------------------------- model context and sizes
@dataclass(frozen=True)
class ModelContext:
    """The model's context length in tokens (None if its config names none) and where it comes from."""

    tokens: int | None
    source: str


def model_context(spec: str | None, cache_dir: Path) -> ModelContext:
    """The context length of ``--model`` from its config.json, without loading weights (the
    embedded default's is known even before its one-time conversion)."""
    from adapters.local.model import (EMBEDDED_CONTEXT_LENGTH, EMBEDDED_DEFAULT, ModelConfigError,
                                      ModelNotFoundError, context_length, read_model_config, resolve_model)

    if spec in (None, "", EMBEDDED_DEFAULT):
        return ModelContext(EMBEDDED_CONTEXT_LENGTH, f"{EMBEDDED_DEFAULT}, the embedded default")
    try:
        path = resolve_model(spec, cache_dir)
        config = read_model_config(path)
    except ModelNotFoundError as err:
        raise InputError(str(err)) from None
    except ModelConfigError as err:
        raise InputError(f"--model {spec}: {err}") from None
    return ModelContext(context_length(config), str(path / "config.json"))


def check_sizes(loop: LoopSettings, context: ModelContext) -> list[str]:
    """Reject turn and token budgets that cannot fit in the model's context (or pass the
    ceilings above); return warnings for budgets a full-length episode would overflow."""
    tokens, turns, ctx = loop.max_new_tokens, loop.max_turns, context.tokens
    if ctx is None:
        if tokens > MAX_NEW_TOKENS:
            raise InputError(f"--max-new-tokens {tokens}: at most {MAX_NEW_TOKENS} (sgcd-bench's ceiling; the model's "
                             f"config, {context.source}, names no context length)")
    elif tokens >= ctx:
        raise InputError(f"--max-new-tokens {tokens}: cannot fit; the model's context is {ctx} tokens "
                         f"({context.source}) and one agent turn must fit in it with the system prompt; "
                         f"use less than {ctx}")
    turn_limit = MAX_TURNS if ctx is None else min(MAX_TURNS, ctx // MIN_TOKENS_PER_TURN)
    if turns > turn_limit:
        if ctx is not None and turn_limit < MAX_TURNS:
            raise InputError(f"--max-turns {turns}: cannot fit; every turn adds at least {MIN_TOKENS_PER_TURN} "
                             f"tokens to the conversation and the model's context is {ctx} tokens "
                             f"({context.source}); use at most {turn_limit}")
        raise InputError(f"--max-turns {turns}: at most {MAX_TURNS} turns per episode (sgcd-bench's ceiling; "
                         "τ³ ends an episode at 200 messages, AppWorld's default budget is 50 steps)")
    if ctx is not None and turns * tokens > ctx:
        return [f"{turns} turns × {tokens} tokens = {turns * tokens} generated tokens can exceed the model's "
                f"context of {ctx} tokens ({context.source}); an episode that uses them all runs past it"]
    return []
