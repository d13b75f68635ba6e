"""``anybind serve`` under concurrent load, with batching on and off in the same run.

Builds a small index of the bundled samples (``recipes/samples``, every modality) in a temp
folder, then for each mode starts the real server (``anybind serve``, uvicorn, on 127.0.0.1 and a
free port) in a subprocess and drives it with N concurrent clients that send requests back to
back for a fixed time (asyncio, one keep-alive connection each, through a minimal HTTP/1.1 client
so that the clients cost the shared cores little). Prints requests/s, p50/p95 latency and errors
per mode, the mean encode batch the server reports (``/metrics``), the server's CPU time per
request, and the batched / unbatched throughput ratio. Loopback only; every loop is bounded in
time and count.

Then the mixed-load row: a few clients send text searches (with a short pause between them, so
latency and not throughput is measured), first alone and then while one client sends heavy
``/classify`` requests back to back (``--heavy-labels`` x ``--heavy-templates`` prompts each, a new
label set every time, so no label cache helps); it prints p50/p99 of the text searches in both
phases and the heavy requests' count and mean time, written under ``"mixed"``.

    python benchmarks/serve.py                              # 32 clients x 10 s per mode, text searches
    python benchmarks/serve.py --clients 8 --seconds 3      # quick look
    python benchmarks/serve.py --workload embeddings        # POST /v1/embeddings of one text each
    python benchmarks/serve.py --workload audio             # /search with an uploaded .wav each
    python benchmarks/serve.py --anchor anybind-small       # a larger random model (4 x 128 text tower)
    python benchmarks/serve.py --mixed-only --mixed-seconds 8   # only the mixed-load row, merged into --out

Writes benchmarks/results/serve.json (``--out`` to choose).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
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
MIXED_PAUSE = 0.02  # seconds between two text searches of one client in the mixed-load row


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


def classify_request(i: int, png: bytes, labels: int, templates: int) -> bytes:
    """The i-th heavy request: ``labels`` new labels x ``templates`` templates against one image."""
    body = {"file": {"file": base64.b64encode(png).decode(), "filename": "q.png"},
            "labels": [f"class {i} {j}" for j in range(labels)],
            "templates": [f"{{}}, view {t}" for t in range(templates)], "top": 1}
    return http_request("POST", "/classify", json.dumps(body).encode(), "application/json")


async def light_latencies(host: str, port: int, clients: int, seconds: float, pause: float) -> tuple[list[float], int]:
    """Text searches from ``clients`` loops for ``seconds`` (``pause`` s between two of a loop):
    (latencies of the good ones, errors)."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(c: int) -> None:
        nonlocal errors
        conn = Connection(host, port)
        for n in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= deadline:
                break
            start = time.perf_counter()
            try:
                status, _ = await conn.request(request_for("search", c * 37 + n, b""))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
            await asyncio.sleep(pause)
        conn.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    return latencies, errors


def percentiles(latencies: list[float]) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": len(latencies), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1), "max_ms": round(float(lat.max()), 1)}


async def drive_mixed(server: Server, args: argparse.Namespace, png: bytes) -> dict[str, Any]:
    """Text-search latency alone, then while heavy /classify requests run back to back."""
    host, port_text = server.url.split("//")[1].rstrip("/").rsplit(":", 1)
    port = int(port_text)
    await _wait_ready(host, port)
    warm = Connection(host, port)
    await warm.request(request_for("search", 0, b""))
    warm.close()
    alone, errors_alone = await light_latencies(host, port, args.mixed_clients, args.mixed_seconds, MIXED_PAUSE)
    stop = asyncio.Event()
    heavy: list[tuple[int, float]] = []

    async def heavy_loop() -> None:
        conn = Connection(host, port)
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if stop.is_set():
                break
            start = time.perf_counter()
            try:
                status, _ = await conn.request(classify_request(i, png, args.heavy_labels, args.heavy_templates), 300)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
            heavy.append((status, time.perf_counter() - start))
        conn.close()

    task = asyncio.create_task(heavy_loop())
    await asyncio.sleep(0.5)  # the first heavy request is under way
    loaded, errors_loaded = await light_latencies(host, port, args.mixed_clients, args.mixed_seconds, MIXED_PAUSE)
    stop.set()
    await task
    done = [s for status, s in heavy if status == 200]
    return {"clients": args.mixed_clients, "seconds": args.mixed_seconds, "pause_ms": MIXED_PAUSE * 1000,
            "heavy": {"labels": args.heavy_labels, "templates": args.heavy_templates,
                      "requests": len(done), "errors": len(heavy) - len(done),
                      "mean_s": round(float(np.mean(done)), 2) if done else None},
            "search_alone": {**percentiles(alone), "errors": errors_alone},
            "search_with_heavy_classify": {**percentiles(loaded), "errors": errors_loaded}}


