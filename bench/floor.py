"""The floor for `bench.ingest`: the same server stack as the webhook, doing only the unavoidable work.

One POST route reads the body, json-parses it and inserts one row, in a worker thread exactly as the
webhook runs `ingest`, through an engine from `storage.db.make_engine` (so SQLite gets the same WAL,
synchronous=NORMAL, busy timeout, NullPool and BEGIN IMMEDIATE). No signature check, no triage, no
case merge: whatever the real webhook costs above this is the app's own.

Run it alone with `python -m bench.floor [--database-url URL]`; it prints `READY <url>` and serves
`POST /webhooks/dialnexa` and `GET /healthz` until interrupted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Column, Engine, Float, Integer, MetaData, Table, Text, insert
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storage.db import make_engine

metadata = MetaData()
floor_deliveries = Table(
    "bench_floor_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("body", Text, nullable=False),
)


def create_floor_app(engine: Engine) -> Starlette:
    metadata.create_all(engine)

    def store(text: str) -> None:
        with engine.begin() as connection:
            connection.execute(insert(floor_deliveries).values(received_at=time.time(), body=text))

    async def deliver(request: Request) -> Response:
        raw = await request.body()
        try:
            json.loads(raw, parse_float=Decimal)
        except ValueError:
            return JSONResponse({"ok": False, "error": "malformed_json"}, status_code=400)
        await run_in_threadpool(store, raw.decode("utf-8"))
        return JSONResponse({"ok": True})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/dialnexa", deliver, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    from bench.ingest import serve_forever

    parser = argparse.ArgumentParser(description="Serve the bench.ingest floor app on a free port.")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fd-floor-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'floor.db'}"
        serve_forever(create_floor_app(make_engine(url)))


if __name__ == "__main__":
    main()
