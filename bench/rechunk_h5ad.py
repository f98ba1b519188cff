#!/usr/bin/env python3
"""Copies an .h5ad with X/data and X/indices re-stored in small chunks, as h5py stores a
dataset that grows from empty (`maxshape=(None,)`, chunks=(1024,) for 4-byte values: 4 KiB).

    python bench/rechunk_h5ad.py IN.h5ad OUT.h5ad [--chunk 1024]
"""
import argparse
import shutil

import h5py

ap = argparse.ArgumentParser()
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("--chunk", type=int, default=1024)
a = ap.parse_args()
shutil.copyfile(a.src, a.dst)
with h5py.File(a.dst, "r+") as f:
    for name in ("X/data", "X/indices"):
        old = f[name]
        values = old[...]
        attrs = dict(old.attrs)
        del f[name]
        new = f.create_dataset(name, shape=values.shape, dtype=values.dtype,
                               chunks=(a.chunk,), maxshape=(None,))
        new[...] = values
        for k, v in attrs.items():
            new.attrs[k] = v
# h5repack-free compaction: copy every object into a fresh file
tmp = a.dst + ".tmp"
with h5py.File(a.dst, "r") as src, h5py.File(tmp, "w") as dst:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for k in src:
        src.copy(src[k], dst, name=k)
shutil.move(tmp, a.dst)
