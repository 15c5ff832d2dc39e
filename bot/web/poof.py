"""POST /webhooks/poof: a Poof payment notice closes the loop on an invoice's card.

Poof puts its shared secret inside the JSON body (`x-poof-signature`); it is compared in constant
time, and the transaction is then re-fetched from Poof, because only Poof's own answer is trusted.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from blocks.format import code, money
from bot import lifecycle
from bot.lifecycle import Reply
from bot.runtime import Runtime
from bot.web.errors import Refusal, storage_unavailable
from bot.web.limits import parse_json, read_body
from providers.base import NotFound, ProviderError
from providers.poof import PoofClient
from storage.audit import Event
from storage.db import session_scope
from storage.models import Case, ProviderAction
from storage.states import ActionStatus, CaseState

log = logging.getLogger(__name__)

# The body is parsed on the event loop before its secret can be checked, so anyone can send one: a
# payment notice is a few hundred bytes, and this keeps a stranger's body from costing more than ~5 ms.
POOF_MAX_BODY_BYTES = 64 * 1024


def mark_invoice_paid(engine: Engine, poof: PoofClient, payment_id: str, now: datetime) -> str:
    """Trust only Poof's own record of the transaction; returns what happened, for the answer."""
    transaction = poof.get_transaction(payment_id)
    if not transaction.is_paid:
        return f"transaction is {transaction.paid}, not paid"
    with session_scope(engine) as session:
        row = session.exec(select(ProviderAction).where(
            ProviderAction.provider == "poof", ProviderAction.action == "invoice_poof",
            ProviderAction.provider_reference == payment_id)).first()
        call_id = transaction.external_metadata.get("dialnexa_call_id")
        if row is None and isinstance(call_id, str):
            # Poof documents no payment_id in the invoice response, so the reference may be unknown
            # until now: the call ID sent as invoice metadata identifies the case instead.
            row = session.exec(select(ProviderAction).where(
                ProviderAction.idempotency_key == f"{call_id}:invoice_poof")).first()
            if row is not None:
                row.provider_reference = payment_id
                session.add(row)
        if row is None:
            return "no finance-desk invoice has this payment ID"
        case = session.get(Case, row.case_id, with_for_update=True)
        assert case is not None
        if case.action_status == ActionStatus.PAID:
            return "already marked paid"
        case.action_status = ActionStatus.PAID
        # A case closed meanwhile keeps its state; the payment is recorded on it all the same.
        lifecycle.settle(
            session, case, CaseState.DONE, by="poof", now=now, close_reason="paid",
            event=Event("invoice_poof.paid", outcome=ActionStatus.PAID, record=f"Poof payment {payment_id}",
                        target="poof", reason="Poof webhook, confirmed by fetching the transaction",
                        detail={"amount": str(transaction.amount), "currency": transaction.currency}),
            reply=Reply(f"paid:{payment_id}", f"💰 Poof reports invoice {code(payment_id, 120)} paid "
                        f"({money(transaction.amount, (transaction.currency or '').upper())})."))
    return "invoice marked paid"


def poof_endpoint(runtime: Runtime) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        settings = runtime.settings
        if settings.poof_webhook_secret is None or settings.poof_api_key is None:
            raise Refusal(404, "not_configured", "POOF_WEBHOOK_SECRET and POOF_API_KEY are not set")
        body = parse_json(await read_body(request, POOF_MAX_BODY_BYTES))
        if not isinstance(body, dict):
            raise Refusal(400, "not_a_poof_event", "body must be a JSON object")
        offered = str(body.get("x-poof-signature", ""))
        if not hmac.compare_digest(offered.encode(), settings.poof_webhook_secret.get_secret_value().encode()):
            raise Refusal(401, "invalid_signature", "x-poof-signature does not match the shared secret")
        payment_id = body.get("payment_id")
        if not isinstance(payment_id, str) or not payment_id:
            raise Refusal(400, "not_a_poof_event", "no payment_id")
        poof = PoofClient(settings.poof_api_key.get_secret_value(), settings.poof_api_url,
                          timeout=settings.provider_timeout_seconds)
        try:
            result = await run_in_threadpool(mark_invoice_paid, runtime.engine, poof, payment_id, datetime.now(UTC))
        except NotFound:
            raise Refusal(400, "unknown_transaction", "Poof has no such transaction") from None
        except ProviderError:
            log.warning("poof webhook for %s: Poof could not be reached to confirm it", payment_id)
            raise Refusal(503, "provider_unavailable", "could not confirm with Poof; retry later") from None
        except SQLAlchemyError:
            # Poof retries a non-2xx notice, and the retry re-fetches the transaction all the same.
            log.exception("poof webhook for %s could not be stored", payment_id)
            raise storage_unavailable("payment notice") from None
        finally:
            poof.close()
        if runtime.wake_workers is not None:
            runtime.wake_workers()
        return JSONResponse({"ok": True, "result": result})

    return endpoint
