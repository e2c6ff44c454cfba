"""`python -m course_utils serve EXPORT`: the web app on uvicorn (the app itself is in app.py, imported only
when the command runs, so the other commands work without the web packages)."""
from __future__ import annotations

import argparse
import errno
import math
import socket
import sys

__all__ = ["add_serve_command"]


SERVE_EXAMPLE = """example:
  python -m course_utils serve runs/planet/export.pkl --port 8000
  after a fine-tune, the new export with the same feedback folder (the rows stored so far are kept):
  python -m course_utils serve runs/planet/export-2.pkl --feedback runs/planet/feedback
  then open http://127.0.0.1:8000 in a browser (from a phone: --host 0.0.0.0, at your own risk)
"""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: ports go from 0 to 65535")
    return port


def _positive(kind):
    """An argparse type: a finite number of `kind` (int or float) above 0."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"{text} must be a number above 0")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _zero_or_more(text: str) -> float:
    """An argparse type: a finite number of 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} must be a number of 0 or more")
    return value


def add_serve_command(commands) -> None:
    """Register `serve` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "serve", help="a web page that predicts with an exported model and collects corrections",
        description="Serve an exported model as a small web app: a page to upload an image (or paste a text) "
                    "and see the prediction, and a 'Wrong?' button whose corrections are stored for `finetune`.",
        epilog=SERVE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("export", metavar="EXPORT", help="export.pkl (or its folder)")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    cmd.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    cmd.add_argument("--feedback", metavar="DIR", help="where corrections are stored (default: feedback/ beside "
                     "the export)")
    cmd.add_argument("--max-mb", type=_positive(float), default=10.0, help="largest upload in MB (default: 10)")
    cmd.add_argument("--max-chars", type=_positive(int), default=10_000,
                     help="longest text, in characters (default: 10000)")
    cmd.add_argument("--max-mp", type=_positive(float), default=40.0,
                     help="largest image in megapixels; bigger ones are refused before decoding (default: 40)")
    cmd.add_argument("--body-timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                     help="answer 408 to an upload that sends nothing for this long (default: 30)")
    cmd.add_argument("--max-batch", type=_positive(int), default=32,
                     help="most requests one model pass serves together; 1 = one at a time (default: 32)")
    cmd.add_argument("--batch-wait-ms", type=_zero_or_more, default=5.0, metavar="MS",
                     help="longest a request waits for others on their way to share its model pass; a request "
                          "alone never waits (default: 5)")
    cmd.set_defaults(run=_serve)


def _serve(args) -> int:
    import uvicorn

    from .app import LOCAL_HOSTS, create_app

    sock = _bind(args.host, args.port)  # before the model loads: a taken port or unknown host is said at once
    any_host = args.host in ("0.0.0.0", "::", "")
    app = create_app(args.export, args.feedback, args.max_mb, args.max_chars, args.max_mp,
                     hosts=None if any_host else (*LOCAL_HOSTS, args.host), body_timeout=args.body_timeout,
                     max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
    predictor, store = app.state.predictor, app.state.store
    broken = predictor.nonfinite_weights()
    if broken:
        print(f"warning: {len(broken)} tensor(s) of {predictor.export_file} hold NaN or infinite values (the first: "
              f"{broken[0]}): every prediction will fail. Serve another export.", file=sys.stderr, flush=True)
    if any_host:
        print(f"--host {args.host}: listening on every network interface and answering to any host name; anyone "
              "who can reach this machine can use the page and store corrections.", flush=True)
    port = sock.getsockname()[1]
    print(f"Serving a {predictor.kind} model ({len(predictor.classes)} classes) from {predictor.export_file} "
          f"(sha256 {predictor.sha256[:12]}, trained {predictor.trained}) at http://{args.host}:{port}; "
          f"corrections go to {store.folder}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or an OSError in one line naming both (unknown host, port in use)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise OSError(f"--host {host}: no such address on this machine ({e.strerror}); use 127.0.0.1, or "
                      "0.0.0.0 for every network interface.") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        why = {errno.EADDRINUSE: "is in use by another program", errno.EADDRNOTAVAIL: "is not an address of this "
               "machine", errno.EACCES: "needs root (ports below 1024)"}.get(e.errno, f"cannot be used ({e.strerror})")
        raise OSError(f"Port {port} on {host} {why}; choose another with --port (or stop the other "
                      "program).") from None
    sock.set_inheritable(True)
    return sock
