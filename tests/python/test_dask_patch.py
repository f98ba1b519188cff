"""The scanpy patch on dask arrays against unpatched scanpy 1.12.4 on the same dask input.

Each case builds the same dask-backed AnnData (or dask array) twice, runs scanpy's own
function on one and the patched one on the other, and compares what a caller sees: the lazy
result (type, dtype, chunks, meta), the computed blocks and the computed matrix bit for bit
(type, dtype, indices, indptr, values), returned values, obs, uns, the number of eager
computations during the call (scanpy's one barrier: the median) and the warnings (at call time
with file and line; at compute time category and message, because a block numpy warns about is
recomputed by numpy called from atlasnorm's block function). Supported forms run with
``on_fallback="raise"``. Most cases use the synchronous scheduler; a few run on a
``LocalCluster`` of two worker processes and check that both ran the patch's tasks.
"""

from __future__ import annotations

import warnings

import anndata as ad
import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from dask.callbacks import Callback

import atlasnorm
from atlasnorm import _dask_patch

DTYPES = [np.float32, np.float64, np.int32, np.int64]
CHUNKS = {"irregular": (7, 23, 1, 29), "one": (60,)}


@pytest.fixture(autouse=True)
def patch_active():
    atlasnorm.activate(on_fallback="raise")
    atlasnorm.reset_stats()
    with dask.config.set(scheduler="synchronous"):
        yield
    atlasnorm.deactivate()


def originals():
    return sc.pp.normalize_total.__wrapped__, sc.pp.log1p.__wrapped__


def values(rng, n_obs, n_vars, dtype, kind="poisson"):
    if kind == "poisson":
        x = rng.poisson(rng.gamma(0.6, 1.5, (n_obs, 1)), (n_obs, n_vars)).astype(np.float64)
        x[rng.random(x.shape) < 0.4] = 0
    else:  # fractional: block sums in float32 depend on the order of additions
        x = rng.random((n_obs, n_vars)) * (rng.random((n_obs, n_vars)) < 0.6) * 7.3
    x[min(3, n_obs - 1)] = 0  # a zero-count cell
    if np.issubdtype(dtype, np.integer):
        x = np.rint(x)
    return x.astype(dtype)


def lazy(x, kind, chunks, *, index_dtype=np.int32, csr=sp.csr_matrix):
    """A fresh dask array of ``x`` (CSR blocks or dense blocks), rows split by ``chunks``."""
    if kind == "csr":
        m = csr(x)
        m.indices = m.indices.astype(index_dtype)
        m.indptr = m.indptr.astype(index_dtype)
        return da.from_array(m, chunks=(chunks, -1), asarray=False)
    return da.from_array(np.array(x, copy=True), chunks=(chunks, -1))


def adata_of(x, *, layer=None):
    n_obs, n_vars = x.shape
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_obs)])
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_vars)])
    if layer is None:
        return ad.AnnData(x, obs=obs, var=var)
    return ad.AnnData(np.zeros(x.shape, np.float32), obs=obs, var=var, layers={layer: x})


class Computes(Callback):
    """Counts the dask computations started (eager barriers)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def call(f, *args, **kwargs):
    """Both sides call from this line: the warnings' file and line are comparable."""
    with warnings.catch_warnings(record=True) as w, Computes() as c:
        warnings.simplefilter("always")
        result = f(*args, **kwargs)
    return result, [(x.category, str(x.message), x.filename, x.lineno) for x in w], c.n


