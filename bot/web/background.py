"""Run the ASGI app under uvicorn in a background thread on a free 127.0.0.1 port.

Used by `finance-desk demo`, the benchmarks and the tests, so all of them exercise the same real
server stack as `finance-desk serve`.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from bot.runtime import Runtime
from bot.web.app import create_app


class BackgroundServer:
    def __init__(self, runtime: Runtime, host: str = "127.0.0.1") -> None:
        self.runtime = runtime
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Without this, Nagle's algorithm stalls every keep-alive response by ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, 0))
        self._socket = sock
        self.url = f"http://{host}:{sock.getsockname()[1]}"
        # lifespan="on": the app's shutdown stops the worker process that ingests large bodies.
        config = uvicorn.Config(create_app(runtime), log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._socket.close()
