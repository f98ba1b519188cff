import sys, h5py, numpy as np, pandas as pd, scipy.sparse as sp, anndata as ad
a_path, b_path = sys.argv[1], sys.argv[2]
skip = set(filter(None, sys.argv[3].split(","))) if len(sys.argv) > 3 else set()
diffs = []

def skipped(name):
    return any(name == s or name.startswith(s + "/") for s in skip)

def nodes(f):
    out = {"/": f}
    f.visititems(lambda n, o: out.__setitem__(n, o))
    return {k: v for k, v in out.items() if not skipped(k)}

def attr_sig(obj, k):
    at = obj.attrs.get_id(k)
    t = at.get_type()
    cls = t.get_class()
    extra = (t.get_cset(), t.is_variable_str()) if cls == h5py.h5t.STRING else t.get_size()
    return (cls, at.shape, extra)

def same_value(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return x.dtype == y.dtype and x.shape == y.shape and (
        x.dtype.kind == "f" and np.array_equal(x, y, equal_nan=True) or np.array_equal(x, y))

fa, fb = h5py.File(a_path, "r"), h5py.File(b_path, "r")
na, nb = nodes(fa), nodes(fb)
if set(na) != set(nb):
    diffs.append(f"members differ: only in input {sorted(set(na) - set(nb))}, only in output {sorted(set(nb) - set(na))}")
for name in sorted(set(na) & set(nb)):
    x, y = na[name], nb[name]
    if type(x) != type(y):
        diffs.append(f"{name}: {type(x)} != {type(y)}"); continue
    if set(x.attrs) != set(y.attrs):
        diffs.append(f"{name}: attrs {sorted(x.attrs)} != {sorted(y.attrs)}")
    for k in set(x.attrs) & set(y.attrs):
        vx, vy = x.attrs[k], y.attrs[k]
        if type(vx) != type(vy) or not same_value(vx, vy) or attr_sig(x, k) != attr_sig(y, k):
            diffs.append(f"{name}: attr {k}: {vx!r} {attr_sig(x, k)} != {vy!r} {attr_sig(y, k)}")
    if isinstance(x, h5py.Dataset):
        sx, sy = x.id.get_space().get_simple_extent_type(), y.id.get_space().get_simple_extent_type()
        tx, ty = x.id.get_type(), y.id.get_type()
        sig = lambda d, t: (d.dtype, d.shape, d.chunks, d.maxshape, d.compression, t.get_class(),
                            (t.get_cset(), t.is_variable_str()) if t.get_class() == h5py.h5t.STRING else t.get_size())
        if sx != sy or sig(x, tx) != sig(y, ty):
            diffs.append(f"{name}: {sx} {sig(x, tx)} != {sy} {sig(y, ty)}")
        elif sx != h5py.h5s.NULL:
            if h5py.check_string_dtype(x.dtype):
                vx, vy = x.asstr()[()], y.asstr()[()]
            else:
                vx, vy = x[()], y[()]
            if not same_value(vx, vy):
                diffs.append(f"{name}: values differ")
fa.close(); fb.close()

# anndata's view: every element equal.
def eq(x, y, path):
    if type(x) != type(y):
        diffs.append(f"ad {path}: {type(x)} != {type(y)}"); return
    if isinstance(x, pd.DataFrame):
        try:
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        except AssertionError as e:
            diffs.append(f"ad {path}: {e}")
    elif sp.issparse(x):
        if x.format != y.format or x.dtype != y.dtype or x.shape != y.shape or (x != y).nnz:
            diffs.append(f"ad {path}: sparse differs")
        for m in ("indices", "indptr", "data"):
            if not same_value(getattr(x, m), getattr(y, m)):
                diffs.append(f"ad {path}: {m} differs")
    elif isinstance(x, np.ndarray):
        if not same_value(x, y):
            diffs.append(f"ad {path}: array differs {x.dtype} {y.dtype}")
    elif isinstance(x, dict) or hasattr(x, "keys"):
        if set(x.keys()) != set(y.keys()):
            diffs.append(f"ad {path}: keys {sorted(x.keys())} != {sorted(y.keys())}")
        for k in set(x.keys()) & set(y.keys()):
            eq(x[k], y[k], f"{path}/{k}")
    elif isinstance(x, (float, np.floating)) and np.isnan(x):
        if not np.isnan(y): diffs.append(f"ad {path}: {x!r} != {y!r}")
    elif x is None:
        pass
    else:
        if x != y or type(x) != type(y):
            diffs.append(f"ad {path}: {x!r} != {y!r}")

A, B = ad.read_h5ad(a_path), ad.read_h5ad(b_path)
if not skipped("X"):
    eq(A.X, B.X, "X")
for attr in ("obs", "var"):
    if not skipped(attr):
        eq(getattr(A, attr), getattr(B, attr), attr)
# anndata 0.13 lists X under layers as the key None.
layer_path = lambda k: "X" if k is None else f"layers/{k}"
for attr in ("layers", "obsm", "varm", "obsp", "varp"):
    x, y = getattr(A, attr), getattr(B, attr)
    path = (lambda k: layer_path(k)) if attr == "layers" else (lambda k: f"{attr}/{k}")
    eq({k: x[k] for k in x.keys() if not skipped(path(k))},
       {k: y[k] for k in y.keys() if not skipped(path(k))}, attr)
eq({k: v for k, v in A.uns.items() if not skipped(f"uns/{k}")},
   {k: v for k, v in B.uns.items() if not skipped(f"uns/{k}")}, "uns")
if (A.raw is None) != (B.raw is None):
    diffs.append("raw present in one only")
elif A.raw is not None:
    eq(A.raw.X, B.raw.X, "raw/X"); eq(A.raw.var, B.raw.var, "raw/var")
    eq(dict(A.raw.varm), dict(B.raw.varm), "raw/varm")
print("\n".join(diffs) if diffs else "SAME")
