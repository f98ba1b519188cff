"""Bad `.zarr` input: non-zero exit, no traceback/panic text, one line on stderr naming the store,
the element and the problem, nothing under OUTPUT's name, no temporary leftovers beside it, INPUT
unchanged. Also: OUTPUT exists without --force, and an interrupted (SIGINT) run leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import CLI_TIMEOUT, CRASH_TEXT, assert_refused, describe, run_cli, sha256
from gen import counts
from gen_zarr import write_zarr_simple
from oracle import Options

N_OBS, N_VARS = 40, 30


def good(p: Path, store: str = "v3-plain", chunking: str = "small", codec: str | None = "zstd:3"):
    M = sp.csr_matrix(counts(np.random.default_rng(0), N_OBS, N_VARS).astype(np.float32))
    write_zarr_simple(p, M, store=store, rewrite=dict(codec=codec, chunking=chunking))
    return M


def drop_consolidated(p: Path) -> None:
    """Make readers use each node's own metadata (anndata then does too)."""
    if (p / ".zmetadata").exists():
        (p / ".zmetadata").unlink()
    root = p / "zarr.json"
    if root.exists():
        m = json.loads(root.read_text())
        m.pop("consolidated_metadata", None)
        root.write_text(json.dumps(m))


def edit_json(p: Path, fn) -> None:
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m))


def edit_consolidated(store: Path, rel: str, fn) -> None:
    """Apply fn to the consolidated copy of node `rel` (v3: root zarr.json; v2: .zmetadata key)."""
    if (store / "zarr.json").exists():
        root = json.loads((store / "zarr.json").read_text())
        fn(root["consolidated_metadata"]["metadata"][rel])
        (store / "zarr.json").write_text(json.dumps(root))
    else:
        z = json.loads((store / ".zmetadata").read_text())
        fn(z["metadata"][f"{rel}/.zarray"])
        (store / ".zmetadata").write_text(json.dumps(z))


# ------------------------------------------------------------------------------ builders


