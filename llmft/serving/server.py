"""uvicorn around the app: in the foreground for `llmft serve`, or in a background thread on a loopback port (tests,
the load benchmark) with a clean stop."""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import uvicorn

from llmft.errors import UserError


def serve_forever(app: Any, host: str, port: int) -> None:
    """Serve until Ctrl-C; a port that cannot be bound is a one-line error."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False))
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C/SIGTERM, then re-raises the signal it caught
        return
    except SystemExit as ex:  # uvicorn exits when it cannot bind
        raise UserError(
            f"cannot listen on {host}:{port} (in use, or not an address of this machine); choose another port="
        ) from ex
    if not server.started:
        raise UserError(f"cannot listen on {host}:{port} (in use, or not an address of this machine); choose another port=")


class BackgroundServer:
    """`with BackgroundServer(app) as url:` serves on a free loopback port in a thread and stops it on exit."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.thread: Optional[threading.Thread] = None

    def __enter__(self) -> str:
        self.thread = threading.Thread(target=self.server.run, name="llmft-serve", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(30)
