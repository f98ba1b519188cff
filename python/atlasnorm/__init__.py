"""atlasnorm: scanpy's ``normalize_total`` + ``log1p``, bit-identical and faster.

* ``atlasnorm.activate()`` patches scanpy so that ``sc.pp.normalize_total`` and
  ``sc.pp.log1p`` run atlasnorm's exact implementation (``deactivate()``, ``disabled()``,
  ``stats()``, ``set_threads()``);
* ``atlasnorm.pp.normalize_total`` / ``atlasnorm.pp.log1p`` are the same functions unpatched;
* ``atlasnorm.normalize(input, output, **options)`` is the command line's file-to-file job.
"""

from . import _core, pp
from ._files import normalize
from ._patch import activate, deactivate, disabled, is_active
from ._stats import FallbackError, FallbackWarning, reset as reset_stats, stats

__version__ = _core.__version__


def set_threads(n: int | None) -> None:
    """Threads of the in-memory calls: ``n`` >= 1, or ``None``/0 for all cores (the default).
    Results are the same bits for any count."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        msg = f"set_threads: a thread count >= 0 or None, not {n!r}"
        raise ValueError(msg)
    _core.set_threads(n or 0)


def get_threads() -> int:
    """The number of threads the in-memory calls use."""
    return _core.get_threads()


__all__ = [
    "FallbackError",
    "FallbackWarning",
    "activate",
    "deactivate",
    "disabled",
    "get_threads",
    "is_active",
    "normalize",
    "pp",
    "reset_stats",
    "set_threads",
    "stats",
]
