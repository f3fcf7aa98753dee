"""OpenAI-compatible chat client: validated endpoint settings, timeouts, bounded retries, disk cache.

Used by the SGCD summarizer and the LLM user simulator, from the local trainer and the verl
plugin alike. Any server that speaks ``POST /v1/chat/completions`` works (OpenAI, a local vLLM
or llama.cpp server, ...).

Tool calling (the dual-control LLM user's own phone tools) uses the OpenAI format: ``tools``
(function schemas) goes with the request, the answer's ``tool_calls`` come back in
:attr:`Completion.tool_calls`, and the conversation may hold ``assistant`` messages with
``tool_calls`` and ``tool`` messages with ``tool_call_id``.

Retries are done here rather than by the ``openai`` client (which is built with
``max_retries=0``): the client's own backoff starts at 0.5 s and cannot be set, while a
trainer wants it configurable (and tests want it tiny). The per-request timeout is the
``openai`` client's own.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChatClient", "Completion", "LLMEndpoint", "LLMError", "checked_tools", "short_reason"]

_ROLES = ("system", "user", "assistant", "tool")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Key sent when the key variable is unset: local servers usually accept any key.
DUMMY_API_KEY = "sgcd-no-key"


class LLMError(RuntimeError):
    """A chat request failed (timeout, connection, HTTP status, malformed answer); one-line message.

    ``reason`` is the short cause without the endpoint, e.g. ``"HTTP 500: ..."`` or
    ``"timed out after 60 s"`` (for counting failures by cause); it defaults to the message.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class LLMEndpoint(BaseModel):
    """Settings of one OpenAI-compatible endpoint (validated at construction).

    The API key is never stored here: ``api_key_env`` names the environment variable that
    holds it. When that variable is unset a dummy key is sent, which local servers accept.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    """Server root including the API prefix, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """Model name sent with every request."""
    api_key_env: str = "SGCD_LLM_API_KEY"
    """Name of the environment variable holding the API key (ours)."""
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Per-attempt timeout in seconds."""
    max_retries: int = Field(default=3, ge=0, le=20)
    """Retries after the first attempt, on timeouts, connection errors, HTTP 408/409/429/5xx
    and bodies that are not JSON (a proxy's error page, a truncated answer)."""
    backoff_s: float = Field(default=1.0, ge=0, le=60)
    """Sleep before retry r (0-based) is ``min(backoff_s·2^r, max_backoff_s)``."""
    max_backoff_s: float = Field(default=30.0, ge=0, le=600)
    """Cap of one backoff sleep (a server's Retry-After is honoured up to this cap)."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    """Sampling temperature."""
    max_tokens: int = Field(default=1024, ge=1, le=1_000_000)
    """Maximum number of tokens in the answer."""

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        v = v.strip()
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(
                f"base_url must start with http:// or https:// and name a host, got {v!r} "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        return v.rstrip("/")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("model must be a non-empty model name")
        return v.strip()

    @field_validator("api_key_env")
    @classmethod
    def _check_env(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(
                f"api_key_env must be an environment variable NAME (letters, digits, _), got {v!r}"
            )
        return v

    def api_key(self) -> str | None:
        """The key from the environment, or None when the variable is unset or empty."""
        return os.environ.get(self.api_key_env) or None


@dataclass(frozen=True)
class Completion:
    """One answer: its text, whether it came from the cache, and HTTP attempts made (0 if cached).

    ``tool_calls`` holds the answer's tool calls in the OpenAI wire form
    (``{"id", "type": "function", "function": {"name", "arguments"}}``, ``arguments`` the JSON
    string the server sent; ``id`` is ``""`` when the server gave none); ``text`` is ``""``
    for an answer made of tool calls only.
    """

    text: str
    cached: bool
    attempts: int
    key: str
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The request's messages reduced to what is sent (and hashed): ``role`` and ``content``,
    plus an assistant's ``tool_calls`` and a tool message's ``tool_call_id``; raises ValueError
    naming the first malformed message. A message without those two fields reduces exactly as
    before tool calling existed (cache keys stay valid)."""
    if not messages:
        raise ValueError("messages must be a non-empty list of chat messages.")
    return [_check_message(i, m) for i, m in enumerate(messages)]


def _check_message(i: int, m: Any) -> dict[str, Any]:
    """One message of :func:`_check_messages` (``i`` its index, for the error)."""
    where = f"messages[{i}]"
    if not isinstance(m, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(m).__name__}.")
    role = m.get("role")
    if role not in _ROLES:
        raise ValueError(f"{where}['role'] is {role!r}; allowed: {', '.join(_ROLES)}.")
    raw_calls = m.get("tool_calls")
    has_calls = raw_calls is not None and raw_calls != []  # an empty list is no calls
    content = m.get("content")
    if content is None and has_calls:  # OpenAI sends null content beside tool calls
        content = ""
    if not isinstance(content, str):
        raise ValueError(f"{where}['content'] must be a string.")
    out: dict[str, Any] = {"role": role, "content": content}
    if has_calls:
        if role != "assistant":
            raise ValueError(f"{where} has 'tool_calls' but role {role!r}; only assistant messages carry tool calls.")
        out["tool_calls"] = _check_tool_calls(where, raw_calls)
    if "tool_call_id" in m:
        if role != "tool":
            raise ValueError(f"{where} has 'tool_call_id' but role {role!r}; only tool messages carry one.")
        if not isinstance(m["tool_call_id"], str) or not m["tool_call_id"]:
            raise ValueError(f"{where}['tool_call_id'] must be a non-empty string.")
        out["tool_call_id"] = m["tool_call_id"]
    return out


def _check_tool_calls(where: str, calls: Any, *, require_id: bool = True) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls`` in the canonical wire form, or ValueError.
    ``require_id=False`` accepts ``""`` ids (a cached answer whose server gave no ids)."""
    if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)) or not calls:
        raise ValueError(f"{where}['tool_calls'] must be a non-empty list of tool calls.")
    out = []
    for k, call in enumerate(calls):
        here = f"{where}['tool_calls'][{k}]"
        if not isinstance(call, Mapping):
            raise ValueError(f"{here} must be a dict, got {type(call).__name__}.")
        if not isinstance(call.get("id"), str) or (require_id and not call["id"]):
            raise ValueError(f"{here}['id'] must be a non-empty string.")
        if call.get("type") != "function":
            raise ValueError(f"{here}['type'] is {call.get('type')!r}; must be 'function'.")
        function = call.get("function")
        if not isinstance(function, Mapping):
            raise ValueError(f"{here}['function'] must be a dict with 'name' and 'arguments'.")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError(f"{here}['function']['name'] must be a non-empty string.")
        if not isinstance(function.get("arguments"), str):
            raise ValueError(f"{here}['function']['arguments'] must be a string (JSON-encoded arguments).")
        out.append({"id": call["id"], "type": "function",
                    "function": {"name": function["name"], "arguments": function["arguments"]}})
    return out


def checked_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The request's OpenAI function schemas (a deep copy), None for no tools (None or empty:
    OpenAI rejects an empty ``tools`` list); raises ValueError naming a malformed schema."""
    if tools is None:
        return None
    if not isinstance(tools, Sequence) or isinstance(tools, (str, bytes)):
        raise ValueError(f"tools must be a list of OpenAI function schemas, got {type(tools).__name__}.")
    if not tools:
        return None
    for k, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(function, Mapping)
                or not isinstance(function.get("name"), str) or not function["name"]):
            raise ValueError(f"tools[{k}] must be an OpenAI function schema "
                             "{'type': 'function', 'function': {'name': ..., 'parameters': ...}}.")
    return copy.deepcopy([dict(t) for t in tools])


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_OPENAI_STATUS_PREFIX = re.compile(r"^Error code: \d+ - ")  # openai's wording; the status is ours already
_REASON_DETAIL = re.compile(r" \(|; |: '|: \"")


