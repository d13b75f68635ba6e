"""``anybind serve`` under concurrent load, with batching on and off in the same run.

Builds a small index of the bundled samples (``recipes/samples``, every modality) in a temp
folder, then for each mode starts the real server (``anybind serve``, uvicorn, on 127.0.0.1 and a
free port) in a subprocess and drives it with N concurrent clients that send requests back to
back for a fixed time (asyncio, one keep-alive connection each, through a minimal HTTP/1.1 client
so that the clients cost the shared cores little). Prints requests/s, p50/p95 latency and errors
per mode, the mean encode batch the server reports (``/metrics``), the server's CPU time per
request, and the batched / unbatched throughput ratio. Loopback only; every loop is bounded in
time and count.

    python benchmarks/serve.py                              # 32 clients x 10 s per mode, text searches
    python benchmarks/serve.py --clients 8 --seconds 3      # quick look
    python benchmarks/serve.py --workload embeddings        # POST /v1/embeddings of one text each
    python benchmarks/serve.py --workload audio             # /search with an uploaded .wav each
    python benchmarks/serve.py --anchor anybind-small       # a larger random model (4 x 128 text tower)

Writes benchmarks/results/serve.json (``--out`` to choose).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 20.0
MAX_CLIENTS = 64
MAX_REQUESTS_PER_CLIENT = 20_000
COLUMNS = [("mode", 10), ("requests", 8), ("rps", 8), ("p50_ms", 8), ("p95_ms", 8), ("errors", 6),
           ("mean_batch", 10), ("server_cpu_ms_per_request", 14), ("client_cpu_share", 12)]
HEADERS = [("requests", 8), ("req/s", 8), ("p50 ms", 8), ("p95 ms", 8), ("errors", 6), ("mean batch", 10),
           ("server ms/req", 14), ("client cpu", 12)]
BOUNDARY = "anybind-bench-boundary"
WORDS = "zero one two three four five six seven eight nine".split()


def build_model(work: Path, anchor: str) -> str:
    """A randomly initialised model on open_clip architecture ``anchor``, saved in ``work/model``."""
    code = ("import sys; from binder.config import AnchorConfig, BindConfig, ModalityConfig; "
            "from binder.model import BindingModel; from binder.registry import list_modalities; "
            "BindingModel(BindConfig(anchor=AnchorConfig(model=sys.argv[1]), modalities=tuple("
            "ModalityConfig(n) for n in list_modalities()))).save(sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, anchor, str(work / "model")], check=True, cwd=ROOT)
    return str(work / "model")


def build_index(work: Path, model: str | None) -> Path:
    """An index of the bundled samples, built by the CLI (the benchmark process never loads torch)."""
    files = work / "files"
    shutil.copytree(ROOT / "recipes" / "samples", files)
    cmd = [sys.executable, str(ROOT / "cli.py"), "index", "build", str(work / "idx"), str(files), "--quiet"]
    subprocess.run(cmd + (["--model", model] if model else []), check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    return work / "idx"


class Server:
    """``anybind serve`` in a subprocess on 127.0.0.1, port chosen by the OS; stopped with Ctrl-C."""

    def __init__(self, index: Path, extra: list[str]):
        cmd = [sys.executable, str(ROOT / "cli.py"), "serve", str(index), "--host", "127.0.0.1", "--port", "0",
               "--quiet", *extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = self._read_url()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_url(self, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if match := re.search(r"anybind serve: (http://127\.0\.0\.1:\d+/)", line):
                return match.group(1)
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"the server did not start (exit {self.proc.poll()})")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                print(f"  server: {line.rstrip()}", file=sys.stderr)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Connection:
    """One keep-alive HTTP/1.1 connection that speaks just enough of the protocol for this server
    (requests prebuilt as bytes, responses read by Content-Length): far cheaper per request than a
    full client library, so the clients, sharing the machine's cores, are not what is measured."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes, timeout: float = 60) -> tuple[int, bytes]:
        """(status, body) of one request; any failure closes the connection (the next reopens it)."""
        try:
            return await asyncio.wait_for(self._exchange(raw), timeout)
        except BaseException:
            self.close()
            raise

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        length = None
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError("a response without Content-Length")
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request(method: str, path: str, body: bytes = b"", content_type: str | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + "\r\n").encode() + body


def request_for(workload: str, i: int, wav: bytes) -> bytes:
    """The i-th request of a workload, as the bytes sent."""
    text = f"the digit {WORDS[i % 10]} {WORDS[(i // 10) % 10]}"
    if workload == "embeddings":
        body = json.dumps({"input": text, "model": "anybind"}).encode()
        return http_request("POST", "/v1/embeddings", body, "application/json")
    if workload == "audio":
        part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="q{i}.wav"\r\n'
                f"Content-Type: audio/wav\r\n\r\n").encode()
        tail = f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="k"\r\n\r\n10\r\n--{BOUNDARY}--\r\n'
        return http_request("POST", "/search", part + wav + tail.encode(), f"multipart/form-data; boundary={BOUNDARY}")
    return http_request("POST", "/search", json.dumps({"query": text, "k": 10}).encode(), "application/json")


