"""Bit-for-bit equivalence with scanpy over the input-format x option space.

* A pairwise covering design over all factors (every pair of values of any two factors occurs in
  at least one case), deterministic (see pairwise.py).
* The full product of the option factors {median, target 1e4} x {exclude_highly_expressed off/on}
  x {no log1p, ln, log2} x {X, layer} on CSR float32 (non-integer values), CSC int32 and dense int32.
"""

from __future__ import annotations

import itertools
import zlib

import pytest

from gen import LAYER, MatrixSpec, excluded_genes, write_case
from oracle import Options
from pairwise import pairwise, required_pairs

# numpy's float64 log1p on an AVX-512 CPU is Intel's SVML kernel (__svml_log1p8_ha); atlasnorm ports it
# bit for bit (src/kernel/log1p/svml_f64.rs), so float64 output after log1p must be exact like
# everything else. The knobs stay so a CPU where the port could not apply would have to say so here.
MAX_ULP_F64_LOG1P = 0
MAX_ULP_F64_LOG1P_BASE = 0

MAX_FRACTION = 0.1  # with gen.counts() this excludes some genes, never all (checked per case)
KEY = "norm_factor"

FACTORS = {
    "layout": ["csr", "csc", "dense"],
    "dtype": ["float32", "float64", "int32", "int64", "uint16", "uint32", "int8", "uint8"],
    "indptr": ["int32", "int64", None],
    "indices": ["int32", "int64", "unsigned", None],
    "storage": ["chunked", "contiguous"],
    "compression": [None, "gzip", "lzf"],
    "strings": ["nullable", "string-array"],
    "legacy": [False, True],
    "values": ["integer", "fractional"],
    "target": [None, 1e4],
    "exclude": [False, True],
    "log1p": ["none", "ln", "2"],
    "where": ["X", "layer"],
    "key": [None, KEY],
}


def allowed(p: dict) -> bool:
    # the constraints must be closed under implication between two factors (see pairwise.py):
    # dense <=> no indptr <=> no indices; legacy => sparse; contiguous => uncompressed;
    # fractional values => float dtype
    if "indptr" in p and "indices" in p and (p["indptr"] is None) != (p["indices"] is None):
        return False
    if p.get("legacy") and (("indptr" in p and p["indptr"] is None) or ("indices" in p and p["indices"] is None)):
        return False
    if "layout" in p:
        dense = p["layout"] == "dense"
        for f in ("indptr", "indices"):
            if f in p and (p[f] is None) != dense:
                return False
        if dense and p.get("legacy"):
            return False
    if p.get("storage") == "contiguous" and p.get("compression") is not None:
        return False
    if p.get("values") == "fractional" and "dtype" in p and not p["dtype"].startswith("float"):
        return False
    return True


def split(row: dict) -> tuple[MatrixSpec, Options]:
    spec = MatrixSpec(
        layout=row["layout"], dtype=row["dtype"], indptr=row["indptr"], indices=row["indices"],
        storage=row["storage"], compression=row["compression"], strings=row["strings"],
        legacy=row["legacy"], values=row["values"], where=row["where"],
    )
    opts = Options(
        target_sum=row["target"],
        exclude_highly_expressed=row["exclude"],
        max_fraction=MAX_FRACTION if row["exclude"] else None,
        key_added=row["key"],
        layer=LAYER if row["where"] == "layer" else None,
        log1p=row["log1p"] != "none",
        base=None if row["log1p"] in ("none", "ln") else float(row["log1p"]),
    )
    return spec, opts


PAIRWISE = [split(r) for r in pairwise(FACTORS, allowed)]

PRODUCT_BASES = [
    MatrixSpec(layout="csr", dtype="float32", values="fractional"),
    MatrixSpec(layout="csc", dtype="int32"),
    MatrixSpec(layout="dense", dtype="int32", indptr=None, indices=None),
]
PRODUCT = []
for base in PRODUCT_BASES:
    for i, (target, exclude, log1p, where) in enumerate(
        itertools.product([None, 1e4], [False, True], ["none", "ln", "2"], ["X", "layer"])
    ):
        row = dict(
            layout=base.layout, dtype=base.dtype, indptr=base.indptr, indices=base.indices,
            storage=base.storage, compression=base.compression, strings=base.strings, legacy=False,
            values=base.values, target=target, exclude=exclude, log1p=log1p, where=where,
            key=KEY if i % 2 == 0 else None,
        )
        PRODUCT.append(split(row))