def run_mixed(index: Path, args: argparse.Namespace, png: bytes) -> dict[str, Any]:
    server = Server(index, [])
    try:
        result = asyncio.run(drive_mixed(server, args, png))
    finally:
        server.stop()
    alone, loaded, heavy = result["search_alone"], result["search_with_heavy_classify"], result["heavy"]
    print(f"mixed load: {args.mixed_clients} clients of text searches ({MIXED_PAUSE * 1000:g} ms apart) x "
          f"{args.mixed_seconds:g} s, one client of /classify with {heavy['labels']} labels x {heavy['templates']} "
          f"templates\n  text search alone:           p50 {alone['p50_ms']} ms, p99 {alone['p99_ms']} ms "
          f"({alone['requests']} requests)\n  text search with /classify:  p50 {loaded['p50_ms']} ms, "
          f"p99 {loaded['p99_ms']} ms, max {loaded['max_ms']} ms ({loaded['requests']} requests)\n"
          f"  heavy /classify: {heavy['requests']} done, {heavy['mean_s']} s each, {heavy['errors']} errors",
          flush=True)
    return result


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
    parser.add_argument("--mixed-clients", type=int, default=4, help="text-search clients of the mixed-load row")
    parser.add_argument("--mixed-seconds", type=float, default=10.0, help="per phase of the mixed-load row")
    parser.add_argument("--heavy-labels", type=int, default=512, help="labels of each heavy /classify")
    parser.add_argument("--heavy-templates", type=int, default=8, help="templates of each heavy /classify")
    parser.add_argument("--mixed-only", action="store_true",
                        help="run only the mixed-load row and merge it into --out (other keys kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()
    args.clients = max(1, min(args.clients, MAX_CLIENTS))
    args.seconds = max(0.5, min(args.seconds, MAX_SECONDS))
    args.mixed_clients = max(1, min(args.mixed_clients, MAX_CLIENTS))
    args.mixed_seconds = max(0.5, min(args.mixed_seconds, MAX_SECONDS))
    wav = (ROOT / "recipes" / "samples" / "seven.wav").read_bytes()
    png = (ROOT / "recipes" / "samples" / "seven.png").read_bytes()
    if args.mixed_only:
        with tempfile.TemporaryDirectory(prefix="anybind-bench-serve-") as work:
            index = build_index(Path(work), build_model(Path(work), args.anchor) if args.anchor else args.model)
            mixed = run_mixed(index, args, png)
        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**old, "mixed": mixed}, indent=2) + "\n")
        return 0 if mixed["search_with_heavy_classify"]["errors"] == 0 and mixed["heavy"]["errors"] == 0 else 1
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
        mixed = run_mixed(index, args, png)
    ratio = runs[0]["rps"] / runs[1]["rps"] if runs[1]["rps"] else float("inf")
    print(f"batched / unbatched throughput: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = args.model or (f"random {args.anchor}" if args.anchor else "untrained default")
    args.out.write_text(json.dumps({"clients": args.clients, "seconds": args.seconds, "workload": args.workload,
                                    "model": model, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                                    "python": platform.python_version(), "runs": runs,
                                    "ratio": round(ratio, 2), "mixed": mixed}, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
