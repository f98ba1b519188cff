"""atlasnorm's patch against unpatched scanpy 1.12.4, call by call.

Every case builds the same AnnData (or array) twice, calls scanpy's own function
(``__wrapped__`` of the patched one) on one copy and the patched function on the other, and
compares everything a caller can see: X (type, format, dtype, indices, indptr, values bit for
bit, which buffers were replaced), returned values, obs, uns and the warnings (category,
message, file). Supported forms run with ``on_fallback="raise"``: a fallback is a failure.
"""

from __future__ import annotations

import itertools
import warnings
import weakref

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import atlasnorm

SPARSE = {
    "csr_matrix": sp.csr_matrix,
    "csr_array": sp.csr_array,
    "csc_matrix": sp.csc_matrix,
    "csc_array": sp.csc_array,
}
FORMATS = [*SPARSE, "dense_C", "dense_F"]
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint16, np.int8]


@pytest.fixture(autouse=True)
def patch_active():
    atlasnorm.activate(on_fallback="raise")
    atlasnorm.reset_stats()
    yield
    atlasnorm.deactivate()


def originals():
    return sc.pp.normalize_total.__wrapped__, sc.pp.log1p.__wrapped__


def counts(rng, n_obs, n_vars, dtype, *, kind="poisson"):
    if kind == "poisson":
        x = rng.poisson(rng.gamma(0.6, 1.5, (n_obs, 1)), (n_obs, n_vars)).astype(np.float64)
        x[rng.random(x.shape) < 0.4] = 0
    elif kind == "fractional":
        x = rng.random((n_obs, n_vars)) * (rng.random((n_obs, n_vars)) < 0.3) * 7.3
    elif kind == "spiky":  # a few genes dominate some cells (exclude_highly_expressed)
        x = rng.poisson(0.5, (n_obs, n_vars)).astype(np.float64)
        x[rng.integers(0, n_obs, n_obs // 3 + 1), rng.integers(0, n_vars, n_obs // 3 + 1)] = 60
    x[min(3, n_obs - 1)] = 0  # a zero-count cell
    if np.issubdtype(dtype, np.integer):
        x = np.rint(x).clip(0, np.iinfo(dtype).max)
    return x.astype(dtype)


def make_matrix(fmt, x, index_dtype=np.int32):
    if fmt in SPARSE:
        m = SPARSE[fmt](x)
        m.indices = m.indices.astype(index_dtype)
        m.indptr = m.indptr.astype(index_dtype)
        return m
    # A fresh array every time: AnnData does not copy, so two builds must not share memory.
    return np.array(x, order="F" if fmt == "dense_F" else "C", copy=True)


def make_adata(x, *, layer=None):
    a = ad.AnnData(
        x,
        obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(x.shape[1])]),
    )
    if layer:
        a.layers[layer] = x.copy()
    return a


