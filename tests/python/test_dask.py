"""``atlasnorm.dask.normalize`` on a real ``dask.distributed.LocalCluster`` (two worker
processes on 127.0.0.1): zarr v2 / v3 (sharded and plain) stores, local and on a moto S3
server, every option set, compared array by array with the CLI's output (``atlasnorm.normalize``,
the same job in one process) and with scanpy's; both workers must run tasks; a worker killed
mid-run (Dask retries its task: same bits) and a failing task (the error, no output)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import atlasnorm
import atlasnorm.dask

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from compare import diff_files  # noqa: E402
from gen_zarr import ZarrSpec, write_zarr_case  # noqa: E402
from oracle import Options, expected_outcome  # noqa: E402

import distributed  # noqa: E402

BUCKET = "atlasnorm-dask"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    """A moto S3 server on 127.0.0.1 and the AWS_* environment pointing at it (set before the
    cluster starts, so its worker processes inherit it)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)
    yield s3
    proc.kill()
    proc.wait()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def client(moto):
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def kwargs_of(opts: Options) -> dict:
    kw = dict(target_sum=opts.target_sum, exclude_highly_expressed=opts.exclude_highly_expressed,
              max_fraction=opts.max_fraction, key_added=opts.key_added, layer=opts.layer,
              log1p=opts.log1p, log1p_base=opts.base)
    return {k: v for k, v in kw.items() if v is not None and v is not False or k == "log1p"}


def arrays_of(store: Path) -> dict:
    """Every node of a zarr store: path -> (attributes, dtype, shape, chunks, shards, raw bits)."""
    import zarr

    root = zarr.open_group(str(store), mode="r", use_consolidated=False)
    out = {"": (dict(root.attrs), None, None, None, None, None)}
    for name, node in root.members(max_depth=None):
        if isinstance(node, zarr.Array):
            data = np.asarray(node[...])
            raw = data.tobytes() if data.dtype.kind != "O" else repr(data.tolist()).encode()
            out[name] = (dict(node.attrs), str(node.dtype), node.shape, node.chunks, node.shards, raw)
        else:
            out[name] = (dict(node.attrs), None, None, None, None, None)
    return out


def assert_same_stores(got: Path, want: Path) -> None:
    a, b = arrays_of(got), arrays_of(want)
    assert sorted(a) == sorted(b)
    for k in b:
        assert a[k] == b[k], k


def ran_on(client, prefix: str, fn):
    """Runs fn() and returns the workers that ran tasks whose key starts with `prefix`."""
    with distributed.get_task_stream(client) as ts:
        result = fn()
    workers = {t["worker"] for t in ts.data if str(t["key"]).startswith(prefix)}
    return result, workers


SPECS = [
    ZarrSpec(store="v3-sharded", chunking="small"),
    ZarrSpec(store="v2", chunking="small", dtype="float64"),
    ZarrSpec(store="v3-plain", chunking="small", layout="dense"),
    ZarrSpec(store="v3-sharded", chunking="small", where="layer", values="fractional"),
    ZarrSpec(store="v2", layout="dense", dtype="int32", chunking="small"),
]
OPTS = [
    Options(),
    Options(target_sum=1e4, key_added="norm"),
    Options(exclude_highly_expressed=True, max_fraction=0.1),
    Options(log1p=False, key_added="n_counts"),
    Options(base=2.0, target_sum=2500.0),
]


# Every spec with two option sets and every option set with two specs (a Latin pairing):
# the CLI and scanpy agree on the whole cross product in the interop suite.
CASES = [(SPECS[i], OPTS[(i + k) % len(OPTS)]) for i in range(len(SPECS)) for k in (0, 2)]


