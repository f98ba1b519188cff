#!/usr/bin/env python3
"""Object-storage benchmark: local->local against s3->s3 and s3->local over a link with latency.

    .tools/py312/bin/python bench/s3_bench.py [--bin A --bin B ...] [--input STORE.zarr ...]
                                              [--latency-ms 20,100] [--repeat 3] [--json F]

A moto S3 server (the one the tests use) runs on 127.0.0.1; each input store is uploaded to it
once (untimed). Requests reach it through a proxy on 127.0.0.1 that delays every byte sent
towards the server by the latency (a pipelined one-way delay: bytes keep flowing, each arrives
LATENCY later; answers come back at once), so every request waits one round trip of LATENCY,
as against real object storage. For each latency, round by round (a change of machine load hits
all alike), each binary runs as a fresh process:

    local   atlasnorm normalize IN.zarr OUT.zarr --force --quiet           (no network)
    s3-s3   atlasnorm normalize s3://input/IN.zarr s3://output/OUT.zarr --force --quiet
    s3-loc  atlasnorm normalize s3://input/IN.zarr OUT.zarr --force --quiet

Output: a Markdown table (medians, wall seconds) on stdout and every run in --json. moto is a
Python server: its own cost per request is part of every s3 figure (see the 0 ms rows).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_REGION": "us-east-1"}


def log(msg: str) -> None:
    print(f"[s3_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LatencyProxy:
    """Forwards 127.0.0.1:port to upstream, bytes towards upstream delayed by `delay` s."""

    def __init__(self, upstream: int, delay: float):
        self.upstream, self.delay = upstream, delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            threading.Thread(target=self._pump, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        if delay == 0:
            while (data := src.recv(1 << 16)):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
            return
        q: queue.Queue = queue.Queue()

        def send() -> None:
            while (item := q.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    return
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=send, daemon=True).start()
        try:
            while (data := src.recv(1 << 16)):
                q.put((time.monotonic() + delay, data))
        except OSError:
            pass
        q.put(None)

    def close(self) -> None:
        self.sock.close()


def start_moto(python: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto did not start")


def upload(endpoint: str, store: Path, bucket: str, prefix: str) -> None:
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    for b in ("input", "output"):
        try:
            s3.create_bucket(Bucket=b)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    for f in sorted(store.rglob("*")):
        if f.is_file():
            s3.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(store).as_posix()}")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, env=ENV)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{argv} failed: {p.stderr.decode()[-1500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", action="append", help="atlasnorm binaries (default target/release/atlasnorm)")
    ap.add_argument("--input", action="append", type=Path,
                    help="zarr stores (default bench-out/zarr/pbmc68k.s0.v2.zarr and .v3.zarr)")
    ap.add_argument("--latency-ms", default="0,20,100")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    bins = args.bin or [str(REPO / "target/release/atlasnorm")]
    inputs = args.input or [REPO / "bench-out/zarr/pbmc68k.s0.v2.zarr",
                            REPO / "bench-out/zarr/pbmc68k.s0.v3.zarr"]
    latencies = [float(x) for x in args.latency_ms.split(",")]
    moto, port = start_moto(sys.executable)
    runs: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="s3_bench."))
    try:
        direct = f"http://127.0.0.1:{port}"
        for i, store in enumerate(inputs):
            log(f"uploading {store}")
            upload(direct, store, "input", f"s{i}.zarr")
        for ms in latencies:
            proxy = LatencyProxy(port, ms / 1000)
            ep = ["--s3-endpoint", f"http://127.0.0.1:{proxy.port}", "--s3-allow-http"]
            for r in range(args.repeat):
                for i, store in enumerate(inputs):
                    for b in bins:
                        out = work / "out.zarr"
                        shutil.rmtree(out, ignore_errors=True)
                        cases = {
                            "local": [b, "normalize", str(store), str(out), "--force", "--quiet"],
                            "s3-s3": [b, "normalize", f"s3://input/s{i}.zarr", f"s3://output/o{i}.zarr",
                                      "--force", "--quiet", *ep],
                            "s3-loc": [b, "normalize", f"s3://input/s{i}.zarr", str(out), "--force",
                                       "--quiet", *ep],
                        }
                        for case, argv in cases.items():
                            if case == "local" and ms != latencies[0]:
                                continue
                            shutil.rmtree(out, ignore_errors=True)
                            wall = timed(argv)
                            runs.append({"latency_ms": ms, "round": r, "input": store.name,
                                         "bin": b, "case": case, "wall": wall})
                            log(f"{ms:g} ms r{r} {store.name} {Path(b).name} {case}: {wall:.2f} s")
            proxy.close()
    finally:
        moto.kill()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print(f"Measured {time.strftime('%Y-%m-%dT%H:%M:%S%z')}, {os.cpu_count()} cores, "
          f"{args.repeat} interleaved rounds, medians (wall s).\n")
    print("| input | binary | local→local | latency | s3→s3 | s3→s3 / local | s3→local |")
    print("|---|---|---:|---:|---:|---:|---:|")
    med = lambda **k: statistics.median(  # noqa: E731
        x["wall"] for x in runs if all(x[a] == v for a, v in k.items()))
    for store in inputs:
        for b in bins:
            local = med(input=store.name, bin=b, case="local")
            for ms in latencies:
                ss = med(input=store.name, bin=b, case="s3-s3", latency_ms=ms)
                sl = med(input=store.name, bin=b, case="s3-loc", latency_ms=ms)
                print(f"| {store.name} | {Path(b).name} | {local:.2f} | {ms:g} ms | {ss:.2f} | "
                      f"{ss / local:.1f}× | {sl:.2f} |")


if __name__ == "__main__":
    main()
