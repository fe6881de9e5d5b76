"""Serve a folder (the built site) on a free local port, quietly, in a background thread: what
the PDF printer (tools/pdf.py) and the browser tests load the pages from."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no request log on the console
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    """A running server for ``directory``; its address is ``http://127.0.0.1:{server_address[1]}``.
    Call ``shutdown()`` when done."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
