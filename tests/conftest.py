"""Shared fixtures: a fresh database per test on SQLite and (when reachable) PostgreSQL, and the
real ASGI app served by uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.policy import Policy, load_policy
from bot.runtime import Runtime
from bot.standins.stripe import StripeStandIn
from bot.web.background import BackgroundServer
from storage.db import make_engine, normalise_url
from storage.migrate import upgrade

# Property tests run the same generated examples on every run (derandomized), so the suite passes or
# fails on the code, not on the draw. HYPOTHESIS_PROFILE=explore draws new examples each run to hunt for
# cases the fixed ones miss (what it finds becomes a named test). Loaded here, before any test module
# builds its own settings on top of the default.
settings.register_profile("fixed", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "whsec_current_test_secret"
PREVIOUS_SECRET = "whsec_previous_test_secret"
TEST_POLICY = ROOT / "tests" / "data" / "policy.toml"


def _postgres_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL")


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database on TEST_DATABASE_URL's server, dropped afterwards; the
    test is skipped without that server (failed under TEST_REQUIRE_POSTGRES=1)."""
    base = _postgres_url()
    if not base:
        if os.environ.get("TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("TEST_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests skipped")
    url = make_url(normalise_url(base))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"fd_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc.__class__.__name__}"
        if os.environ.get("TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)  # CI: a run that silently fell back to SQLite alone proves nothing
        pytest.skip(message)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'finance-desk.db'}"
        return
    with scratch_postgres() as url:
        yield url


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


LiveServer = BackgroundServer


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    server = LiveServer(runtime).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stripe_standin() -> Iterator[StripeStandIn]:
    """One Stripe stand-in per test module (`standin` resets it between tests)."""
    with StripeStandIn() as standin:
        yield standin


@pytest.fixture
def standin(stripe_standin: StripeStandIn) -> Iterator[StripeStandIn]:
    stripe_standin.clear_requests()
    yield stripe_standin
    stripe_standin.clear_faults()
    stripe_standin.refund_status = "succeeded"