def computed(x):
    """The blocks and the whole of a dask array, with the warnings computing them gave."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        blocks = dask.compute(*x.to_delayed().ravel())
        whole = x.compute()
    return blocks, whole, [(y.category, str(y.message)) for y in w]


def bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.kind == "f" else a


def assert_same_matrix(got, want):
    assert type(got) is type(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if sp.issparse(want):
        assert got.indices.dtype == want.indices.dtype
        assert got.indptr.dtype == want.indptr.dtype
        assert np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.indptr, want.indptr)
        assert np.array_equal(bits(got.data), bits(want.data))
    else:
        assert got.flags.c_contiguous == want.flags.c_contiguous
        assert np.array_equal(bits(got), bits(want))


def assert_same_lazy(got, want):
    """Same dask array from the outside, and the same bits once computed."""
    assert isinstance(got, da.Array) and isinstance(want, da.Array)
    assert got.chunks == want.chunks and got.dtype == want.dtype
    assert type(got._meta) is type(want._meta)
    assert got._meta.dtype == want._meta.dtype and got._meta.shape == want._meta.shape
    g_blocks, g_whole, g_warn = computed(got)
    w_blocks, w_whole, w_warn = computed(want)
    assert g_warn == w_warn
    for g, w in zip(g_blocks, w_blocks, strict=True):
        assert_same_matrix(g, w)
    assert_same_matrix(g_whole, w_whole)
    return w_whole


def assert_same(got, want):
    if isinstance(want, da.Array):
        assert_same_lazy(got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, ad.AnnData):
        assert_same_adata(got, want)
    elif want is None:
        assert got is None
    else:
        assert_same_matrix(got, want)


def assert_same_adata(got, want):
    assert_same(got.X, want.X)
    assert got.layers.keys() == want.layers.keys()
    for k in want.layers:
        assert_same(got.layers[k], want.layers[k])
    pd.testing.assert_frame_equal(got.obs, want.obs, check_exact=True)
    for c in want.obs:
        assert np.array_equal(bits(got.obs[c].to_numpy()), bits(want.obs[c].to_numpy()))
    assert repr(dict(got.uns)) == repr(dict(want.uns))


def blocks_by_scanpy():
    return sum(_dask_patch.blocks_by_scanpy().values())


@pytest.fixture(autouse=True)
def kernels_take_plain_blocks(request):
    """Every block goes through the kernels, unless a test says it gives scanpy some."""
    before = blocks_by_scanpy()
    yield
    if "scanpy_blocks_expected" not in request.fixturenames:
        assert blocks_by_scanpy() == before


@pytest.fixture
def scanpy_blocks_expected():
    """Requested by the tests whose input has blocks the kernels leave to scanpy."""


def run_both(f_name, build, **kwargs):
    """scanpy's own function on one build, the patched one on another; everything compared."""
    own = dict(zip(("normalize_total", "log1p"), originals()))[f_name]
    a, b = build(), build()
    want, w_want, n_want = call(own, a, **kwargs)
    got, w_got, n_got = call(getattr(sc.pp, f_name), b, **kwargs)
    assert w_got == w_want
    assert n_got == n_want
    assert_same(got, want)
    if isinstance(a, ad.AnnData):
        assert_same_adata(b, a)
    else:  # scanpy rebinds a float dask array it is given (numpy's `out=`)
        assert (got is b) == (want is a)
        assert_same_lazy(b, a)
    return a, b, want, got


NT_KWARGS = [
    {},
    {"target_sum": 1e4},
    {"target_sum": 10000},
    {"target_sum": np.float32(1e4)},
    {"key_added": "factor"},
    {"inplace": False},
    {"copy": True},
    {"layer": "counts", "target_sum": 1.0},
]


def kw_id(k):
    return ",".join(f"{a}={b!r}" for a, b in k.items()) or "defaults"


