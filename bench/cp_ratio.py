#!/usr/bin/env python3
"""`cp` vs one or more atlasnorm binaries on the same inputs, side by side, with system calls.

    bench/cp_ratio.py --bin new=target/release/atlasnorm --bin old=/path/to/old/atlasnorm \
        --repeat 5 INPUT.h5ad [INPUT2.h5ad ...]

For every input: the input is read once (warm page cache); then --repeat interleaved rounds of
`cp INPUT DST` and `BIN normalize INPUT OUT --force --quiet [ARGS]` for each binary, every run
preceded (untimed) by deleting its destination and `sync`; GNU time gives wall, user, sys and
peak RSS. Then one run of each contender under `strace -c -f` counts the system calls
(pread64, pwrite64, copy_file_range, read, write, all). Printed: a Markdown table of medians
and ratios to cp (wall), and the JSON of every run (--json FILE).

Extra arguments for atlasnorm after `--`, e.g. `-- --threads 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-o", tf.name, "-f", "%e %U %S %M"] + cmd
        r = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
        e, u, s, m = Path(tf.name).read_text().split()[-4:]
    return {"wall": float(e), "user": float(u), "sys": float(s), "rss_kib": int(m)}


def syscalls(cmd: list[str]) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as tf:
        r = subprocess.run(["strace", "-c", "-f", "-o", tf.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"failed under strace: {' '.join(cmd)}\n{r.stderr}")
        text = Path(tf.name).read_text()
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            name = parts[-1]
            calls = int(parts[3])
            out[name] = calls
        elif parts and parts[-1] == "total":
            out["total"] = int(parts[3]) if len(parts) >= 5 else int(parts[2])
    return out


def clean(path: Path) -> None:
    if path.is_dir():
        subprocess.run(["rm", "-rf", str(path)], check=True)
    elif path.exists():
        path.unlink()
    subprocess.run(["sync"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--bin", action="append", required=True, help="NAME=PATH of an atlasnorm binary")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", type=Path, default=Path("bench-out/cp_ratio"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-strace", action="store_true")
    args, extra = ap.parse_known_args()
    extra = [a for a in extra if a != "--"]
    bins = [b.split("=", 1) for b in args.bin]
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    print(f"`uptime`: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    for inp in args.inputs:
        subprocess.run(["cat", str(inp)], stdout=subprocess.DEVNULL, check=True)
        contenders = [("cp", None)] + [(n, p) for n, p in bins]
        runs = {n: [] for n, _ in contenders}

        def cmd_of(name: str, path: str | None) -> tuple[list[str], Path]:
            dst = args.workdir / f"{inp.stem}.{name}{inp.suffix}"
            if path is None:
                return ["cp", str(inp), str(dst)], dst
            return [path, "normalize", str(inp), str(dst), "--force", "--quiet"] + extra, dst

        for _ in range(args.repeat):
            for name, path in contenders:
                cmd, dst = cmd_of(name, path)
                clean(dst)
                runs[name].append(timed(cmd))
        calls = {}
        if not args.no_strace:
            for name, path in contenders:
                cmd, dst = cmd_of(name, path)
                clean(dst)
                calls[name] = syscalls(cmd)
        for name, _ in contenders:
            clean(cmd_of(name, _)[1])
        results.append({"input": str(inp), "runs": runs, "syscalls": calls,
                        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()})
        cp_wall = statistics.median(r["wall"] for r in runs["cp"])
        print(f"\n**{inp.name}** ({inp.stat().st_size / 2**20:.1f} MiB), {args.repeat} interleaved rounds, medians\n")
        print("| | wall s (min–max) | ratio to cp | user s | sys s | peak RSS MiB | pread64 | pwrite64 | copy_file_range | read | write | all calls |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, _ in contenders:
            rs = runs[name]
            med = lambda k: statistics.median(r[k] for r in rs)
            c = calls.get(name, {})
            walls = [r["wall"] for r in rs]
            print(f"| {name} | {med('wall'):.2f} ({min(walls):.2f}–{max(walls):.2f}) | "
                  f"{med('wall') / cp_wall:.2f}× | {med('user'):.2f} | {med('sys'):.2f} | "
                  f"{med('rss_kib') / 1024:.0f} | {c.get('pread64', 0)} | {c.get('pwrite64', 0)} | "
                  f"{c.get('copy_file_range', 0)} | {c.get('read', 0)} | {c.get('write', 0)} | {c.get('total', 0)} |")
        print(f"\n`uptime` after: {results[-1]['uptime']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