@pytest.mark.parametrize("spec,opts", CASES, ids=lambda c: c.short())
def test_dask_equals_cli_and_scanpy(client, tmp_path, spec, opts):
    if opts.layer is None and spec.where == "layer":
        opts = Options(**{**opts.__dict__, "layer": "counts"})
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, spec, seed=3)
    kw = kwargs_of(opts)
    out_cli = tmp_path / "cli.zarr"
    atlasnorm.normalize(inp, out_cli, **kw)
    out = tmp_path / "dask.zarr"
    # ~150 values a task: several totals and write tasks on the small test matrices.
    report, workers = ran_on(
        client, "atlasnorm-", lambda: atlasnorm.dask.normalize(inp, out, client=client, block_values=150, **kw)
    )
    assert "Normalized" in report
    assert len(workers) == 2, workers
    assert_same_stores(out, out_cli)
    want = expected_outcome(inp, opts, tmp_path / "scanpy.zarr")
    assert isinstance(want, Path), want
    assert diff_files(want, out) == []


def test_untouched_elements_indices_and_indptr_are_copied_by_tasks(client, tmp_path):
    """The client copies no chunk: copy tasks on the workers carry every element but the
    normalized values over, as encoded bytes (the stores then compare equal, object for
    object, with the CLI's)."""
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-sharded", chunking="small"), seed=8)
    out = tmp_path / "dask.zarr"
    with distributed.get_task_stream(client) as ts:
        atlasnorm.dask.normalize(inp, out, client=client, block_values=150)
    copies = [t for t in ts.data if str(t["key"]).startswith("atlasnorm-copy-")]
    assert len(copies) >= 2
    assert len({t["worker"] for t in copies}) == 2
    atlasnorm.normalize(inp, tmp_path / "cli.zarr")
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    want = sorted(p.relative_to(tmp_path / "cli.zarr").as_posix()
                  for p in (tmp_path / "cli.zarr").rglob("*") if p.is_file())
    assert got == want
    for rel in want:
        if not rel.startswith("X/data"):
            assert (out / rel).read_bytes() == (tmp_path / "cli.zarr" / rel).read_bytes(), rel


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_string_columns_with_repeats_become_categoricals(client, tmp_path, zarr_format):
    """A store written without anndata's strings_to_categoricals (other writers do so): the
    client's categorize step rewrites obs/var string columns with repeats as scanpy's write
    does (natsorted categories, missing entries as -1), the same as the CLI."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    n_obs, n_vars = 40, 30
    X = sp.random(n_obs, n_vars, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    X.data = np.ceil(X.data * 9).astype(np.float32)
    batch = pd.array([f"b{i % 11}" for i in range(n_obs)], dtype=pd.StringDtype())
    batch[3] = pd.NA
    obs = pd.DataFrame({"batch": batch, "donor": [f"d{i % 3}0" for i in range(n_obs)],
                        "unique": [f"u{i}" for i in range(n_obs)]},
                       index=[f"c{i}" for i in range(n_obs)])
    var = pd.DataFrame({"kind": ["a10", "a9", "a09"] * 10}, index=[f"g{i}" for i in range(n_vars)])
    inp = tmp_path / "in.zarr"
    ad.AnnData(X, obs=obs, var=var).write_zarr(inp, convert_strings_to_categoricals=False)
    if zarr_format == 2:  # anndata writes v3; rewrite as v2 through anndata's own reader
        import zarr

        ad.settings.zarr_write_format = 2
        try:
            ad.read_zarr(inp).write_zarr(tmp_path / "in2.zarr", convert_strings_to_categoricals=False)
        finally:
            ad.settings.zarr_write_format = 3
        inp = tmp_path / "in2.zarr"
        assert zarr.open_group(str(inp), mode="r").metadata.zarr_format == 2
    premise = ad.read_zarr(inp)
    assert not isinstance(premise.obs["batch"].dtype, pd.CategoricalDtype)
    out, out_cli = tmp_path / "dask.zarr", tmp_path / "cli.zarr"
    atlasnorm.dask.normalize(inp, out, client=client, block_values=150, target_sum=1e4)
    atlasnorm.normalize(inp, out_cli, target_sum=1e4)
    assert_same_stores(out, out_cli)
    got = ad.read_zarr(out)
    for frame, col in (("obs", "batch"), ("obs", "donor"), ("var", "kind")):
        assert isinstance(getattr(got, frame)[col].dtype, pd.CategoricalDtype), (frame, col)
    want = expected_outcome(inp, Options(target_sum=1e4), tmp_path / "scanpy.zarr", zarr_format=zarr_format)
    assert isinstance(want, Path), want
    assert diff_files(want, out) == []


def test_dask_refuses_what_the_cli_refuses(client, tmp_path):
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-sharded"), seed=1)
    out = tmp_path / "out.zarr"
    out.mkdir()
    with pytest.raises(ValueError, match="already exists"):
        atlasnorm.dask.normalize(inp, out, client=client)
    with pytest.raises(ValueError, match="no such file"):
        atlasnorm.dask.normalize(tmp_path / "missing.zarr", tmp_path / "o2.zarr", client=client)


def test_a_failing_task_leaves_no_output(client, tmp_path):
    """NaN in the input: scanpy's log1p raises, so the write tasks do; nothing is left."""
    import anndata as ad
    import scipy.sparse as sp

    x = sp.random(80, 30, density=0.3, format="csr", dtype=np.float32, random_state=0)
    x.data[len(x.data) // 2] = np.nan
    inp = tmp_path / "nan.zarr"
    ad.AnnData(x).write_zarr(inp)
    out = tmp_path / "out.zarr"
    with pytest.raises(ValueError) as cli_error:
        atlasnorm.normalize(inp, tmp_path / "cli.zarr", target_sum=1e4)
    with pytest.raises(Exception) as dask_error:
        atlasnorm.dask.normalize(inp, out, client=client, target_sum=1e4, block_values=100)
    assert "NaN or infinite" in str(dask_error.value) and "NaN or infinite" in str(cli_error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.zarr"]


def test_a_worker_killed_mid_run_is_retried_with_the_same_bits(client, tmp_path):
    """The first write task to start kills its worker process (os._exit): Dask reschedules it
    on the other worker (its nanny restarts the dead one), and the output is the CLI's."""
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-sharded", chunking="small"), seed=5)
    flag = tmp_path / "killed"

    class KillOnce(distributed.WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and str(key).startswith("atlasnorm-write") and not flag.exists():
                flag.write_text(str(key))
                os._exit(1)

    client.register_plugin(KillOnce(), name="kill-once")
    try:
        out = tmp_path / "out.zarr"
        atlasnorm.dask.normalize(inp, out, client=client, block_values=150)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert flag.exists()
    atlasnorm.normalize(inp, tmp_path / "cli.zarr")
    assert_same_stores(out, tmp_path / "cli.zarr")
    client.wait_for_workers(2, timeout=60)


class KillAlways(distributed.WorkerPlugin):
    """Every write task kills its worker process as it starts."""

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("atlasnorm-write"):
            os._exit(1)


@contextlib.contextmanager
def killing_cluster_without_retries():
    """A client on a LocalCluster of its own (two worker processes) that allows no retries and
    whose every write task kills its worker."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=50) as cluster, \
                distributed.Client(cluster) as c:
            c.register_plugin(KillAlways(), name="kill-always")
            yield c


def test_killed_workers_beyond_retries_leave_no_output(tmp_path, moto):
    """With no retries allowed, the killed worker's task fails the run: a clear error and no
    store under OUTPUT's name (nor a staging directory)."""
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v2", chunking="small"), seed=6)
    with killing_cluster_without_retries() as c:
        with pytest.raises(distributed.KilledWorker):
            atlasnorm.dask.normalize(inp, tmp_path / "out.zarr", client=c, block_values=150)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


def test_a_cluster_that_loses_every_worker_fails_without_hanging(tmp_path, moto):
    """Regression: a failed run once waited for every task to end before removing its staging
    area; with every worker gone for good the tasks to recompute (lost results) never ran and
    the client hung. It cancels them, and returns the error with nothing left behind."""
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-sharded", chunking="small"), seed=8)
    with killing_cluster_without_retries() as c:
        # Nannies told to close with their workers: a killed worker is not restarted.
        c.run(lambda dask_worker: dask_worker.close_gracefully(reason="test"), nanny=True)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            run = pool.submit(atlasnorm.dask.normalize, inp, tmp_path / "out.zarr", client=c,
                              block_values=150)
            with pytest.raises(distributed.KilledWorker):
                run.result(timeout=120)  # a TimeoutError here is the hang
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


def upload(s3, local: Path, prefix: str) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            s3.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(local).as_posix()}")


def download(s3, prefix: str, local: Path) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            dest = local / obj["Key"][len(prefix) + 1:]
            dest.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, obj["Key"], str(dest))


@pytest.mark.parametrize("spec", [ZarrSpec(store="v3-sharded", chunking="small"),
                                  ZarrSpec(store="v2", chunking="small", layout="dense")],
                         ids=lambda s: s.short())
def test_dask_on_s3_equals_the_cli(client, moto, tmp_path, spec):
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, spec, seed=7)
    name = spec.short()
    upload(moto, inp, f"{name}/in.zarr")
    opts = dict(exclude_highly_expressed=True, max_fraction=0.1, key_added="f")
    atlasnorm.normalize(inp, tmp_path / "cli.zarr", **opts)
    url_in, url_out = f"s3://{BUCKET}/{name}/in.zarr", f"s3://{BUCKET}/{name}/out.zarr"
    _, workers = ran_on(client, "atlasnorm-",
                        lambda: atlasnorm.dask.normalize(url_in, url_out, client=client, block_values=150, **opts))
    assert len(workers) == 2
    download(moto, f"{name}/out.zarr", tmp_path / "s3-out.zarr")
    assert_same_stores(tmp_path / "s3-out.zarr", tmp_path / "cli.zarr")