@pytest.mark.parametrize("kind", ["csr", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("chunks", CHUNKS, ids=str)
@pytest.mark.parametrize("kwargs", NT_KWARGS, ids=kw_id)
def test_normalize_total_matches_scanpy_on_dask(kind, dtype, chunks, kwargs):
    rng = np.random.default_rng(hash((kind, np.dtype(dtype).name, chunks)) % 2**32)
    x = values(rng, 60, 45, dtype, "fractional" if np.dtype(dtype).kind == "f" else "poisson")
    layer = kwargs.get("layer")
    run_both(
        "normalize_total", lambda: adata_of(lazy(x, kind, CHUNKS[chunks]), layer=layer), **kwargs
    )
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1


@pytest.mark.parametrize("kind", ["csr", "dense"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("base", [None, 2, 10.0])
@pytest.mark.parametrize("copy", [False, True])
def test_log1p_matches_scanpy_on_dask(kind, dtype, base, copy):
    rng = np.random.default_rng(hash((kind, np.dtype(dtype).name)) % 2**32)
    x = values(rng, 60, 45, dtype)
    run_both("log1p", lambda: adata_of(lazy(x, kind, CHUNKS["irregular"])), base=base, copy=copy)
    run_both("log1p", lambda: lazy(x, kind, CHUNKS["irregular"]), base=base, copy=copy)
    assert atlasnorm.stats()["log1p"]["fast"] == 2


@pytest.mark.parametrize("kind", ["csr", "dense"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_pipeline_reproduces_scanpys_dask_sums_not_its_in_memory_ones(kind, dtype):
    """normalize_total then log1p; on fractional CSR data scanpy's dask result differs from its
    in-memory one (float32 reduceat block sums), and the patch gives the dask one."""
    rng = np.random.default_rng(7)
    x = values(rng, 80, 300, dtype, "fractional")
    nt, lp = originals()
    a, b = adata_of(lazy(x, kind, (30, 50))), adata_of(lazy(x, kind, (30, 50)))
    nt(a)
    lp(a)
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    want = assert_same_lazy(b.X, a.X)
    assert repr(dict(b.uns)) == repr(dict(a.uns))
    if kind == "csr" and dtype == np.float32:
        m = adata_of(sp.csr_matrix(x))
        with atlasnorm.disabled():
            sc.pp.normalize_total(m)
            sc.pp.log1p(m)
        assert not np.array_equal(bits(m.X.data), bits(want.data))


@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_long_rows_negative_zeros_and_empty_rows(kind):
    """Rows of thousands of stored values (numpy's pairwise blocks inside reduceat), -0.0 and
    stored zeros, empty rows and a one-row block."""
    rng = np.random.default_rng(11)
    x = (rng.random((9, 9000)) * 3).astype(np.float32)
    x[:, ::7] = -0.0
    x[2] = 0
    x[5, :4000] = 0
    for chunks in [(9,), (4, 1, 4)]:
        run_both("normalize_total", lambda c=chunks: adata_of(lazy(x, kind, c)))
        run_both("normalize_total", lambda c=chunks: adata_of(lazy(x, kind, c)), target_sum=1e4)


@pytest.mark.parametrize("kind", ["csr", "dense"])
def test_all_zero_cells_median_nan_and_numpy_warnings(kind, scanpy_blocks_expected):
    """No positive total: np.median warns at call time and every value becomes NaN; negative
    values make numpy warn in log1p at compute time (those blocks are numpy's own)."""
    x = np.zeros((20, 6), np.float32)
    run_both("normalize_total", lambda: adata_of(lazy(x, kind, (8, 12))))
    y = np.array([[-2.0, 1.0, 0.5], [3.0, 0.0, 1.0], [-1.0, 2.0, 0.0]] * 4, np.float32)
    before = _dask_patch.blocks_by_scanpy().get("log1p", 0)
    run_both("log1p", lambda: adata_of(lazy(y, kind, (5, 7))))
    assert _dask_patch.blocks_by_scanpy()["log1p"] > before


def test_int64_indices_csr_array_and_unsorted_indices(scanpy_blocks_expected):
    rng = np.random.default_rng(3)
    x = values(rng, 40, 30, np.float32, "fractional")
    run_both("normalize_total", lambda: adata_of(lazy(x, "csr", (15, 25), index_dtype=np.int64)))
    run_both("log1p", lambda: adata_of(lazy(x, "csr", (15, 25), csr=sp.csr_array)))

    def unsorted():  # non-canonical blocks: scipy's log1p sorts them; the patch lets it
        m = sp.csr_matrix(x)
        for i in range(m.shape[0]):
            s = slice(m.indptr[i], m.indptr[i + 1])
            m.indices[s] = m.indices[s][::-1]
            m.data[s] = m.data[s][::-1]
        m.has_sorted_indices = False
        return adata_of(da.from_array(m, chunks=(15, -1), asarray=False))

    before = _dask_patch.blocks_by_scanpy().get("log1p", 0)
    run_both("normalize_total", unsorted)
    assert _dask_patch.blocks_by_scanpy().get("log1p", 0) == before
    run_both("log1p", unsorted)
    assert _dask_patch.blocks_by_scanpy()["log1p"] > before


def test_read_elem_lazy_from_zarr(tmp_path):
    rng = np.random.default_rng(5)
    x = values(rng, 200, 50, np.float32, "fractional")
    ad.AnnData(sp.csr_matrix(x), layers={"dense": x}).write_zarr(tmp_path / "a.zarr")
    import zarr

    g = zarr.open_group(tmp_path / "a.zarr", mode="r")

    def build(elem, chunks):
        return lambda: adata_of(ad.experimental.read_elem_lazy(elem, chunks=chunks))

    for elem, chunks in [(g["X"], None), (g["X"], (64, -1)), (g["layers/dense"], (64, -1))]:
        _, b, _, _ = run_both("normalize_total", build(elem, chunks), target_sum=1e4)
        run_both("log1p", build(elem, chunks))
    assert atlasnorm.stats()["normalize_total"]["fallback"] == 0


# --- fallbacks: counted, and scanpy's result -------------------------------------------------


def _x(dtype=np.float32):
    return values(np.random.default_rng(1), 30, 20, dtype)


FALLBACKS = [
    ("column-chunked CSR", lambda: adata_of(da.from_array(sp.csr_matrix(_x()), chunks=(10, 10), asarray=False)), {}, "column-chunked dask array"),
    ("column-chunked dense", lambda: adata_of(da.from_array(_x(), chunks=(10, 7))), {}, "column-chunked dask array"),
    ("float16", lambda: adata_of(da.from_array(_x(np.float16), chunks=(10, -1))), {}, "dask array of dtype float16"),
    ("CSC blocks", lambda: adata_of(da.from_array(sp.csc_matrix(_x()), chunks=(10, -1), asarray=False)), {}, "dask blocks of type scipy.sparse._csc.csc_matrix"),
    ("exclude_highly_expressed", lambda: adata_of(lazy(_x(), "csr", (10, 20))), {"exclude_highly_expressed": True, "max_fraction": 0.2}, "exclude_highly_expressed on a dask array"),
    ("float64 target", lambda: adata_of(lazy(_x(), "dense", (10, 20))), {"target_sum": np.float64(1e4)}, "target_sum float64 promotes float32"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "build", "kwargs", "reason"), FALLBACKS, ids=[f[0] for f in FALLBACKS])
def test_fallbacks_are_counted_and_give_scanpys_result(name, build, kwargs, reason):
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    a, b = build(), build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scanpy's own warnings here (compared by test_patch)
        want = originals()[0](a, **kwargs)
        got = sc.pp.normalize_total(b, **kwargs)
        assert want is None and got is None
        assert_same_adata(b, a)
    s = atlasnorm.stats()["normalize_total"]
    assert s["fast"] == 0 and s["fallback"] == 1 and s["reasons"] == {reason: 1}


def test_log1p_on_column_chunks_is_served():
    """log1p is element-wise: any chunking gives scanpy's blocks."""
    run_both("log1p", lambda: adata_of(da.from_array(sp.csr_matrix(_x()), chunks=(10, 7), asarray=False)))
    assert atlasnorm.stats()["log1p"] == {"fast": 1, "fallback": 0, "reasons": {}}


# --- a real cluster: two worker processes -----------------------------------------------------


@pytest.fixture(scope="module")
def client():
    import distributed

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=40,
    )  # fmt: skip
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


@pytest.mark.parametrize("layer", ["X", "layers/dense"])
def test_on_a_local_cluster_both_workers_run_the_patch(client, tmp_path, layer):
    import distributed
    import zarr

    rng = np.random.default_rng(9)
    x = values(rng, 400, 60, np.float32, "fractional")
    ad.AnnData(sp.csr_matrix(x), layers={"dense": x}).write_zarr(tmp_path / "a.zarr")
    g = zarr.open_group(tmp_path / "a.zarr", mode="r")
    nt, lp = originals()

    def build():
        return adata_of(ad.experimental.read_elem_lazy(g[layer], chunks=(25, -1)))

    with client.as_current(), dask.config.set(scheduler="dask.distributed"):
        a, b = build(), build()
        nt(a, key_added="f")
        lp(a)
        with distributed.get_task_stream(client) as ts:
            sc.pp.normalize_total(b, key_added="f")  # the median: a computation on the cluster
            sc.pp.log1p(b)
            got = b.X.compute()
        want = a.X.compute()
    assert_same_matrix(got, want)
    assert np.array_equal(bits(b.obs["f"].to_numpy()), bits(a.obs["f"].to_numpy()))
    patched = {t["worker"] for t in ts.data if str(t["key"]).startswith("('_block_")}
    assert len(patched) == 2, patched