def short_reason(reason: str, limit: int = 60) -> str:
    """A failure reason as a stable key for counting: one line, without the parenthesised or
    quoted details that vary from failure to failure, at most ``limit`` characters.

    ``"malformed body: not JSON: '<html>...'"`` → ``"malformed body: not JSON"``.
    """
    text = " ".join(str(reason).split())
    text = _REASON_DETAIL.split(text, maxsplit=1)[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ChatClient:
    """Chat completions with timeouts, bounded retries with backoff and a content-hash cache.

    ``complete(messages)`` returns the assistant's text or raises :class:`LLMError`.
    With ``cache_dir`` set, answers are stored under
    ``cache_dir/<key[:2]>/<key>.json``, key = sha256 of the canonical JSON of
    ``{model, messages, temperature, max_tokens, seed}``, plus ``tools`` when tools are sent
    (the URL is not part of the key, so a cache can be shared between mirrors of one model).
    An entry holds the answer's text and tool calls. Writes are atomic (temp file +
    ``os.replace``), so a crash never leaves a half-written entry; an unreadable entry is a miss.

    With ``tools`` (OpenAI function schemas) the model may answer with tool calls: use
    :meth:`request`, whose :class:`Completion` carries them (``complete`` returns the text only).

    Counters: ``calls`` (``complete`` calls), ``cache_hits``, ``attempts`` (HTTP requests sent),
    ``retries``, ``errors`` (calls that raised).
    """

    def __init__(
        self,
        endpoint: LLMEndpoint,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._sleep = sleep
        self._key_missing = endpoint.api_key() is None
        self._client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key() or DUMMY_API_KEY,
            timeout=endpoint.timeout_s,
            max_retries=0,
        )
        self.calls = self.cache_hits = self.attempts = self.retries = self.errors = 0

    # ---- cache --------------------------------------------------------------------------

    def cache_key(
        self, messages: Sequence[Mapping[str, Any]], *, seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """sha256 hex of the canonical request: model, messages, temperature, max_tokens, seed
        and, only when tools are sent, ``tools`` (so keys of requests without tools are the
        same as before tool calling existed)."""
        material: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": _check_messages(messages),
            "temperature": self.endpoint.temperature,
            "max_tokens": self.endpoint.max_tokens,
            "seed": seed,
        }
        tool_schemas = checked_tools(tools)
        if tool_schemas is not None:
            material["tools"] = tool_schemas
        blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_get(self, key: str) -> tuple[str, tuple[dict[str, Any], ...]] | None:
        """The cached (text, tool calls) for ``key``; None on a miss or an unreadable entry."""
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = entry.get("text") if isinstance(entry, dict) else None
        if not isinstance(text, str):
            return None
        try:
            raw = entry.get("tool_calls")
            calls = _check_tool_calls("cache entry", raw, require_id=False) if raw else []
        except ValueError:
            return None
        return text, tuple(calls)

    def _cache_put(self, key: str, text: str, tool_calls: Sequence[dict[str, Any]],
                   messages: list[dict[str, Any]]) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"model": self.endpoint.model, "text": text, "messages": messages,
                                 "created": time.time()}
        if tool_calls:
            entry["tool_calls"] = list(tool_calls)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def evict(self, key: str) -> bool:
        """Remove a cached answer (e.g. one that failed to parse); True if one was removed."""
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return False
        path.unlink(missing_ok=True)
        return True

    # ---- requests -----------------------------------------------------------------------

    def complete(
        self, messages: Sequence[Mapping[str, Any]], *, seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The assistant's text answer to ``messages`` (cached when possible); raises LLMError.

        With ``tools`` an answer may be tool calls only (its text then ``""``): callers that
        send tools use :meth:`request` to get the calls.
        """
        return self.request(messages, seed=seed, tools=tools).text

    def request(
        self, messages: Sequence[Mapping[str, Any]], *, seed: int | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        """Like :meth:`complete` but returns a :class:`Completion` with the tool calls and the
        cache/attempt details. ``tools`` (OpenAI function schemas) is sent as the request's
        ``tools`` (the server's default ``tool_choice``, "auto"); None or empty sends none."""
        clean = _check_messages(messages)
        tool_schemas = checked_tools(tools)
        key = self.cache_key(clean, seed=seed, tools=tool_schemas)
        self.calls += 1
        cached = self._cache_get(key)
        if cached is not None:
            self.cache_hits += 1
            return Completion(text=cached[0], cached=True, attempts=0, key=key, tool_calls=cached[1])
        try:
            text, calls, finish, attempts = self._send(clean, seed, tool_schemas)
        except LLMError:
            self.errors += 1
            raise
        self._cache_put(key, text, calls, clean)
        return Completion(text=text, cached=False, attempts=attempts, key=key,
                          finish_reason=finish, tool_calls=calls)

    def _where(self) -> str:
        return f"{self.endpoint.base_url} (model {self.endpoint.model})"

    def _send(
        self, messages: list[dict[str, Any]], seed: int | None, tools: list[dict[str, Any]] | None,
    ) -> tuple[str, tuple[dict[str, Any], ...], str | None, int]:
        """(text, tool calls, finish reason, attempts) of one request, with the retries."""
        ep = self.endpoint
        extra: dict[str, Any] = {} if seed is None else {"seed": seed}
        if tools is not None:
            extra["tools"] = tools
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            retry_after: float | None = None
            try:
                resp = self._client.chat.completions.create(
                    model=ep.model, messages=messages,  # type: ignore[arg-type]
                    temperature=ep.temperature, max_tokens=ep.max_tokens, **extra,
                )
            except openai.APITimeoutError:
                reason = f"timed out after {ep.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                reason = f"connection failed: {_one_line(exc.__cause__ or exc)}"
            except openai.APIStatusError as exc:
                reason = f"HTTP {exc.status_code}: {_one_line(_OPENAI_STATUS_PREFIX.sub('', exc.message))}"
                if exc.status_code in (401, 403) and self._key_missing:
                    reason += f" (the key variable {ep.api_key_env} is not set)"
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise LLMError(f"LLM request to {self._where()} failed: {reason}", reason) from exc
                retry_after = _retry_after(exc.response.headers)
            except json.JSONDecodeError as exc:  # the body claims JSON but is not
                reason = f"malformed body: invalid JSON ({exc.msg})"
            else:
                if isinstance(resp, str):  # openai returns the raw text for non-JSON bodies
                    reason = f"malformed body: not JSON: {_one_line(resp, 80)!r}"
                else:
                    text, calls, finish = self._answer(resp)
                    return text, calls, finish, attempt
            if attempt > ep.max_retries:
                raise LLMError(
                    f"LLM request to {self._where()} failed after {attempt} attempt(s): {reason}", reason
                )
            self.retries += 1
            delay = min(ep.backoff_s * 2 ** (attempt - 1), ep.max_backoff_s)
            if retry_after is not None:
                delay = min(max(delay, retry_after), ep.max_backoff_s)
            self._sleep(delay)

    def _answer(self, resp: Any) -> tuple[str, tuple[dict[str, Any], ...], str | None]:
        """Extract choices[0].message's content and tool calls, or raise LLMError naming what
        was missing or malformed (such a well-formed JSON answer is not retried: asking again
        gets the same). Tool calls without content are an answer whose text is ``""``."""
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise LLMError(f"LLM request to {self._where()} got a malformed body (no choices).",
                           "malformed body (no choices)")
        message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        calls = tuple(self._answer_call(c) for c in getattr(message, "tool_calls", None) or ())
        if content is None and calls:
            content = ""
        if not isinstance(content, str):
            raise LLMError(
                f"LLM request to {self._where()} got no text content in choices[0].message.",
                "no text content in the answer",
            )
        finish = getattr(choices[0], "finish_reason", None)
        return content, calls, finish if isinstance(finish, str) else None

    def _answer_call(self, call: Any) -> dict[str, Any]:
        """One tool call of the answer in the wire form: ``id`` ``""`` when the server sent
        none, ``arguments`` as sent (an object is JSON-encoded, a missing one is ``"{}"``)."""
        function = getattr(call, "function", None)
        name = getattr(function, "name", None)
        kind = getattr(call, "type", None) or "function"
        if kind != "function" or not isinstance(name, str) or not name:
            raise LLMError(
                f"LLM request to {self._where()} got a malformed tool call in choices[0].message "
                f"(type {kind!r}, name {name!r}).",
                "malformed tool call in the answer",
            )
        arguments = getattr(function, "arguments", None)
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = getattr(call, "id", None)
        return {"id": call_id if isinstance(call_id, str) else "", "type": "function",
                "function": {"name": name, "arguments": arguments}}


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or a numeric ``retry-after`` header, else None."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(float(value) * scale, 0.0)
            except ValueError:
                return None
    return None
