"""``atlasnorm.pp.normalize_total`` and ``atlasnorm.pp.log1p``: scanpy's signatures and
results, bit for bit, without patching scanpy; forms the fast path does not support run
scanpy's own function (counted in :func:`atlasnorm.stats`)."""

from ._dispatch import log1p, normalize_total

__all__ = ["log1p", "normalize_total"]
