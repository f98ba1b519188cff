#!/usr/bin/env python3
"""A stand-in for `atlasnorm normalize`, built on scanpy itself.

It implements the CLI contract of DESIGN.md §1 (same arguments, same checks, same output) so the
interop suite can be proven before the Rust binary exists:

    ATLASNORM_BIN="python tests/interop/reference_cli.py" .tools/py312/bin/python -m pytest tests/interop

Order: parse and check the arguments; check INPUT with h5py (HDF5? AnnData? the matrix element's
encoding, shape, indptr, indices, every chunk readable); then anndata.read_h5ad -> normalize_total ->
log1p -> write_h5ad to a temporary file beside OUTPUT, renamed to OUTPUT on success. Any failure: one
line `atlasnorm: error: FILE: ELEMENT: PROBLEM` on stderr, exit status 1, nothing under OUTPUT's name.

REFERENCE_CLI_MUTATE=ulp adds one ULP to the first stored value of the normalised matrix before
writing (to prove that the suite notices a one-ULP drift).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oracle import Options, scanpy_pipeline  # noqa: E402

MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?\s*$", re.I)


class Refuse(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="atlasnorm")
    sub = p.add_subparsers(dest="command", required=True)
    n = sub.add_parser("normalize", help="normalize_total + log1p, like scanpy")
    n.add_argument("input")
    n.add_argument("output")
    n.add_argument("--target-sum", type=float)
    n.add_argument("--exclude-highly-expressed", action="store_true")
    n.add_argument("--max-fraction", type=float)
    n.add_argument("--key-added")
    n.add_argument("--layer")
    n.add_argument("--no-log1p", action="store_true")
    n.add_argument("--log1p-base", type=float)
    n.add_argument("--threads", type=int)
    n.add_argument("--memory")
    n.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    if a.max_fraction is not None and not (0.0 <= a.max_fraction <= 1.0):
        p.error(f"--max-fraction {a.max_fraction}: must be between 0 and 1")
    if a.threads is not None and a.threads < 1:
        p.error("--threads must be at least 1")
    if a.memory is not None and not MEMORY_RE.match(a.memory):
        p.error(f"--memory {a.memory!r}: not a size (e.g. 512MiB, 2GiB)")
    return a


def _same_file(a: Path, b: Path) -> bool:
    try:
        if b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_matrix(f, path: str, n_obs: int | None, n_vars: int | None, src: str) -> None:
    """Structural checks of the matrix element at `path`; raises Refuse with element and problem."""
    import h5py
    import numpy as np

    node = f[path]
    enc = node.attrs.get("encoding-type")
    if isinstance(node, h5py.Dataset):
        if enc not in (None, "array"):
            raise Refuse(f"{src}: {path}: unsupported encoding {enc!r}")
        try:
            node[()]
        except Exception as exc:  # corrupt chunk
            raise Refuse(f"{src}: {path}: cannot read data (corrupt or truncated chunk?): {exc}")
        if node.ndim != 2 or (n_obs is not None and node.shape[0] != n_obs) or (
            n_vars is not None and node.shape[1] != n_vars
        ):
            raise Refuse(f"{src}: {path}: shape {node.shape} does not match obs x var ({n_obs}, {n_vars})")
        return
    if enc in ("csr_matrix", "csc_matrix"):
        fmt = enc[:3]
        shape = tuple(int(x) for x in node.attrs["shape"])
    elif enc is None and "h5sparse_format" in node.attrs:
        fmt = node.attrs["h5sparse_format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        shape = tuple(int(x) for x in node.attrs["h5sparse_shape"])
    else:
        raise Refuse(f"{src}: {path}: unsupported encoding {enc!r}")
    arrays = {}
    for k in ("data", "indices", "indptr"):
        if k not in node:
            raise Refuse(f"{src}: {path}/{k}: missing")
        try:
            arrays[k] = node[k][()]
        except Exception as exc:
            raise Refuse(f"{src}: {path}/{k}: cannot read data (corrupt or truncated chunk?): {exc}")
    data, indices, indptr = arrays["data"], arrays["indices"], arrays["indptr"]
    major, minor = (shape[0], shape[1]) if fmt == "csr" else (shape[1], shape[0])
    if (n_obs is not None and shape[0] != n_obs) or (n_vars is not None and shape[1] != n_vars):
        raise Refuse(f"{src}: {path}: shape {shape} does not match obs x var ({n_obs}, {n_vars})")
    if len(indptr) != major + 1:
        raise Refuse(f"{src}: {path}/indptr: length {len(indptr)}, shape {shape} needs {major + 1}")
    if len(data) != len(indices):
        raise Refuse(f"{src}: {path}: data has {len(data)} values, indices {len(indices)}")
    if len(indptr) and indptr[0] != 0:
        raise Refuse(f"{src}: {path}/indptr: starts at {indptr[0]}, not 0")
    if np.any(np.diff(indptr.astype(np.int64)) < 0):
        raise Refuse(f"{src}: {path}/indptr: not monotone (non-decreasing)")
    if len(indptr) and int(indptr[-1]) != len(data):
        raise Refuse(f"{src}: {path}/indptr: ends at {indptr[-1]}, but nnz is {len(data)}")
    if len(indices) and (indices.astype(np.int64).min() < 0 or indices.astype(np.int64).max() >= minor):
        raise Refuse(f"{src}: {path}/indices: index out of range [0, {minor})")


def check_input(inp: Path, layer: str | None) -> str:
    import h5py

    src = str(inp)
    if not inp.exists():
        raise Refuse(f"{src}: no such file")
    if not h5py.is_hdf5(inp):
        raise Refuse(f"{src}: not an HDF5 file (.h5ad expected)")
    try:
        f = h5py.File(inp, "r")
    except Exception as exc:
        raise Refuse(f"{src}: cannot open as HDF5 (truncated or corrupt file?): {exc}")
    with f:
        if "X" not in f and "obs" not in f:
            raise Refuse(f"{src}: not an AnnData file: no X and no obs")
        element = "X" if layer is None else f"layers/{layer}"
        if element not in f:
            raise Refuse(f"{src}: {element}: no such element" + (f" (layer {layer!r} missing)" if layer else ""))

        def length(df: str) -> int | None:
            try:
                g = f[df]
                idx = g[g.attrs["_index"]]
                if isinstance(idx, h5py.Group):
                    idx = idx["values"]
                return len(idx)
            except Exception:
                return None

        check_matrix(f, element, length("obs"), length("var"), src)
    return element


def mutate_one_ulp(adata, layer: str | None) -> None:
    import numpy as np

    m = adata.X if layer is None else adata.layers[layer]
    vals = m.data if hasattr(m, "indptr") else m.reshape(-1)
    if vals.size:
        bits = vals[:1].view({4: np.uint32, 8: np.uint64}[vals.dtype.itemsize])
        bits += 1


def normalize(a: argparse.Namespace) -> None:
    inp, out = Path(a.input), Path(a.output)
    if _same_file(inp, out):
        raise Refuse(f"{out}: OUTPUT is the same file as INPUT {inp}; refusing to overwrite the input")
    if out.exists() and not a.force:
        raise Refuse(f"{out}: OUTPUT exists (use --force to replace it)")
    if not out.parent.is_dir():
        raise Refuse(f"{out}: directory {out.parent} does not exist")
    element = check_input(inp, a.layer)
    opts = Options(
        target_sum=a.target_sum,
        exclude_highly_expressed=a.exclude_highly_expressed,
        max_fraction=a.max_fraction,
        key_added=a.key_added,
        layer=a.layer,
        log1p=not a.no_log1p,
        base=a.log1p_base,
    )
    import anndata

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            adata = anndata.read_h5ad(inp)
        except Exception as exc:
            raise Refuse(f"{inp}: cannot read as AnnData: {type(exc).__name__}: {exc}")
        try:
            scanpy_pipeline(adata, opts)
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Refuse(f"{inp}: {element}: scanpy refuses this input ({type(exc).__name__}: {msg})")
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"atlasnorm: warning: {inp}: {element}: {w.message}", file=sys.stderr)
    if os.environ.get("REFERENCE_CLI_MUTATE") == "ulp":
        mutate_one_ulp(adata, a.layer)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata.write_h5ad(tmp)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        normalize(a)
    except Refuse as exc:
        print(f"atlasnorm: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # last resort: still one line, no traceback
        print(f"atlasnorm: error: {a.input}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