def ulp_tolerance(spec: MatrixSpec, opts: Options) -> dict:
    if opts.log1p and spec.dtype == "float64":
        return {spec.element: MAX_ULP_F64_LOG1P if opts.base is None else MAX_ULP_F64_LOG1P_BASE}
    return {}


_inputs: dict = {}


def input_for(spec: MatrixSpec, tmp_path_factory):
    """One file per distinct input spec and worker (the option product reuses inputs)."""
    if spec not in _inputs:
        path = tmp_path_factory.mktemp("inputs") / f"{spec.short()}.h5ad"
        seed = zlib.crc32(spec.short().encode()) % 100_000  # stable across processes
        dense = write_case(path, spec, seed=seed)
        _inputs[spec] = (path, dense)
    return _inputs[spec]


def run_case(runner, tmp_path_factory, spec: MatrixSpec, opts: Options):
    path, dense = input_for(spec, tmp_path_factory)
    if opts.exclude_highly_expressed:
        n = excluded_genes(dense, opts.max_fraction)
        assert 0 < n < dense.shape[1], f"test data: {n} of {dense.shape[1]} genes excluded; want some"
    runner.check(path, opts, ulp_tol=ulp_tolerance(spec, opts))


@pytest.mark.parametrize(
    "spec,opts", PAIRWISE, ids=[f"pw{i:02d}-{s.short()}-{o.short()}" for i, (s, o) in enumerate(PAIRWISE)]
)
def test_pairwise(runner, tmp_path_factory, spec, opts):
    run_case(runner, tmp_path_factory, spec, opts)


@pytest.mark.parametrize(
    "spec,opts", PRODUCT, ids=[f"px{i:02d}-{s.short()}-{o.short()}" for i, (s, o) in enumerate(PRODUCT)]
)
def test_option_product(runner, tmp_path_factory, spec, opts):
    run_case(runner, tmp_path_factory, spec, opts)


def test_pairwise_design_covers_every_pair():
    """The design really is a pairwise covering of the constrained space."""
    rows = pairwise(FACTORS, allowed)
    need = required_pairs(FACTORS, allowed)
    names = list(FACTORS)
    got = {
        ((a, r[a]), (b, r[b])) for r in rows for a, b in itertools.combinations(names, 2)
    }
    assert need <= got, f"uncovered pairs: {sorted(need - got, key=repr)[:10]}"
    assert all(allowed(r) for r in rows)
    assert rows == pairwise(FACTORS, allowed), "design is not deterministic"


def test_threads_and_memory_budget_give_identical_matrices(cli, runner, tmp_path):
    """--threads 1, --threads 2 and a tiny --memory (many blocks) must give the same matrix bytes,
    and that matrix must be scanpy's."""
    import numpy as np
    import scipy.sparse as sp

    from conftest import run_cli
    from gen import counts, fractional, write_simple

    rng = np.random.default_rng(11)
    M = sp.csr_matrix(fractional(rng, counts(rng, 20000, 1000, zero_rows=(0, 777))).astype(np.float32))
    inp = tmp_path / "big.h5ad"
    write_simple(inp, M, minimal=True)
    opts = Options(key_added=KEY)
    out = runner.check(inp, opts, extra=["--threads", "2"], name="threads2")
    ref = _matrix_bytes(out)
    for name, extra in (("threads1", ["--threads", "1"]), ("memory1MiB", ["--memory", "1MiB", "--threads", "2"])):
        o = tmp_path / f"{name}.h5ad"
        proc = run_cli(cli, ["normalize", inp, o, *opts.cli_args(), *extra])
        assert proc.returncode == 0, proc.stderr
        assert _matrix_bytes(o) == ref, f"{name}: matrix differs from the --threads 2 run"


def _matrix_bytes(path) -> dict:
    """X and obs of an output, as raw bytes + dtypes (read with anndata, as the contract says)."""
    import warnings

    import anndata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = anndata.read_h5ad(path)
    X = a.X
    return {
        "format": X.format,
        "data": (X.data.dtype.str, X.data.tobytes()),
        "indices": (X.indices.dtype.str, X.indices.tobytes()),
        "indptr": (X.indptr.dtype.str, X.indptr.tobytes()),
        "factor": a.obs[KEY].to_numpy().tobytes(),
    }