def call(f, *args, **kwargs):
    """Both sides call from this line, so the warnings' file and line are comparable."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result = f(*args, **kwargs)
    return result, [(x.category, str(x.message), x.filename, x.lineno) for x in w]


def bits(a):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return a.view(f"u{a.dtype.itemsize}")
    return a


def assert_same_matrix(got, want):
    assert type(got) is type(want)
    if sp.issparse(want):
        assert got.format == want.format
        assert got.shape == want.shape
        assert got.dtype == want.dtype
        assert got.data.dtype.byteorder == want.data.dtype.byteorder  # "<f4" vs "=f4"
        assert got.indices.dtype == want.indices.dtype
        assert got.indptr.dtype == want.indptr.dtype
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.indptr, want.indptr)
        assert np.array_equal(bits(got.data), bits(want.data))
    else:
        assert got.dtype == want.dtype
        assert got.dtype.byteorder == want.dtype.byteorder
        assert got.shape == want.shape
        assert got.flags.c_contiguous == want.flags.c_contiguous
        assert got.flags.f_contiguous == want.flags.f_contiguous
        assert np.array_equal(bits(got), bits(want))


def assert_same_value(got, want):
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for k in want:
            assert_same_value(got[k], want[k])
    elif isinstance(want, ad.AnnData):
        assert_same_adata(got, want)
    elif sp.issparse(want) or isinstance(want, np.ndarray):
        assert_same_matrix(got, want)
    else:
        assert type(got) is type(want) and got == want


def assert_same_adata(got, want):
    assert_same_matrix(got.X, want.X)
    assert got.layers.keys() == want.layers.keys()
    for k in want.layers:
        assert_same_matrix(got.layers[k], want.layers[k])
    pd.testing.assert_frame_equal(got.obs, want.obs, check_exact=True)
    for c in want.obs:
        assert np.array_equal(bits(got.obs[c].to_numpy()), bits(want.obs[c].to_numpy()))
    assert repr(dict(got.uns)) == repr(dict(want.uns))
    assert got.is_view == want.is_view


def buffers(a):
    """X and its arrays, held (so that no id is reused while compared)."""
    x = a.X
    if sp.issparse(x):
        return (x, x.data, x.indices, x.indptr)
    return (x,)


def same_buffer_changes(before_a, after_a, before_b, after_b):
    """Which of X and its arrays were replaced must match (scanpy gives CSR a new data
    array and divides dense in place)."""
    return [p is q for p, q in zip(before_a, after_a)] == [p is q for p, q in zip(before_b, after_b)]


def run_both_nt(build, **kwargs):
    nt, _ = originals()
    a, b = build(), build()
    ba, bb = buffers(a), buffers(b)
    want, w_want = call(nt, a, **kwargs)
    got, w_got = call(sc.pp.normalize_total, b, **kwargs)
    assert w_got == w_want
    assert_same_adata(b, a)
    if want is not None or got is not None:
        assert_same_value(got, want)
    assert same_buffer_changes(ba, buffers(a), bb, buffers(b))
    return a, b


NT_KWARGS = [
    {},
    {"target_sum": 1e4},
    {"target_sum": 10000},
    {"target_sum": np.float32(1e4)},
    {"target_sum": np.float64(1e4)},  # float64 factors on float32 data (NEP 50)
    {"target_sum": np.float64(3.3), "key_added": "f"},
    {"target_sum": np.int64(10000), "exclude_highly_expressed": True},
    {"target_sum": 1.0},
    {"exclude_highly_expressed": True},
    {"exclude_highly_expressed": True, "max_fraction": 0.2, "target_sum": 1e4},
    {"key_added": "n_counts_factor"},
    {"inplace": False},
    {"copy": True},
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kwargs", NT_KWARGS, ids=lambda k: ",".join(f"{a}={b!r}" for a, b in k.items()) or "defaults")
def test_normalize_total_matches_scanpy(fmt, dtype, kwargs):
    rng = np.random.default_rng(hash((fmt, np.dtype(dtype).name)) % 2**32)
    spiky = "exclude_highly_expressed" in kwargs
    x = counts(rng, 60, 300 if spiky else 45, dtype, kind="spiky" if spiky else "poisson")
    run_both_nt(lambda: make_adata(make_matrix(fmt, x)), **kwargs)
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["poisson", "fractional", "spiky"])
@pytest.mark.parametrize("shape", [(1, 40), (2, 9), (7, 300), (150, 3), (300, 129)])
def test_shapes_and_values(fmt, kind, shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    for dtype, kwargs in itertools.product(
        [np.float32, np.float64], [{}, {"exclude_highly_expressed": True, "max_fraction": 0.1}]
    ):
        x = counts(rng, *shape, dtype, kind=kind)
        run_both_nt(lambda: make_adata(make_matrix(fmt, x)), **kwargs)
    assert atlasnorm.stats()["normalize_total"]["fallback"] == 0


@pytest.mark.parametrize("fmt", list(SPARSE))
def test_int64_indices(fmt):
    rng = np.random.default_rng(7)
    x = counts(rng, 80, 50, np.float32)
    run_both_nt(lambda: make_adata(make_matrix(fmt, x, np.int64)), exclude_highly_expressed=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_layer_and_view(fmt):
    rng = np.random.default_rng(11)
    x = counts(rng, 90, 40, np.float32)
    run_both_nt(lambda: make_adata(make_matrix(fmt, x), layer="counts"), layer="counts", key_added="f")
    run_both_nt(lambda: make_adata(make_matrix(fmt, x))[10:70:2, 3:])


def test_no_positive_total():
    """No positive total with a median target: numpy warns inside scanpy (the median of an
    empty selection) and everything becomes NaN; the patch gives the same warnings and bits."""
    for x in (np.zeros((5, 4), np.float32), -np.ones((3, 4), np.float64)):
        for fmt in FORMATS:
            run_both_nt(lambda: make_adata(make_matrix(fmt, x)))
            run_both_nt(lambda: make_adata(make_matrix(fmt, x)), exclude_highly_expressed=True)
    s = atlasnorm.stats()["normalize_total"]
    assert s["fallback"] == 0


def run_both_log1p(build, **kwargs):
    _, lp = originals()
    a, b = build(), build()
    is_adata = isinstance(a, ad.AnnData)
    ba = buffers(a) if is_adata else None
    bb = buffers(b) if is_adata else None
    want, w_want = call(lp, a, **kwargs)
    got, w_got = call(sc.pp.log1p, b, **kwargs)
    assert w_got == w_want
    if is_adata:
        assert_same_adata(b, a)
        assert same_buffer_changes(ba, buffers(a), bb, buffers(b))
        if want is not None:
            assert_same_adata(got, want)
        else:
            assert got is None
    else:
        assert_same_matrix(b, a)  # the input, changed in place or not, alike
        assert_same_matrix(got, want)
        assert (got is b) == (want is a)
        if sp.issparse(want):
            assert (got.data is b.data) == (want.data is a.data)


LOG1P_KWARGS = [{}, {"base": 2}, {"base": 10.0}, {"base": np.e}, {"copy": True}, {"base": 2, "copy": True}]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kwargs", LOG1P_KWARGS, ids=lambda k: ",".join(f"{a}={b!r}" for a, b in k.items()) or "defaults")
def test_log1p_anndata_matches_scanpy(fmt, dtype, kwargs):
    rng = np.random.default_rng(3)
    x = counts(rng, 50, 33, dtype, kind="fractional" if np.issubdtype(dtype, np.floating) else "poisson")
    run_both_log1p(lambda: make_adata(make_matrix(fmt, x)), **kwargs)
    assert atlasnorm.stats()["log1p"]["fast"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("copy", [False, True])
def test_log1p_arrays_match_scanpy(fmt, dtype, copy):
    rng = np.random.default_rng(5)
    x = counts(rng, 40, 21, dtype)
    run_both_log1p(lambda: make_matrix(fmt, x), copy=copy)


def test_log1p_after_normalize_and_twice():
    rng = np.random.default_rng(9)
    x = counts(rng, 200, 64, np.float32)
    for fmt in FORMATS:
        nt, lp = originals()

        def build():
            a = make_adata(make_matrix(fmt, x), layer="raw")
            nt(a)
            return a

        run_both_log1p(build)
        run_both_log1p(lambda: (lambda a: (lp(a), a)[1])(build()))  # "already log-transformed"
        run_both_log1p(build, layer="raw")
        run_both_log1p(lambda: build()[5:50])


def test_log1p_obsm():
    rng = np.random.default_rng(2)
    a = make_adata(counts(rng, 30, 10, np.float32))
    a.obsm["emb"] = rng.random((30, 5)).astype(np.float32)
    run_both_log1p(lambda: a.copy(), obsm="emb")


def test_sparse_nan_and_negatives_go_to_scanpy():
    """Where scanpy raises (NaN in sparse data) or numpy warns (values <= -1), scanpy runs:
    same error, same warnings, same values."""
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    _, lp = originals()
    x = np.array([[1.0, np.nan, 0], [2, 0, 3]], np.float32)
    for fmt in SPARSE:
        with pytest.raises(ValueError, match="NaN") as want:
            lp(make_matrix(fmt, x))
        with pytest.raises(ValueError, match="NaN") as got:
            sc.pp.log1p(make_matrix(fmt, x))
        assert str(got.value) == str(want.value)
    neg = np.array([[-1.0, -2.0, 0.5], [2, 0, 3]], np.float32)
    for fmt in FORMATS:
        run_both_log1p(lambda: make_matrix(fmt, neg))
    assert atlasnorm.stats()["log1p"]["fast"] == 0


def test_threads_do_not_change_bits():
    rng = np.random.default_rng(13)
    x = counts(rng, 3000, 200, np.float32, kind="fractional")
    results = []
    for n in (1, 2, 3):
        atlasnorm.set_threads(n)
        a = make_adata(sp.csr_matrix(x))
        sc.pp.normalize_total(a, exclude_highly_expressed=True, key_added="f")
        sc.pp.log1p(a)
        d = make_adata(x.copy())
        sc.pp.normalize_total(d)
        sc.pp.log1p(d, base=2)
        results.append((bits(a.X.data).copy(), bits(a.obs["f"]).copy(), bits(d.X).copy()))
    atlasnorm.set_threads(None)
    for r in results[1:]:
        for p, q in zip(r, results[0]):
            assert np.array_equal(p, q)


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_target_on_float32(fmt):
    """A numpy float64 target on float32 data: scanpy's factors are float64, its CSR data
    becomes float64 and its dense data stays float32 (divided in float64, rounded once)."""
    rng = np.random.default_rng(21)
    x = counts(rng, 120, 70, np.float32, kind="fractional")
    for target in (np.float64(1e4), np.float64(0.1), np.float64(1 / 3)):
        for kwargs in ({}, {"exclude_highly_expressed": True, "max_fraction": 0.2}, {"inplace": False}):
            a, b = run_both_nt(lambda: make_adata(make_matrix(fmt, x)), target_sum=target, key_added="k", **kwargs)
            if not kwargs.get("inplace", True):
                continue
            want_dtype = np.float32 if fmt.startswith("dense") else np.float64
            assert b.X.dtype == want_dtype and b.obs["k"].dtype == np.float64
    assert atlasnorm.stats()["normalize_total"]["fallback"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_float64_target_overflow_goes_to_scanpy(fmt):
    """Where numpy warns (the factors or the quotients overflow), scanpy runs: same warnings,
    same values."""
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    x = np.array([[1.0, 3e38, 0], [2, 0, 3]], np.float32)
    for target in (np.float64(1e300), np.float64(1e-300), np.float64(1e38), np.float64(2.0**-1030)):
        run_both_nt(lambda: make_adata(make_matrix(fmt, x)), target_sum=target)


# --- CSR data nobody else sees: divided in its own array ---


def data_address(a):
    """Where X's data lives, as a number (holding no reference to the array)."""
    return a.X.data.ctypes.data