def b_root_zarr_json_not_json(p):
    good(p)
    (p / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {')


def b_array_zarr_json_not_json(p):
    good(p)
    drop_consolidated(p)
    (p / "X" / "data" / "zarr.json").write_text("{ this is not json")


def b_array_zarr_json_no_shape(p):
    good(p)
    drop_consolidated(p)
    edit_json(p / "X" / "data" / "zarr.json", lambda m: m.pop("shape"))


def b_zarray_not_json(p):
    good(p, store="v2")
    drop_consolidated(p)
    (p / "X" / "indices" / ".zarray").write_text('{"shape": [12, "chunks": ')


def b_zarray_bad_dtype(p):
    good(p, store="v2")
    drop_consolidated(p)
    edit_json(p / "X" / "indices" / ".zarray", lambda m: m.__setitem__("dtype", "<q9"))


def b_missing_data_chunk_v3(p):
    good(p)
    (p / "X" / "data" / "c" / "1").unlink()


def b_missing_data_chunk_v2(p):
    good(p, store="v2")
    (p / "X" / "data" / "1").unlink()


def b_missing_indptr_chunk(p):
    good(p)
    (p / "X" / "indptr" / "c" / "1").unlink()


def b_missing_shard(p):
    good(p, store="v3-sharded")
    (p / "X" / "data" / "c" / "0").unlink()


def b_truncated_shard(p):
    good(p, store="v3-sharded")
    f = p / "X" / "data" / "c" / "0"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def b_bad_shard_index(p):
    """Index entries pointing past the end of the shard, with a valid crc32c (so only a bounds
    check can notice)."""
    import google_crc32c

    good(p, store="v3-sharded")
    f = p / "X" / "data" / "c" / "0"
    raw = bytearray(f.read_bytes())
    n = 3  # SHARD_FACTOR chunks a shard
    isize = 16 * n + 4
    ent = np.frombuffer(bytes(raw[-isize:-4]), dtype="<u8").copy().reshape(-1, 2)
    ent[1, 0] = len(raw) * 4
    body = ent.astype("<u8").tobytes()
    raw[-isize:] = body + google_crc32c.value(body).to_bytes(4, "little")
    f.write_bytes(bytes(raw))


def b_garbled_shard_index(p):
    good(p, store="v3-sharded")
    f = p / "X" / "data" / "c" / "0"
    raw = bytearray(f.read_bytes())
    raw[-30:-10] = b"\xa5" * 20  # index damaged, crc32c no longer matches
    f.write_bytes(bytes(raw))


def b_corrupt_chunk(p):
    good(p, codec="zstd:3")
    f = p / "X" / "data" / "c" / "1"
    raw = bytearray(f.read_bytes())
    raw[4: 4 + 16] = b"\xff" * 16
    f.write_bytes(bytes(raw))


def b_unsupported_codec_v3(p):
    good(p)
    fake = {"name": "atlasnorm_madeup_codec", "configuration": {"level": 1}}

    def fn(m):
        m["codecs"] = [m["codecs"][0], fake]
    edit_json(p / "X" / "data" / "zarr.json", fn)
    edit_consolidated(p, "X/data", fn)


def b_unsupported_codec_v2(p):
    good(p, store="v2")

    def fn(m):
        m["compressor"] = {"id": "atlasnorm_madeup_codec", "level": 1}
    edit_json(p / "X" / "data" / ".zarray", fn)
    edit_consolidated(p, "X/data", fn)


def b_not_anndata(p):
    import zarr

    g = zarr.open_group(str(p), mode="w", zarr_format=3)
    g.create_array("counts", data=np.arange(12, dtype=np.int32).reshape(3, 4))


def b_not_a_store(p):
    p.mkdir()
    (p / "readme.txt").write_text("an ordinary directory\n")


def b_missing_layer(p):
    good(p)


def b_indptr_not_monotone_zarr(p):
    import zarr

    good(p)
    root = zarr.open_group(str(p), mode="r+", use_consolidated=False)
    ip = root["X/indptr"][...]
    ip[5], ip[6] = ip[6], ip[5] - 1
    root["X/indptr"][...] = ip


def b_index_out_of_range_zarr(p):
    import zarr

    good(p, store="v2")
    root = zarr.open_group(str(p), mode="r+", use_consolidated=False)
    ind = root["X/indices"][...]
    ind[len(ind) // 2] = N_VARS
    root["X/indices"][...] = ind


BAD = [
    # id, builder, extra args, element named (None: the store itself), keywords (one must appear)
    ("root-zarr-json-not-json", b_root_zarr_json_not_json, [], None, ["zarr.json", "json", "metadata"]),
    ("array-zarr-json-not-json", b_array_zarr_json_not_json, [], "X/data", ["json", "metadata", "malformed"]),
    ("array-zarr-json-no-shape", b_array_zarr_json_no_shape, [], "X/data", ["shape", "metadata", "malformed"]),
    ("zarray-not-json", b_zarray_not_json, [], "X/indices", ["json", "metadata", "malformed", ".zarray"]),
    ("zarray-bad-dtype", b_zarray_bad_dtype, [], "X/indices", ["dtype", "data type", "<q9"]),
    ("missing-data-chunk-v3", b_missing_data_chunk_v3, [], "X/data", ["missing", "chunk"]),
    ("missing-data-chunk-v2", b_missing_data_chunk_v2, [], "X/data", ["missing", "chunk"]),
    ("missing-indptr-chunk", b_missing_indptr_chunk, [], "X/indptr", ["missing", "chunk"]),
    ("missing-shard", b_missing_shard, [], "X/data", ["missing", "shard", "chunk"]),
    ("truncated-shard", b_truncated_shard, [], "X/data", ["shard", "truncat", "corrupt", "index"]),
    ("shard-index-out-of-bounds", b_bad_shard_index, [], "X/data", ["shard", "index", "corrupt", "bound", "outside"]),
    ("shard-index-checksum", b_garbled_shard_index, [], "X/data", ["shard", "checksum", "crc", "corrupt", "index"]),
    ("corrupt-zstd-chunk", b_corrupt_chunk, [], "X/data", ["corrupt", "decode", "decompress", "zstd", "chunk"]),
    ("unsupported-codec-v3", b_unsupported_codec_v3, [], "X/data", ["atlasnorm_madeup_codec"]),
    ("unsupported-codec-v2", b_unsupported_codec_v2, [], "X/data", ["atlasnorm_madeup_codec"]),
    ("not-anndata", b_not_anndata, [], None, ["anndata", r"re:\bX\b"]),
    ("not-a-zarr-store", b_not_a_store, [], None, ["zarr"]),
    ("missing-layer", b_missing_layer, ["--layer", "nope_layer"], "nope_layer", ["layer", "missing", "no such"]),
    ("indptr-not-monotone", b_indptr_not_monotone_zarr, [], "X/indptr", ["monoton", "decreas"]),
    ("index-out-of-range", b_index_out_of_range_zarr, [], "X/indices", ["range", "index"]),
]


def assert_one_line(proc, inp: Path, element: str | None):
    """The store and the element are named together, on one line of stderr."""
    lines = [ln for ln in proc.stderr.splitlines() if inp.name in ln and (element is None or element in ln)]
    assert lines, f"no stderr line names both {inp.name!r} and {element!r}\n" + describe(proc)


@pytest.mark.parametrize("out_suffix", [".zarr", ".h5ad"])
@pytest.mark.parametrize("bid,build,extra,element,keywords", BAD, ids=[b[0] for b in BAD])
def test_bad_zarr_input(cli, tmp_path, bid, build, extra, element, keywords, out_suffix):
    """Every bad store, into either output format: the refusal cannot depend on the output."""
    inp = tmp_path / "input.zarr"
    build(inp)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / f"result{out_suffix}"
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out, *extra])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[inp.name], keywords=keywords)
    assert_one_line(proc, inp, element)
    assert sorted(os.listdir(outdir)) == [], f"leftovers beside OUTPUT: {sorted(os.listdir(outdir))}"