def test_what_cannot_be_split_runs_whole(client, tmp_path):
    """An .h5ad output and a CSC input: one task, the CLI's job; the same output."""
    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-sharded", layout="csc"), seed=2)
    atlasnorm.normalize(inp, tmp_path / "cli.zarr", target_sum=1e4)
    _, workers = ran_on(client, "atlasnorm-whole",
                        lambda: atlasnorm.dask.normalize(inp, tmp_path / "dask.zarr", client=client, target_sum=1e4))
    assert len(workers) == 1
    assert_same_stores(tmp_path / "dask.zarr", tmp_path / "cli.zarr")
    atlasnorm.dask.normalize(inp, tmp_path / "dask.h5ad", client=client, target_sum=1e4)
    atlasnorm.normalize(inp, tmp_path / "cli.h5ad", target_sum=1e4)
    assert diff_files(tmp_path / "cli.h5ad", tmp_path / "dask.h5ad") == []


def test_a_malformed_indptr_is_refused_as_the_cli_refuses_it(client, tmp_path):
    """Regression: the client once planned from an unchecked indptr (one not starting at 0 was
    silently cut to its values); it is checked as the CLI's first pass checks it."""
    import zarr

    inp = tmp_path / "in.zarr"
    write_zarr_case(inp, ZarrSpec(store="v3-plain"), seed=4)
    indptr = zarr.open_array(str(inp / "X" / "indptr"), mode="r+")
    indptr[0] = 1
    with pytest.raises(ValueError) as cli_error:
        atlasnorm.normalize(inp, tmp_path / "cli.zarr")
    with pytest.raises(ValueError) as dask_error:
        atlasnorm.dask.normalize(inp, tmp_path / "dask.zarr", client=client, block_values=150)
    assert "indptr[0] is 1, not 0" in str(cli_error.value)
    assert str(dask_error.value) == str(cli_error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]
