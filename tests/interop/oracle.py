"""The reference: what `atlasnorm normalize` must equal, computed with scanpy itself.

`Options` is one set of CLI options; `Options.cli_args()` spells it for the CLI, and
`scanpy_pipeline(adata, opts)` is, word for word, the Python of DESIGN.md §1:

    sc.pp.normalize_total(adata, target_sum=T, exclude_highly_expressed=..., max_fraction=F,
                          key_added=NAME, layer=LAYER)
    if log1p: sc.pp.log1p(adata, base=B, layer=LAYER)

`expected_outcome(input, opts, workdir)` runs read -> pipeline -> write_h5ad and returns the path of
the file scanpy wrote, or the exception scanpy raised (then the CLI must refuse).

Contract decisions this module encodes (see README.md):
* `--target-sum T` and `--log1p-base B` are parsed as Python floats (so `uns/log1p/base` is stored as
  a float64 numeric-scalar, never an int64 one).
* `--max-fraction F` without `--exclude-highly-expressed` is still passed to scanpy (which validates
  its range even then); omitted -> scanpy's default 0.05.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Options:
    target_sum: float | None = None
    exclude_highly_expressed: bool = False
    max_fraction: float | None = None
    key_added: str | None = None
    layer: str | None = None
    log1p: bool = True
    base: float | None = None

    def cli_args(self) -> list[str]:
        a: list[str] = []
        if self.target_sum is not None:
            a += ["--target-sum", repr(float(self.target_sum))]
        if self.exclude_highly_expressed:
            a.append("--exclude-highly-expressed")
        if self.max_fraction is not None:
            a += ["--max-fraction", repr(float(self.max_fraction))]
        if self.key_added is not None:
            a += ["--key-added", self.key_added]
        if self.layer is not None:
            a += ["--layer", self.layer]
        if not self.log1p:
            a.append("--no-log1p")
        if self.base is not None:
            a += ["--log1p-base", repr(float(self.base))]
        return a

    def short(self) -> str:
        parts = ["median" if self.target_sum is None else f"T{self.target_sum:g}"]
        if self.exclude_highly_expressed:
            parts.append(f"ehe{self.max_fraction if self.max_fraction is not None else 0.05:g}")
        elif self.max_fraction is not None:
            parts.append(f"mf{self.max_fraction:g}")
        if self.key_added:
            parts.append(f"key={self.key_added}")
        if self.layer:
            parts.append(f"layer={self.layer}")
        parts.append("nolog" if not self.log1p else ("ln" if self.base is None else f"log{self.base:g}"))
        return "-".join(parts)


def scanpy_pipeline(adata, opts: Options) -> None:
    """Exactly DESIGN.md §1, in place. Raises whatever scanpy raises."""
    import scanpy as sc

    kw = {}
    if opts.max_fraction is not None:
        kw["max_fraction"] = float(opts.max_fraction)
    sc.pp.normalize_total(
        adata,
        target_sum=None if opts.target_sum is None else float(opts.target_sum),
        exclude_highly_expressed=opts.exclude_highly_expressed,
        key_added=opts.key_added,
        layer=opts.layer,
        **kw,
    )
    if opts.log1p:
        sc.pp.log1p(adata, base=None if opts.base is None else float(opts.base), layer=opts.layer)


def expected_outcome(input_path: Path, opts: Options, out_path: Path, *, zarr_format: int | None = None):
    """Run the reference in this process. Returns out_path (written by anndata) or the exception.
    `.zarr` paths are read with read_zarr / written with write_zarr (DESIGN.md §1), the latter in
    zarr format `zarr_format` (None: anndata's default, v3)."""
    import anndata

    def is_zarr(p) -> bool:
        return str(p).rstrip("/").endswith(".zarr")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            adata = anndata.read_zarr(input_path) if is_zarr(input_path) else anndata.read_h5ad(input_path)
            scanpy_pipeline(adata, opts)
        except Exception as exc:  # noqa: BLE001 - any scanpy failure means "the CLI must refuse"
            return exc
        # anndata's write is part of the reference (DESIGN.md §1): where it raises (e.g. a
        # dataframe column named "_index", which it reads but will not write), there is no
        # output to agree with
        try:
            if is_zarr(out_path):
                settings = {} if zarr_format is None else {"zarr_write_format": zarr_format}
                with anndata.settings.override(**settings):
                    adata.write_zarr(out_path)
            else:
                adata.write_h5ad(out_path)
        except Exception as exc:  # noqa: BLE001
            return exc
    return out_path