def test_missing_zarr_input(cli, tmp_path):
    inp = tmp_path / "does-not-exist.zarr"
    out = tmp_path / "result.zarr"
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=None, out=out, inp_hash=None, names=[inp.name],
                   keywords=["no such", "not found", "exist", "missing"])


@pytest.mark.parametrize("value", ["lz77", "zstd:abc", "gzip:99"])
def test_bad_zarr_codec_option(cli, tmp_path, value):
    inp = tmp_path / "input.zarr"
    good(inp)
    out = tmp_path / "result.zarr"
    before = sha256(inp)
    proc = run_cli(cli, ["normalize", inp, out, "--zarr-codec", value])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, names=[], keywords=["zarr-codec", "codec"])


@pytest.mark.parametrize("src", ["zarr", "h5ad"])
def test_existing_zarr_output_needs_force(cli, tmp_path, src):
    from compare import diff_files
    from gen import write_simple
    from oracle import expected_outcome

    M = sp.csr_matrix(counts(np.random.default_rng(0), N_OBS, N_VARS).astype(np.float32))
    if src == "zarr":
        inp = tmp_path / "input.zarr"
        write_zarr_simple(inp, M)
    else:
        inp = tmp_path / "input.h5ad"
        write_simple(inp, M)
    out = tmp_path / "existing.zarr"
    out.mkdir()
    (out / "precious.txt").write_text("keep me\n")
    before, out_before = sha256(inp), sha256(out)
    proc = run_cli(cli, ["normalize", inp, out])
    assert_refused(proc, inp=inp, out=out, inp_hash=before, out_hash=out_before, names=[out.name],
                   keywords=["exist", "force"])
    proc = run_cli(cli, ["normalize", inp, out, "--force"])
    assert proc.returncode == 0, describe(proc)
    assert not (out / "precious.txt").exists(), "--force must replace the old directory, not merge into it"
    exp = expected_outcome(inp, Options(), tmp_path / "expected.zarr")
    assert not diff_files(exp, out)
    assert sha256(inp) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["existing.zarr", "expected.zarr", inp.name])


def _big_input(p: Path, n_obs: int = 60000, n_vars: int = 2000, per_row: int = 60) -> None:
    """~3.6M stored values, written straight with zarr-python (quick), v3 plain, small chunks."""
    import zarr

    from gen_zarr import write_zarr_simple as _w  # noqa: F401  (same module, for the docs)

    rng = np.random.default_rng(1)
    ind = np.sort(rng.integers(0, n_vars, size=(n_obs, per_row), dtype=np.int32), axis=1).ravel()
    data = rng.integers(1, 20, size=n_obs * per_row).astype(np.float32)
    indptr = np.arange(0, n_obs * per_row + 1, per_row, dtype=np.int32)
    tiny = sp.csr_matrix((np.ones(1, np.float32), np.zeros(1, np.int32), np.array([0, 1] + [1] * (n_obs - 1))),
                         shape=(n_obs, n_vars))
    write_zarr_simple(p, tiny, store="v3-plain", minimal=True)
    root = zarr.open_group(str(p), mode="r+", use_consolidated=False)
    del root["X"]
    g = root.create_group("X", attributes={"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
                                           "shape": [n_obs, n_vars]})
    from gen_zarr import zarr_compressors

    for name, arr in (("data", data), ("indices", ind), ("indptr", indptr)):
        g.create_array(name, data=arr, chunks=(65536,), compressors=zarr_compressors("zstd:1", 3))
    zarr.consolidate_metadata(str(p))


def test_interrupted_run_leaves_nothing(cli, tmp_path):
    """SIGINT once the run has started writing (something new appeared beside OUTPUT): non-zero
    exit, no OUTPUT, no temporary leftovers. The run is slowed down (one thread, a 1 MiB budget,
    gzip level 9 output) so that it is still running when interrupted."""
    inp = tmp_path / "big.zarr"
    _big_input(inp)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "result.zarr"
    args = [*cli, "normalize", str(inp), str(out), "--threads", "1", "--memory", "1MiB",
            "--zarr-codec", "gzip:9", "--zarr-chunk", "4096", "--zarr-shard", "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    interrupted = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if os.listdir(outdir):
            proc.send_signal(signal.SIGINT)
            interrupted = True
            break
        time.sleep(0.002)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail("the CLI did not stop within 60 s of SIGINT")
    if not interrupted:
        pytest.fail(f"the run ended (exit {proc.returncode}) before it wrote anything beside OUTPUT; "
                    f"the input is too small to interrupt it\n{stderr[-2000:]}")
    assert proc.returncode != 0, "interrupted run exited 0"
    assert not CRASH_TEXT.search(stderr + stdout), stderr
    assert not out.exists(), "OUTPUT exists after an interrupted run"
    assert sorted(os.listdir(outdir)) == [], f"leftovers after SIGINT: {sorted(os.listdir(outdir))}"