async def drive(server: Server, workload: str, clients: int, seconds: float, wav: bytes) -> dict[str, Any]:
    """``clients`` concurrent loops of requests for ``seconds``: latencies of the good ones, errors."""
    host, port = server.url.split("//")[1].rstrip("/").rsplit(":", 1)
    prebuilt = [request_for(workload, i, wav) for i in range(100)]
    await _wait_ready(host, int(port))
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def client(c: int) -> None:
        conn = Connection(host, int(port))
        await conn.request(prebuilt[c % 100])  # warm-up and connection set-up, not counted
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                break
            start = time.perf_counter()
            try:
                status, _ = await conn.request(prebuilt[(c * 37 + n) % 100])
                what = None if status == 200 else f"HTTP {status}"
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                what = type(exc).__name__
            if what is None:
                latencies.append(time.perf_counter() - start)
            else:
                errors[what] = errors.get(what, 0) + 1
        conn.close()

    start, cpu, mine = time.perf_counter(), server.cpu_seconds(), time.process_time()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed, cpu, mine = time.perf_counter() - start, server.cpu_seconds() - cpu, time.process_time() - mine
    metrics_conn = Connection(host, int(port))
    metrics = (await metrics_conn.request(http_request("GET", "/metrics")))[1].decode()
    metrics_conn.close()
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": len(latencies), "seconds": round(elapsed, 2), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "errors": sum(errors.values()), "error_kinds": errors, "mean_batch": mean_batch(metrics),
            "server_cpu_ms_per_request": round(1000 * cpu / max(1, len(latencies)), 2),
            "client_cpu_share": round(mine / elapsed, 2)}


async def _wait_ready(host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = Connection(host, port)
        try:
            if (await conn.request(http_request("GET", "/healthz"), 5))[0] == 200:
                return
        except (TimeoutError, OSError):
            await asyncio.sleep(0.1)
        finally:
            conn.close()
    raise RuntimeError("the server never answered /healthz")


def mean_batch(metrics: str) -> float:
    """Mean items per encode call, from the server's Prometheus text."""
    sums = [float(m) for m in re.findall(r"^anybind_encode_batch_size_sum\{[^}]*\} (\S+)$", metrics, re.M)]
    counts = [float(m) for m in re.findall(r"^anybind_encode_batch_size_count\{[^}]*\} (\S+)$", metrics, re.M)]
    return round(sum(sums) / sum(counts), 2) if sum(counts) else 0.0


def run_mode(index: Path, name: str, extra: list[str], args: argparse.Namespace, wav: bytes) -> dict[str, Any]:
    server = Server(index, extra)
    try:
        result = asyncio.run(drive(server, args.workload, args.clients, args.seconds, wav))
    finally:
        server.stop()
    cells = [f"{result[key]:>{width}}" for key, width in COLUMNS[1:]]
    print(f"{name:<10} " + " ".join(cells), flush=True)
    return {"mode": name, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help=f"per mode (at most {MAX_SECONDS:g})")
    parser.add_argument("--workload", choices=("search", "embeddings", "audio"), default="search")
    parser.add_argument("--model", default=None, help="model folder or name (default: the untrained tiny model)")
    parser.add_argument("--anchor", default=None,
                        help="serve a random model on this open_clip architecture instead (e.g. anybind-small)")
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()
    args.clients = max(1, min(args.clients, MAX_CLIENTS))
    args.seconds = max(0.5, min(args.seconds, MAX_SECONDS))
    wav = (ROOT / "recipes" / "samples" / "seven.wav").read_bytes()
    with tempfile.TemporaryDirectory(prefix="anybind-bench-serve-") as work:
        model = build_model(Path(work), args.anchor) if args.anchor else args.model
        index = build_index(Path(work), model)
        print(f"{args.clients} clients x {args.seconds:g} s per mode, workload {args.workload}, model "
              f"{args.model or args.anchor or 'anybind-tiny (untrained default)'}, "
              f"{os.cpu_count()} CPUs\n{'mode':<10} "
              + " ".join(f"{title:>{width}}" for title, width in HEADERS), flush=True)
        window = ["--batch-window-ms", str(args.batch_window_ms), "--max-batch", str(args.max_batch)]
        runs = [run_mode(index, "batched", window, args, wav),
                run_mode(index, "unbatched", ["--no-batching"], args, wav)]
    ratio = runs[0]["rps"] / runs[1]["rps"] if runs[1]["rps"] else float("inf")
    print(f"batched / unbatched throughput: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = args.model or (f"random {args.anchor}" if args.anchor else "untrained default")
    args.out.write_text(json.dumps({"clients": args.clients, "seconds": args.seconds, "workload": args.workload,
                                    "model": model, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                    "python": platform.python_version(), "runs": runs,
                                    "ratio": round(ratio, 2)}, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
