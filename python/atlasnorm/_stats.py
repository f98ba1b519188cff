"""Counts of fast calls and fallbacks, and what a fallback does (``activate(on_fallback=...)``)."""

from __future__ import annotations

import threading
import warnings
from collections import Counter

FUNCTIONS = ("normalize_total", "log1p")
POLICIES = ("count", "warn", "raise")


class FallbackError(RuntimeError):
    """Raised with ``on_fallback="raise"`` when a call would go to scanpy's own function."""


class FallbackWarning(UserWarning):
    """Issued with ``on_fallback="warn"`` when a call goes to scanpy's own function."""


_lock = threading.Lock()
_fast: Counter[str] = Counter()
_fallback: dict[str, Counter[str]] = {name: Counter() for name in FUNCTIONS}
_policy = "count"


def set_policy(policy: str) -> None:
    global _policy
    if policy not in POLICIES:
        msg = f"on_fallback must be one of {POLICIES}, not {policy!r}"
        raise ValueError(msg)
    _policy = policy


def policy() -> str:
    return _policy


def count_fast(function: str) -> None:
    with _lock:
        _fast[function] += 1


def fallback(function: str, reason: str) -> None:
    """Records a fallback, then warns or raises as the policy says (before scanpy runs)."""
    with _lock:
        _fallback[function][reason] += 1
    if _policy == "raise":
        msg = f"atlasnorm: {function} falls back to scanpy: {reason}"
        raise FallbackError(msg)
    if _policy == "warn":
        warnings.warn(
            f"atlasnorm: {function} falls back to scanpy: {reason}",
            FallbackWarning,
            stacklevel=4,
        )


def stats() -> dict[str, dict]:
    """``{"normalize_total": {"fast": n, "fallback": n, "reasons": {reason: n}}, "log1p": ...}``."""
    with _lock:
        return {
            name: {
                "fast": _fast[name],
                "fallback": sum(_fallback[name].values()),
                "reasons": dict(_fallback[name]),
            }
            for name in FUNCTIONS
        }


def reset() -> None:
    """Sets every count to zero."""
    with _lock:
        _fast.clear()
        for c in _fallback.values():
            c.clear()
