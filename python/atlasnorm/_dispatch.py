"""One entry per function: the fast path when the call is a supported form, else scanpy's own
function — counted, and warned about or refused as ``activate(on_fallback=...)`` says."""

from __future__ import annotations

import functools

from . import _scanpy, _stats


def original(name: str):
    """scanpy's own function, whatever is patched."""
    if name == "normalize_total":
        from scanpy.preprocessing import _normalization

        f = _normalization.normalize_total
    else:
        # `_simple.log1p` is never patched: scanpy calls it recursively on `x.data`.
        from scanpy.preprocessing import _simple

        f = _simple.log1p
    return getattr(f, "__atlasnorm_original__", f)


def _serve(name: str, fast, defaults: dict, args: tuple, kwargs: dict):
    reason = None
    if len(args) != 1:
        reason = "positional arguments (scanpy's deprecated form)"
    elif not kwargs.keys() <= defaults.keys():
        reason = f"argument(s) {sorted(kwargs.keys() - defaults.keys())}"
    else:
        try:
            result = fast(args[0], **kwargs)
        except _scanpy.Unsupported as e:
            reason = str(e)
        else:
            _stats.count_fast(name)
            return result
    _stats.fallback(name, reason)
    return original(name)(*args, **kwargs)


def _make(name: str, fast, defaults: dict):
    def patched(*args, **kwargs):
        __tracebackhide__ = True
        return _serve(name, fast, defaults, args, kwargs)

    patched.__name__ = name
    patched.__qualname__ = name
    patched.__module__ = "atlasnorm.pp"
    return patched


normalize_total = _make("normalize_total", _scanpy.normalize_total, _scanpy.NT_DEFAULTS)
log1p = _make("log1p", _scanpy.log1p, _scanpy.LOG1P_DEFAULTS)


def wrapping(name: str, target):
    """A patched function for scanpy's namespace: `functools.wraps` of scanpy's (signature,
    docstring, ``__wrapped__`` = scanpy's own function)."""
    fast = normalize_total if name == "normalize_total" else log1p

    @functools.wraps(target)
    def patched(*args, **kwargs):
        __tracebackhide__ = True
        return fast(*args, **kwargs)

    patched.__atlasnorm_original__ = target
    return patched
