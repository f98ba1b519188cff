"""``atlasnorm.dask.normalize``: the file-to-file job, zarr to zarr, on a Dask cluster.

The client prepares the output under its staging name (the metadata of the normalized
values) and a plan; copy tasks carry every other element over as encoded bytes (``indices``
and ``indptr`` included), beside the rest; tasks on the workers read their own rows of the
input and return per-cell totals (and, with ``exclude_highly_expressed``, their part of the
gene mask); the client takes the median (the one barrier); tasks then scale, log-transform
and write whole output chunks or shards, no two tasks touching one object; the client writes
``obs[key_added]``, ``uns/log1p`` and the consolidated metadata last, then makes the store
visible. The output is the CLI's, bit for bit. A failed or cancelled computation removes the
staging area: nothing is left that anndata opens as complete.

What cannot be split (an ``.h5ad`` on either side, CSC input, a re-encoded output, integer
data whose index arrays scanpy rebuilds) runs as one task: the CLI's job on one worker.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager

from . import _core
from ._files import _argv

__all__ = ["normalize"]


def _totals(plan: str, argv: list[str], i: int):
    return _core.dask_totals(plan, argv, i)


def _kept_totals(plan: str, argv: list[str], i: int, mask: bytes) -> bytes:
    return _core.dask_kept_totals(plan, argv, i, mask)


# Tasks of this worker process writing into a job's staging area, by the job's token: a
# failed job removes its staging area only once none is left (see `_await_no_writers`).
_WRITING: dict[str, int] = {}
_WRITING_LOCK = threading.Lock()


@contextmanager
def _writing(token: str):
    with _WRITING_LOCK:
        _WRITING[token] = _WRITING.get(token, 0) + 1
    try:
        yield
    finally:
        with _WRITING_LOCK:
            _WRITING[token] -= 1
            if not _WRITING[token]:
                del _WRITING[token]


def _writers(token: str) -> int:
    with _WRITING_LOCK:
        return _WRITING.get(token, 0)


def _copy(plan: str, argv: list[str], keys: list[str], token: str) -> int:
    with _writing(token):
        return _core.dask_copy(plan, argv, keys)


def _write(plan: str, argv: list[str], i: int, factors: bytes, token: str) -> int:
    with _writing(token):
        return _core.dask_write(plan, argv, i, factors)


def _await_no_writers(client, token: str) -> None:
    """Returns once no worker runs a task writing for `token` (its futures cancelled first).
    A cancelled task already running goes on to its end; one the scheduler had handed to a
    worker may still start before the cancellation reaches it, hence two quiet polls. A
    worker that cannot be asked (dead, restarting) runs nothing."""
    quiet = 0
    while quiet < 2:
        try:
            counts = client.run(_writers, token, on_error="return")
        except Exception:  # noqa: BLE001 - no worker to ask: none writes
            counts = {}
        busy = sum(n for n in counts.values() if isinstance(n, int))
        quiet = 0 if busy else quiet + 1
        time.sleep(0.2)


def _whole(argv: list[str]) -> str:
    return _core.normalize_files(argv)


def _merge_masks(masks) -> bytes:
    import numpy as np

    merged = None
    for m in masks:
        a = np.frombuffer(m, dtype=np.uint8)
        merged = a.copy() if merged is None else merged | a
    return b"" if merged is None else merged.tobytes()


def normalize(input, output, *, client=None, **options) -> str:
    """Normalizes the zarr store INPUT (local or ``s3://``) into OUTPUT on a Dask cluster,
    exactly as ``atlasnorm normalize INPUT OUTPUT`` does; options as keyword arguments named
    like the CLI's flags (``target_sum=1e4``, ``exclude_highly_expressed=True``,
    ``block_values=N`` for the values a task covers, ``force=True``, ...). ``client``: a
    ``distributed.Client`` (default: the current one). Every worker must reach INPUT and
    OUTPUT itself (a shared file system or object storage). Returns the CLI's report; raises
    ValueError with the CLI's message for bad input or options, and the task's error if one
    fails (the output is then not created)."""
    from distributed import get_client

    if client is None:
        client = get_client()
    # Workers resolve paths themselves: local ones are made absolute here.
    input, output = (p if "://" in os.fspath(p) else os.path.abspath(p) for p in (input, output))
    argv = _argv(input, output, options)
    job, whole_reason = _core.dask_prepare(argv)
    token = uuid.uuid4().hex[:12]
    if job is None:
        future = client.submit(_whole, argv, key=f"atlasnorm-whole-{token}", pure=False)
        return future.result()

    futures = []

    def submit(fn, name, *columns):
        n = len(columns[0])
        keys = [f"atlasnorm-{name}-{token}-{i}" for i in range(n)]
        batch = client.map(fn, *columns, key=keys, pure=False)
        futures.extend(batch)
        return batch

    def run(fn, name, *columns):
        return client.gather(submit(fn, name, *columns))

    try:
        # Each task carries a plan with its own part only (as part 0).
        c = job.n_copy_parts
        copy_plan = job.copy_plan()
        copies = submit(
            _copy, "copy", [copy_plan] * c, [argv] * c, [job.copy_keys(i) for i in range(c)],
            [token] * c,
        )
        n = job.n_totals_parts
        totals_plans = [job.totals_plan(i) for i in range(n)]
        parts = run(_totals, "totals", totals_plans, [argv] * n, [0] * n)
        mask = None
        totals = [t for t, _ in parts]
        if job.excludes_genes:
            mask = _merge_masks(m for _, m in parts)
            totals = run(
                _kept_totals, "kept-totals", totals_plans, [argv] * n, [0] * n, [mask] * n
            )
        job.set_totals(totals, mask)
        m = job.n_write_parts
        factors = [job.factors_for(i) for i in range(m)]
        write_plans = [job.write_plan(i) for i in range(m)]
        nan_values = sum(run(_write, "write", write_plans, [argv] * m, [0] * m, factors, [token] * m))
        client.gather(copies)
        report, warnings = job.commit(nan_values)
    except BaseException:
        # Cancel first (nothing queued, nor a retry, starts after this; waiting for every
        # task instead would hang on a cluster that lost its workers), then remove the
        # staging area once no task still running writes into it.
        try:
            client.cancel(futures)
            _await_no_writers(client, token)
        finally:
            job.abort()
        raise
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return report
