"""``activate()`` / ``deactivate()`` / ``disabled()``: scanpy's names bound to atlasnorm's
functions, in every module that binds them, and nowhere scanpy calls itself recursively
(``preprocessing._simple.log1p`` calls ``log1p`` on ``x.data`` and stays scanpy's)."""

from __future__ import annotations

import contextlib
import importlib
import threading

from . import _dispatch, _stats

# (module, attribute) pairs where scanpy 1.12 binds the two functions.
BINDINGS = {
    "normalize_total": (
        "scanpy.preprocessing",
        "scanpy.preprocessing._normalization",
        "scanpy.preprocessing._recipes",
        "scanpy.plotting._qc",
    ),
    "log1p": ("scanpy.preprocessing",),
}

_lock = threading.RLock()
_saved: dict[tuple[str, str], object] = {}


def is_active() -> bool:
    return bool(_saved)


def activate(on_fallback: str = "count") -> None:
    """Patches scanpy: ``sc.pp.normalize_total`` and ``sc.pp.log1p`` (and the other places
    scanpy binds them) run atlasnorm's exact implementation; unsupported calls go to scanpy's
    own function and are counted (``"count"``), also warned about (``"warn"``), or refused
    with :class:`atlasnorm.FallbackError` (``"raise"``)."""
    _stats.set_policy(on_fallback)
    from . import _scanpy

    with _lock:
        if _saved:
            return
        importlib.import_module("scanpy")
        _scanpy._install_warning_frames()
        originals = {name: _dispatch.original(name) for name in BINDINGS}
        for name, modules in BINDINGS.items():
            patched = _dispatch.wrapping(name, originals[name])
            for module_name in modules:
                module = importlib.import_module(module_name)
                if getattr(module, name, None) is not originals[name]:
                    continue  # this scanpy binds something else there: leave it
                _saved[(module_name, name)] = getattr(module, name)
                setattr(module, name, patched)


def deactivate() -> None:
    """Undoes :func:`activate`: scanpy's own functions are bound again."""
    with _lock:
        for (module_name, name), f in _saved.items():
            setattr(importlib.import_module(module_name), name, f)
        _saved.clear()


@contextlib.contextmanager
def disabled():
    """Suspends the patch inside the block (scanpy's own functions), restores it after."""
    with _lock:
        was_active = is_active()
        policy = _stats.policy()
        deactivate()
    try:
        yield
    finally:
        if was_active:
            activate(on_fallback=policy)