def in_place_expected(fmt, dtype, kwargs):
    """Where the patch divides CSR values in the old array: CSR float input whose result
    stays in the working dtype (numpy promotes float32 data divided by an np.float64 or
    np.int64 target to float64)."""
    target = kwargs.get("target_sum")
    wide = target is not None and (np.ones(1, dtype) / target).dtype != np.dtype(dtype)
    return fmt.startswith("csr") and np.dtype(dtype).kind == "f" and not wide


@pytest.mark.parametrize("fmt", list(SPARSE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kwargs", NT_KWARGS, ids=lambda k: ",".join(f"{a}={b!r}" for a, b in k.items()) or "defaults")
def test_unseen_csr_data_is_divided_in_its_own_array(fmt, dtype, kwargs):
    """scanpy gives CSR a new data array and the old one is freed; when nothing else refers
    to the old one (run_both_nt holds it, so it tests the other path), the patch divides the
    values in it: the same bits, obs, uns, warnings and returns, one array less."""
    nt, _ = originals()
    rng = np.random.default_rng(5)
    spiky = "exclude_highly_expressed" in kwargs
    x = counts(rng, 60, 300 if spiky else 45, dtype, kind="spiky" if spiky else "poisson")
    a, b = make_adata(make_matrix(fmt, x)), make_adata(make_matrix(fmt, x))
    before = data_address(b)
    want, w_want = call(nt, a, **kwargs)
    got, w_got = call(sc.pp.normalize_total, b, **kwargs)
    assert w_got == w_want
    assert_same_adata(b, a)
    assert_same_value(got, want)
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1
    result = got if kwargs.get("copy") else b
    if kwargs.get("inplace", True):
        moved = data_address(result) != before
        assert moved != (in_place_expected(fmt, dtype, kwargs) and not kwargs.get("copy"))


@pytest.mark.parametrize("held", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kwargs", [{}, {"target_sum": np.float64(1e4)}, {"inplace": False}], ids=str)
def test_data_spelled_little_endian_keeps_scanpy_spelling(held, dtype, kwargs):
    """zarr's arrays spell their dtype '<f4'; scanpy's new data array is spelled as the old
    one (native only where the values become float64): so is the patch's, in place or not."""
    nt, _ = originals()
    x = counts(np.random.default_rng(9), 30, 20, dtype)

    def build():
        m = sp.csr_matrix(x)
        m.data = m.data.astype(np.dtype(dtype).newbyteorder("<"))
        return make_adata(m)

    a, b = build(), build()
    kept = b.X.data if held else None
    want = nt(a, **kwargs)
    got = sc.pp.normalize_total(b, **kwargs)
    assert_same_adata(b, a)
    if want is not None:
        assert_same_value(got, want)
        a_x, b_x = want["X"], got["X"]
    else:
        a_x, b_x = a.X, b.X
    assert b_x.data.dtype.byteorder == a_x.data.dtype.byteorder
    assert kept is None or kept.dtype.byteorder == "<"
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1


HOLDERS = {
    "variable": lambda d: d,
    "view": lambda d: d[:],
    "memoryview": memoryview,
    "weakref": weakref.ref,
    "list": lambda d: [d],
    "another matrix": None,  # a second csr_matrix over the same arrays
}


@pytest.mark.parametrize("holder", list(HOLDERS))
@pytest.mark.parametrize("fmt", ["csr_matrix", "csr_array"])
def test_seen_csr_data_keeps_its_values(holder, fmt):
    """Anything that can still see the old data array (a variable, a view, a memoryview, a
    weak reference, a container, another matrix over it) sees after the patched call what it
    sees after scanpy's: the counts (a weak reference: nothing, the old array is freed)."""
    nt, _ = originals()
    rng = np.random.default_rng(6)
    x = counts(rng, 40, 30, np.float32)

    def hold(adata):
        m = adata.X
        if HOLDERS[holder] is None:
            other = SPARSE[fmt]((m.data, m.indices, m.indptr), shape=m.shape, copy=False)
            assert np.shares_memory(other.data, m.data)
            return lambda: other.data
        kept = HOLDERS[holder](m.data)
        return {
            "weakref": lambda: kept(),
            "list": lambda: kept[0],
            "memoryview": lambda: np.asarray(kept),
        }.get(holder, lambda: kept)

    a, b = make_adata(make_matrix(fmt, x)), make_adata(make_matrix(fmt, x))
    look_a, look_b = hold(a), hold(b)
    want, w_want = call(nt, a)
    got, w_got = call(sc.pp.normalize_total, b)
    assert w_got == w_want
    assert_same_adata(b, a)
    seen_a, seen_b = look_a(), look_b()
    assert (seen_a is None) == (seen_b is None) == (holder == "weakref")
    if seen_a is not None:
        assert np.array_equal(bits(seen_b), bits(seen_a))
        assert np.array_equal(bits(seen_a), bits(x[x != 0]))
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1


def test_unseen_csr_data_with_an_infinite_factor_goes_to_scanpy_unchanged():
    """A total that overflows float32 makes an infinite factor, where numpy warns: the call
    goes to scanpy, which must find the values as they were, even on the in-place path."""
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    x = np.array([[3e38, 3e38, 1.0], [2.0, 0.0, 3.0], [1.0, 1.0, 0.0]], np.float32)
    for kwargs in ({}, {"target_sum": 1e4}, {"target_sum": 1e-30}):
        nt, _ = originals()
        a, b = make_adata(sp.csr_matrix(x)), make_adata(sp.csr_matrix(x))
        want, w_want = call(nt, a, **kwargs)
        got, w_got = call(sc.pp.normalize_total, b, **kwargs)
        assert w_got == w_want
        assert_same_adata(b, a)
    assert atlasnorm.stats()["normalize_total"]["fallback"] >= 1


# --- fallbacks: visible, counted, and scanpy's result ---


UNSUPPORTED = [
    ("float16 X", lambda: make_adata(np.ones((4, 3), np.float16)), {}),
    ("float32 max_fraction", lambda: make_adata(sp.csr_matrix(np.ones((4, 3), np.float32))), {"exclude_highly_expressed": True, "max_fraction": np.float32(0.5)}),
    ("np.longdouble target on float32", lambda: make_adata(np.ones((4, 3), np.float32)), {"target_sum": np.longdouble(7)}),
    ("positional", lambda: make_adata(np.ones((4, 3), np.float32)), "positional"),
]


@pytest.mark.parametrize("name,build,kwargs", UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
@pytest.mark.parametrize("policy", ["count", "warn", "raise"])
def test_fallbacks(name, build, kwargs, policy):
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback=policy)
    nt, _ = originals()
    a, b = build(), build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scanpy's own, for positional use
        if kwargs == "positional":
            nt(a, 100.0)
            run = lambda: sc.pp.normalize_total(b, 100.0)  # noqa: E731
        else:
            nt(a, **kwargs)
            run = lambda: sc.pp.normalize_total(b, **kwargs)  # noqa: E731
        if policy == "raise":
            with pytest.raises(atlasnorm.FallbackError):
                run()
            return
        if policy == "warn":
            with pytest.warns(atlasnorm.FallbackWarning):
                run()
        else:
            run()
    assert_same_adata(b, a)
    s = atlasnorm.stats()["normalize_total"]
    assert s["fallback"] == 1 and s["fast"] == 0 and sum(s["reasons"].values()) == 1


def test_patch_covers_every_binding_and_undoes():
    import scanpy.plotting._qc as qc
    import scanpy.preprocessing._normalization as norm
    import scanpy.preprocessing._recipes as recipes
    import scanpy.preprocessing._simple as simple

    nt, lp = originals()
    for f in (sc.pp.normalize_total, norm.normalize_total, recipes.normalize_total, qc.normalize_total):
        assert f is not nt and f.__wrapped__ is nt
    assert sc.pp.log1p is not lp and sc.pp.log1p.__wrapped__ is lp
    assert simple.log1p is lp  # scanpy calls it recursively on x.data: never patched
    with atlasnorm.disabled():
        assert sc.pp.normalize_total is nt and norm.normalize_total is nt and sc.pp.log1p is lp
    assert sc.pp.normalize_total is not nt
    atlasnorm.deactivate()
    assert sc.pp.normalize_total is nt and recipes.normalize_total is nt and qc.normalize_total is nt


def test_recipe_uses_the_patch():
    rng = np.random.default_rng(4)
    x = rng.poisson(rng.gamma(0.5, 2.0, (1, 900)), (150, 900)).astype(np.float32)
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    a = make_adata(sp.csr_matrix(x))
    with atlasnorm.disabled():
        want = a.copy()
        sc.pp.recipe_zheng17(want, n_top_genes=200)
    sc.pp.recipe_zheng17(a, n_top_genes=200)
    assert_same_adata(a, want)
    assert atlasnorm.stats()["normalize_total"]["fast"] == 2  # both of the recipe's calls


def test_pp_namespace_without_activate():
    atlasnorm.deactivate()
    rng = np.random.default_rng(6)
    x = counts(rng, 50, 30, np.float32)
    a, b = make_adata(sp.csr_matrix(x)), make_adata(sp.csr_matrix(x))
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    atlasnorm.pp.normalize_total(b)
    atlasnorm.pp.log1p(b)
    assert_same_adata(b, a)
    assert atlasnorm.stats()["normalize_total"]["fast"] == 1


def test_explicit_little_endian_dtypes():
    """Arrays read from zarr carry an explicit '<' byte order (buffer format "<f"): served,
    same bits. Big-endian arrays go to scanpy."""
    rng = np.random.default_rng(8)
    x = counts(rng, 40, 30, np.float32)
    # np.dtype("<f4") is spelled "=" on this machine; zarr 3 hands out arrays spelled "<".
    for dtype in (np.dtype(np.float32).newbyteorder("<"), np.dtype(np.float64).newbyteorder("<")):
        assert dtype.byteorder == "<"
        for fmt in FORMATS:
            def build():
                m = make_matrix(fmt, x.astype(dtype))
                if sp.issparse(m):
                    m.data = m.data.astype(dtype)
                return make_adata(m)

            run_both_nt(build)
            run_both_log1p(build)
    assert atlasnorm.stats()["normalize_total"]["fallback"] == 0
    atlasnorm.deactivate()
    atlasnorm.activate(on_fallback="count")
    atlasnorm.reset_stats()
    for fmt in ("dense_C", "dense_F"):  # scipy.sparse refuses big-endian data

        def build_big():
            return make_adata(make_matrix(fmt, x).astype(">f4"))

        run_both_log1p(build_big)
    assert atlasnorm.stats()["log1p"]["fast"] == 0


@pytest.mark.parametrize("fmt", list(SPARSE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64], ids=lambda d: np.dtype(d).name)
def test_sparse_log1p_skips_check_array_only_where_it_keeps_the_matrix(fmt, dtype, index_dtype):
    """The sparse log1p skips sklearn's check_array where the installed sklearn returns the
    matrix itself (asked once per type and dtypes): the result is still scanpy's, and a
    matrix with an empty dimension (where check_array raises; such calls fall back before
    this) would take the real call."""
    from atlasnorm import _scanpy

    rng = np.random.default_rng(11)
    x = make_matrix(fmt, counts(rng, 30, 20, dtype, kind="fractional"), index_dtype)
    assert _scanpy._check_array_keeps(x)
    run_both_log1p(lambda: x.copy())
    for shape in [(0, 20), (30, 0)]:
        empty = SPARSE[fmt](shape, dtype=dtype)
        assert not _scanpy._check_array_keeps(empty)


def test_sparse_log1p_takes_check_array_when_it_would_change_the_matrix(monkeypatch):
    """A check_array that converts (as another sklearn might) is found by the probe, and
    then called: both sides see its float64 copy."""
    import scanpy.preprocessing._simple as simple

    from atlasnorm import _scanpy

    real = simple.check_array

    def converting(x, **kwargs):
        return real(x.astype(np.float64), **kwargs)

    monkeypatch.setattr(simple, "check_array", converting)
    monkeypatch.setattr(_scanpy, "_CHECK_ARRAY_KEEPS", {})
    rng = np.random.default_rng(12)
    x = sp.csr_matrix(counts(rng, 30, 20, np.float32, kind="fractional"))
    assert not _scanpy._check_array_keeps(x)
    run_both_log1p(lambda: x.copy())
