"""What a message may be: the bounds checked before anything is parsed, then strict JSON, then the model.

``parse_message`` turns a raw message value into a pydantic message or raises ``InvalidMessage`` with the reason
that its dead letter carries. Every consumer uses it: the worker's tweets and labels, the adapter-event watcher,
replays of archive files; the feeder uses ``json_nesting_exceeds`` to key a line without risking a deep parse.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from shared.messages import Label, Tweet, too_large_reason, utcnow
from shared.settings import Settings

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what a message may be (see the input-limits settings); breaking one dead-letters the message."""

    max_message_bytes: int = Settings.model_fields["max_message_bytes"].default
    max_text_chars: int = Settings.model_fields["max_text_chars"].default
    max_json_depth: int = Settings.model_fields["max_json_depth"].default
    created_at_min: datetime = Settings.model_fields["created_at_min"].default
    created_at_max_ahead_s: float = Settings.model_fields["created_at_max_ahead_s"].default

    @classmethod
    def of(cls, settings: Settings) -> "InputLimits":
        return cls(settings.max_message_bytes, settings.max_text_chars, settings.max_json_depth,
                   settings.created_at_min, settings.created_at_max_ahead_s)

    def created_at_max(self) -> datetime:
        return utcnow() + timedelta(seconds=self.created_at_max_ahead_s)


DEFAULT_LIMITS = InputLimits()


class InvalidMessage(ValueError):
    """A message that can never be processed: it goes to the DLQ with this reason."""


# A JSON string (skipped whole, escapes included) or a bracket: enough to measure nesting in one linear pass.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def json_nesting_exceeds(text: str, limit: int) -> bool:
    """True if ``text`` nests arrays/objects deeper than ``limit``; linear, no recursion (brackets in strings don't
    count; on broken JSON it may over-count, and the message is refused either way)."""
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _reject_constant(name: str) -> float:
    raise InvalidMessage(f"not JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidMessage(f"not JSON: number {text[:40]} is out of range")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise InvalidMessage(f"duplicate key {duplicate[:64]!r} in one JSON object")
    return result


def _check_strings(payload: object) -> None:
    """Refuse strings ClickHouse or UTF-8 cannot carry as they are: lone surrogates (JSON ``\\ud800``) and NULs."""
    stack: list[tuple[str, object]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{path}.{key}" if path else key, key))
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
        elif isinstance(value, str):
            bad = _BAD_CHARS.search(value)
            if bad:
                char = bad.group()
                what = "a NUL character" if char == "\x00" else f"a lone surrogate U+{ord(char):04X} (not UTF-8)"
                where = path[:64].encode("utf-8", "backslashreplace").decode("utf-8") or "message"
                raise InvalidMessage(f"{where}: contains {what}")


def parse_message(value: bytes | None, model: type[M], what: str, limits: InputLimits = DEFAULT_LIMITS) -> M:
    """A message value validated as ``model``; anything else raises ``InvalidMessage`` with the reason.

    Bounded before anything is parsed: the size, strict UTF-8 (invalid bytes are refused, never replaced), the
    nesting depth (measured without recursion); then JSON without NaN/Infinity, duplicate keys, lone surrogates or
    NULs; then the model, the text length and the date window (``created_at``/``labeled_at``)."""
    if value is None:
        raise InvalidMessage("empty message (null value)")
    if len(value) > limits.max_message_bytes:
        raise InvalidMessage(too_large_reason(len(value), limits.max_message_bytes))
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"not valid UTF-8 at byte {exc.start}") from None
    if json_nesting_exceeds(text, limits.max_json_depth):
        raise InvalidMessage(f"JSON nested deeper than {limits.max_json_depth} levels")
    try:
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                             object_pairs_hook=_no_duplicate_keys)
    except InvalidMessage:
        raise
    except RecursionError:  # only with a depth limit near Python's recursion limit (~1000)
        raise InvalidMessage("JSON nested too deep to parse") from None
    except ValueError as exc:  # JSONDecodeError, and int() refusing a number of more than 4300 digits
        raise InvalidMessage(f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(payload).__name__}")
    _check_strings(payload)
    try:
        message = model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {what}: {describe_errors(exc)}") from None
    text_value = getattr(message, "text", None)
    if isinstance(text_value, str) and len(text_value) > limits.max_text_chars:
        raise InvalidMessage(f"invalid {what}: text: longer than {limits.max_text_chars} characters "
                             f"({len(text_value)})")
    latest = limits.created_at_max()
    for name in ("created_at", "labeled_at"):
        moment = getattr(message, name, None)
        if isinstance(moment, datetime) and not limits.created_at_min <= moment <= latest:
            raise InvalidMessage(
                f"invalid {what}: {name} {moment.isoformat()} is outside the accepted window "
                f"{limits.created_at_min:%Y-%m-%d} .. {latest:%Y-%m-%d %H:%M} UTC (now + "
                f"{limits.created_at_max_ahead_s / 3600:g} h)")
    return message


def parse_tweet(value: bytes | None, limits: InputLimits = DEFAULT_LIMITS) -> Tweet:
    return parse_message(value, Tweet, "tweet", limits)


def parse_label(value: bytes | None, limits: InputLimits = DEFAULT_LIMITS) -> Label:
    return parse_message(value, Label, "label", limits)


def describe_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors())
