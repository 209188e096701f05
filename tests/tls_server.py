"""A TLS server on loopback for tests that prove a probe can fail: it serves ``ctx`` until
its listener is closed, handing each established session to ``handle``."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable


def serve_tls(ctx: ssl.SSLContext, handle: Callable[[ssl.SSLSocket], None] = lambda _tls: None) -> socket.socket:
    """The listening socket (``getsockname()[1]`` is its port); close it to stop the server."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    handle(tls)
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return listener
