"""Shared fixtures: a fresh database per test on SQLite and (when reachable) PostgreSQL, and the
real ASGI app served by uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.policy import Policy, load_policy
from bot.runtime import Runtime
from bot.web.app import create_app
from storage.db import make_engine, normalise_url
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "whsec_current_test_secret"
PREVIOUS_SECRET = "whsec_previous_test_secret"
TEST_POLICY = ROOT / "tests" / "data" / "policy.toml"


def _postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'finance-desk.db'}"
        return
    base = _postgres_url()
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    url = make_url(normalise_url(base))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"fd_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc.__class__.__name__}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def policy() -> Policy:
    return load_policy(TEST_POLICY)


def make_settings(db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": db_url,
        "dialnexa_webhook_secrets": [SecretStr(WEBHOOK_SECRET), SecretStr(PREVIOUS_SECRET)],
        "finance_desk_policy": TEST_POLICY,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def runtime(db_url: str, engine: Engine, policy: Policy) -> Runtime:
    return Runtime(settings=make_settings(db_url), policy=policy, engine=engine)


class LiveServer:
    """The real app under uvicorn in a background thread, on a free port."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(runtime), log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    server = LiveServer(runtime).start()
    yield server
    server.stop()
