"""`python -m course_utils serve EXPORT`: the web app on uvicorn (the app itself is in app.py, imported only
when the command runs, so the other commands work without the web packages)."""
from __future__ import annotations

import argparse

__all__ = ["add_serve_command"]


SERVE_EXAMPLE = """example:
  python -m course_utils serve runs/planet/export.pkl --port 8000
  after a fine-tune, the new export with the same feedback folder (the rows stored so far are kept):
  python -m course_utils serve runs/planet/export-2.pkl --feedback runs/planet/feedback
  then open http://127.0.0.1:8000 in a browser (from a phone: --host 0.0.0.0, at your own risk)
"""


def add_serve_command(commands) -> None:
    """Register `serve` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "serve", help="a web page that predicts with an exported model and collects corrections",
        description="Serve an exported model as a small web app: a page to upload an image (or paste a text) "
                    "and see the prediction, and a 'Wrong?' button whose corrections are stored for `finetune`.",
        epilog=SERVE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.add_argument("export", metavar="EXPORT", help="export.pkl (or its folder)")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    cmd.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    cmd.add_argument("--feedback", metavar="DIR", help="where corrections are stored (default: feedback/ beside "
                     "the export)")
    cmd.add_argument("--max-mb", type=float, default=10.0, help="largest upload in MB (default: 10)")
    cmd.add_argument("--max-chars", type=int, default=10_000, help="longest text, in characters (default: 10000)")
    cmd.set_defaults(run=_serve)


def _serve(args) -> int:
    import uvicorn

    from .app import create_app

    app = create_app(args.export, args.feedback, args.max_mb, args.max_chars)
    predictor, store = app.state.predictor, app.state.store
    print(f"Serving a {predictor.kind} model ({len(predictor.classes)} classes) from {predictor.export_file} "
          f"(sha256 {predictor.sha256[:12]}, trained {predictor.trained}) at http://{args.host}:{args.port}; "
          f"corrections go to {store.folder}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
