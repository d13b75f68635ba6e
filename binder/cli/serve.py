"""`anybind serve` (registered in binder/cli/__init__.py): the HTTP API and search page over an index."""
from __future__ import annotations

import ipaddress
import os
import socket

import click

from binder.cli.common import DEVICE_OPTION
from binder.cli.embed import PRECISION_OPTION
from binder.index.choices import BACKENDS

TOKEN_ENV = "ANYBIND_TOKEN"


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(serve_cmd)


@click.command("serve")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model folder or name, when the index records none (else $ANYBIND_MODEL, else untrained).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens the server to the network (use --token then).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--token", default=None, envvar=TOKEN_ENV, show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on every route but /healthz.")
@click.option("--batch-window-ms", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="How long the first encode of a batch waits for others.")
@click.option("--max-batch", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Most items in one encode.")
@click.option("--no-batching", is_flag=True, help="Encode every item alone (for comparison).")
@click.option("--max-upload-mb", type=click.FloatRange(0.001, 4096), default=32.0, show_default=True,
              help="Largest upload; larger requests get 413.")
@click.option("--decode-workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Threads decoding uploads and query files.")
@click.option("--threads", "encode_threads", type=click.IntRange(1, 1024), default=None,
              help="torch threads of the model's worker (default: every core but one).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True, help="Search backend.")
@click.option("--request-timeout", "request_timeout_s", type=click.FloatRange(0.001, 3600), default=30.0,
              show_default=True, help="Seconds of decoding and encoding one request may take; past that: 503.")
@click.option("--max-classify-prompts", type=click.IntRange(1, 1_000_000), default=4096, show_default=True,
              help="Most labels x templates one /classify may ask for; more: 413.")
@click.option("--quiet", is_flag=True, help="No notes and no access log.")
@PRECISION_OPTION
@DEVICE_OPTION
def serve_cmd(index_dir, model_dir, host, port, token, batch_window_ms, max_batch, no_batching, max_upload_mb,
              decode_workers, encode_threads, backend, request_timeout_s, max_classify_prompts, quiet,
              precision, device) -> None:
    """Serve INDEX_DIR over HTTP: embeddings (OpenAI-compatible), search, classify, items, the page.

    \b
      anybind serve idx/ --model out/demo/model
      curl -s localhost:8000/search -H 'content-type: application/json' -d '{"query": "the digit two"}'
      curl -s localhost:8000/search -F file=@rain.wav -F k=5
      anybind serve idx/ --device cuda:1 --precision fp16
    """
    import uvicorn

    from binder.serve import ServeConfig, create_app
    from binder.serve.loading import serve_device

    try:
        config = ServeConfig(index_dir, model=model_dir, host=host, port=port, token=token or None,
                             batching=not no_batching, batch_window_ms=batch_window_ms, max_batch=max_batch,
                             max_upload_mb=max_upload_mb, decode_workers=decode_workers, threads=encode_threads,
                             backend=backend, precision=precision, device=device, quiet=quiet,
                             request_timeout_s=request_timeout_s, max_classify_prompts=max_classify_prompts)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    serve_device(config)  # a device torch cannot use: one line (DeviceError), before listening or reading
    sock = _listen(host, port)
    app = create_app(config)
    state = app.state.anybind
    url = f"http://{_url_host(host)}:{sock.getsockname()[1]}/"
    click.echo(f"anybind serve: {url} (index {index_dir}, generation {state.generation}, {len(state.index)} items; "
               f"model {state.model_name} on {state.model.input_device} at {state.model.precision}; "
               f"batching {'on' if config.batching else 'off'}"
               f"{'; token required' if token else ''})", err=True)
    if not token and not _is_loopback(host) and not quiet:
        click.echo(f"note: listening on {host} without --token: anyone who can reach this port can search the "
                   f"index and read its files", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet,
                                           lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then passed Ctrl-C on
        pass
    click.echo("anybind serve: stopped", err=True)


def _listen(host: str, port: int) -> socket.socket:
    """A bound listening socket, so that a taken port is one clear error before the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
