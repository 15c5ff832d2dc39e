"""A local Stripe API (shared/reference/stripe.md) for tests and `finance-desk demo`.

Speaks what the official SDK sends: `Authorization: Bearer <key>`, form-encoded POST bodies with
bracket nesting (`metadata[k]=v`, `expand[0]=…` or `expand[]=…`), query strings on GET, and
`Idempotency-Key` on every POST. Objects are shaped like Stripe's current fixtures (the OpenAPI
repository's `fixtures3.json`, copied into `_TEMPLATES` below) at the SDK's pinned API version.

Idempotency follows Stripe's docs (stripe.md §6): the first answer to a key is saved once the endpoint
has begun (so a saved 500 is replayed too); the same key with the same parameters gets the saved answer
with `Idempotent-Replayed: true`; with different parameters a 400 `idempotency_error`. Requests that fail
validation are not saved. Faults injected with `fail_next` come before the idempotency layer (like a
load balancer's 5xx): nothing was done and nothing is saved, so a retry really runs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx

from bot.standins.base import Recorded, Reply, StandIn, _Handler, json_reply
from providers.stripe import STRIPE_API_VERSION, sign_payload

API_KEY: Final = "rk_test_standin"
API_VERSION: Final = STRIPE_API_VERSION
REFUND_REASONS: Final = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_PARAMS: Final = frozenset({
    "amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata", "origin",
    "payment_intent", "reason", "refund_application_fee", "reverse_transfer",
})
_ALNUM = string.ascii_letters + string.digits
_PREFIXES: Final = {
    "ch_": "charge", "py_": "charge", "re_": "refund", "pyr_": "refund", "dp_": "dispute", "du_": "dispute",
    "cus_": "customer", "pi_": "payment_intent", "in_": "invoice", "sub_": "subscription",
}


class _LostReply(Reply):
    """A reply the client never receives: the work was done, then the connection closed without an answer."""


class _Refusal(Exception):
    def __init__(self, status: int, code: str | None, message: str, *, param: str | None = None,
                 kind: str = "invalid_request_error", save: bool = True) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param, self.kind = status, code, message, param, kind
        # Validation failures are not saved under the idempotency key (stripe.md §6).
        self.save = save


@dataclass
class _Saved:
    method: str
    path: str
    params: str
    reply: Reply


def error_body(kind: str, message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """Stripe's error envelope (stripe.md §5)."""
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return {"error": error}


def _invalid(message: str, param: str | None = None, code: str | None = "parameter_invalid") -> _Refusal:
    return _Refusal(400, code, message, param=param, save=False)


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's bracket form encoding: `a[b][c]=v` nests, `l[]=v` appends, `l[0]=v` indexes a list."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        name, bracket, rest = key.partition("[")
        parts = [name]
        while bracket:
            inner, close, rest = rest.partition("]")
            if not close:
                raise _invalid(f"Invalid parameter name: {key}", key)
            parts.append(inner)
            if not rest:
                break
            if not rest.startswith("["):
                raise _invalid(f"Invalid parameter name: {key}", key)
            rest = rest[1:]
        if not name:
            raise _invalid(f"Invalid parameter name: {key}", key)
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = f"\0{len(node)}"  # `[]`: the next free position, sorted as a list index below
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise _invalid(f"Invalid parameter nesting: {key}", key)
                node = child
    decoded: dict[str, Any] = _listify(root, top=True)
    return decoded


def _listify(node: dict[str, Any], *, top: bool = False, under_metadata: bool = False) -> Any:
    for key, value in list(node.items()):
        if isinstance(value, dict):
            node[key] = _listify(value, under_metadata=top and key == "metadata")
    if node and not top and not under_metadata and all(k.lstrip("\0").isdigit() for k in node):
        return [node[k] for k in sorted(node, key=lambda k: int(k.lstrip("\0")))]
    return {k.lstrip("\0") if k.startswith("\0") else k: v for k, v in node.items()}


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(24))


def _epoch(value: datetime | int | None) -> int:
    if value is None:
        return int(datetime.now(UTC).timestamp())
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("times must be timezone-aware")
        return int(value.timestamp())
    return int(value)


class StripeStandIn(StandIn):
    """Stripe API stand-in: customers, charges, payment intents, refunds, disputes, invoices, subscriptions.

    Knobs: `refund_status` ("succeeded", or "pending" as for slower payment methods), `fail_next` /
    `delay` from the base (faults before any work), `lose_next_refund_response()` (the refund is made
    and saved, then the connection drops), `reject_next_refund(code, status=…)` (the endpoint runs and
    refuses; the answer is saved under the key, 500s included).
    """

    def __init__(self, *, api_key: str = API_KEY, port: int = 0, api_version: str = API_VERSION) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.api_version = api_version
        self.refund_status = "succeeded"
        self._objects: dict[str, dict[str, dict[str, Any]]] = {
            kind: {} for kind in ("customer", "charge", "payment_intent", "refund", "dispute", "invoice",
                                  "subscription")
        }
        self._order: dict[str, int] = {}
        self._seq = 0
        self._idempotent: dict[tuple[str, str], _Saved] = {}
        self._lose_refunds = 0
        self._reject_refunds: list[_Refusal] = []
        self._refund_posts = 0
        self._balance = {"usd": 1_000_000}

    # ----------------------------------------------------------------- seeding

    def add_customer(self, id: str | None = None, *, email: str | None = None, name: str | None = None,
                     phone: str | None = None, created: datetime | int | None = None,
                     metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        customer = _template("customer")
        customer.update(id=id or _new_id("cus_"), email=email, name=name, phone=phone, created=_epoch(created),
                        metadata=dict(metadata or {}))
        return self._store("customer", customer)

    def delete_customer(self, customer_id: str) -> None:
        """GET answers Stripe's deleted-customer stub from now on."""
        with self._lock:
            self._objects["customer"][customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
            self._changed()

    def add_charge(self, customer: str | None = None, amount_minor: int = 1000, currency: str = "usd",
                   created: datetime | int | None = None, brand: str | None = "visa", last4: str | None = "4242",
                   payment_intent: str | None = None, disputed: bool = False, *, id: str | None = None,
                   status: str = "succeeded", amount_refunded: int = 0,
                   metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A card charge. `payment_intent` (a `pi_` ID) also creates that PaymentIntent, latest_charge this one."""
        charge = _template("charge")
        charge_id = id or _new_id("ch_")
        card = charge["payment_method_details"]["card"]
        card.update(brand=brand, last4=last4, network=brand)
        charge.update(
            id=charge_id, customer=customer, amount=amount_minor, amount_captured=amount_minor,
            amount_refunded=amount_refunded, refunded=amount_refunded >= amount_minor, currency=currency.lower(),
            created=_epoch(created), disputed=disputed, status=status, paid=status == "succeeded",
            payment_intent=payment_intent, metadata=dict(metadata or {}),
            balance_transaction=_new_id("txn_"), payment_method=_new_id("pm_"),
            receipt_url=f"{self._base_url()}/receipts/payment/{charge_id}",
        )
        charge["outcome"]["network_status"] = "approved_by_network" if status == "succeeded" else "declined_by_network"
        with self._lock:
            stored = self._store("charge", charge)
            if payment_intent:
                intent = _template("payment_intent")
                intent.update(id=payment_intent, amount=amount_minor, amount_received=amount_minor,
                              currency=currency.lower(), customer=customer, created=charge["created"],
                              latest_charge=charge_id, status="succeeded",
                              client_secret=f"{payment_intent}_secret_standin")
                self._store("payment_intent", intent)
            return stored

    def add_payment_intent(self, id: str | None = None, *, customer: str | None = None, amount_minor: int = 1000,
                           currency: str = "usd", status: str = "requires_payment_method") -> dict[str, Any]:
        """A PaymentIntent with no charge yet (latest_charge null)."""
        intent = _template("payment_intent")
        intent_id = id or _new_id("pi_")
        intent.update(id=intent_id, amount=amount_minor, currency=currency.lower(), customer=customer,
                      created=_epoch(None), latest_charge=None, status=status,
                      client_secret=f"{intent_id}_secret_standin")
        return self._store("payment_intent", intent)

    def add_dispute(self, charge_id: str, reason: str = "fraudulent", status: str = "needs_response",
                    due_by: datetime | None = None, *, id: str | None = None, amount_minor: int | None = None,
                    is_charge_refundable: bool = False, created: datetime | int | None = None) -> dict[str, Any]:
        with self._lock:
            charge = self._get("charge", charge_id)
            dispute = _template("dispute")
            dispute.update(
                id=id or _new_id("dp_"), charge=charge_id, amount=charge["amount"] if amount_minor is None
                else amount_minor, currency=charge["currency"], payment_intent=charge.get("payment_intent"),
                reason=reason, status=status, is_charge_refundable=is_charge_refundable, created=_epoch(created),
            )
            dispute["evidence_details"]["due_by"] = _epoch(due_by) if due_by is not None else 0
            dispute["payment_method_details"]["card"].update(
                brand=charge["payment_method_details"]["card"]["brand"],
                case_type="inquiry" if status.startswith("warning_") else "chargeback")
            charge["disputed"] = True
            return self._store("dispute", dispute)

    def add_subscription(self, customer: str, status: str = "active", *, id: str | None = None,
                         latest_invoice: str | None = None, created: datetime | int | None = None) -> dict[str, Any]:
        subscription = _template("subscription")
        sub_id = id or _new_id("sub_")
        when = _epoch(created)
        subscription.update(id=sub_id, customer=customer, status=status, latest_invoice=latest_invoice, created=when,
                            start_date=when, billing_cycle_anchor=when)
        item = subscription["items"]["data"][0]
        item.update(id=_new_id("si_"), subscription=sub_id, created=when, current_period_start=when,
                    current_period_end=when + 30 * 86400)
        subscription["items"]["url"] = f"/v1/subscription_items?subscription={sub_id}"
        if status == "canceled":
            subscription.update(canceled_at=when, ended_at=when)
        return self._store("subscription", subscription)

    def add_invoice(self, customer: str, status: str = "open", amount_minor: int = 2000,
                    subscription: str | None = None, *, id: str | None = None, currency: str = "usd",
                    collection_method: str = "charge_automatically", attempt_count: int = 0,
                    number: str | None = None, created: datetime | int | None = None) -> dict[str, Any]:
        invoice = _template("invoice")
        invoice_id = id or _new_id("in_")
        when = _epoch(created)
        with self._lock:
            paid = amount_minor if status == "paid" else 0
            finalized = status != "draft"
            invoice.update(
                id=invoice_id, customer=customer, status=status, currency=currency.lower(), created=when,
                amount_due=amount_minor, amount_paid=paid, amount_remaining=amount_minor - paid,
                subtotal=amount_minor, subtotal_excluding_tax=amount_minor, total=amount_minor,
                total_excluding_tax=amount_minor, collection_method=collection_method, attempt_count=attempt_count,
                attempted=attempt_count > 0, period_start=when, period_end=when, effective_at=when if finalized
                else None, due_date=when + 30 * 86400 if collection_method == "send_invoice" else None,
                next_payment_attempt=None, webhooks_delivered_at=when,
                number=number or (f"STANDIN-{len(self._objects['invoice']) + 1:04d}" if finalized else None),
                hosted_invoice_url=f"{self._base_url()}/invoice/{invoice_id}" if finalized else None,
                invoice_pdf=f"{self._base_url()}/invoice/{invoice_id}/pdf" if finalized else None,
                billing_reason="subscription_cycle" if subscription else "manual",
            )
            if customer in self._objects["customer"]:
                owner = self._objects["customer"][customer]
                invoice.update(customer_email=owner.get("email"), customer_name=owner.get("name"))
            line = invoice["lines"]["data"][0]
            line.update(id=_new_id("il_"), invoice=invoice_id, amount=amount_minor, subtotal=amount_minor,
                        currency=currency.lower(), period={"start": when, "end": when})
            invoice["lines"]["url"] = f"/v1/invoices/{invoice_id}/lines"
            invoice["status_transitions"].update(finalized_at=when if finalized else None,
                                                 paid_at=when if status == "paid" else None)
            if subscription:
                invoice["parent"] = {"quote_details": None, "type": "subscription_details",
                                     "subscription_details": {"metadata": {}, "subscription": subscription}}
                if subscription in self._objects["subscription"]:
                    self._objects["subscription"][subscription]["latest_invoice"] = invoice_id
            return self._store("invoice", invoice)

    def set_dispute(self, dispute_id: str, **fields: Any) -> dict[str, Any]:
        """Change a dispute; `due_by` (datetime or None) goes into evidence_details."""
        with self._lock:
            dispute = self._get("dispute", dispute_id)
            if "due_by" in fields:
                due = fields.pop("due_by")
                dispute["evidence_details"]["due_by"] = _epoch(due) if due is not None else 0
            dispute.update(fields)
            self._changed()
            return copy.deepcopy(dispute)

    def set_refund(self, refund_id: str, **fields: Any) -> dict[str, Any]:
        """Change a refund (e.g. status="failed", failure_reason="expired_or_canceled_card").

        A refund that fails or is canceled gives its amount back to the charge's refundable remainder."""
        with self._lock:
            refund = self._get("refund", refund_id)
            was_live = refund["status"] not in ("failed", "canceled")
            refund.update(fields)
            if was_live and refund["status"] in ("failed", "canceled") and refund.get("charge"):
                charge = self._objects["charge"].get(refund["charge"])
                if charge is not None:
                    charge["amount_refunded"] = max(0, charge["amount_refunded"] - refund["amount"])
                    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
                if refund["status"] == "failed":
                    refund["failure_balance_transaction"] = _new_id("txn_")
            self._changed()
            return copy.deepcopy(refund)

    def set_charge(self, charge_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            charge = self._get("charge", charge_id)
            charge.update(fields)
            self._changed()
            return copy.deepcopy(charge)

    def set_balance(self, currency: str, amount_minor: int) -> None:
        with self._lock:
            self._balance[currency.lower()] = amount_minor

    # ----------------------------------------------------------------- reading state

    def object(self, object_id: str) -> dict[str, Any]:
        """Any stored object by ID (a copy)."""
        with self._lock:
            return copy.deepcopy(self._find(object_id))

    def charge(self, charge_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get("charge", charge_id))

    def refund(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get("refund", refund_id))

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._get("dispute", dispute_id))

    @property
    def refunds(self) -> list[dict[str, Any]]:
        """Every refund made, oldest first."""
        with self._lock:
            return copy.deepcopy(list(self._objects["refund"].values()))

    @property
    def refund_posts(self) -> int:
        """How many POST /v1/refunds created a refund (replays and refusals not counted)."""
        with self._lock:
            return self._refund_posts

    # ----------------------------------------------------------------- knobs

    def lose_next_refund_response(self, times: int = 1) -> None:
        """The next `times` answers to POST /v1/refunds are lost: the refund is made (and saved under its
        key), or a retry's replay is prepared, then the connection closes without an answer."""
        with self._lock:
            self._lose_refunds += times

    def reject_next_refund(self, code: str | None = "balance_insufficient", *, status: int = 400,
                           message: str | None = None, kind: str | None = None) -> None:
        """The next refund POST runs and is refused with `status`/`code`; the answer is saved under its
        Idempotency-Key, so the SDK's same-key retries get it replayed (5xx included, as Stripe documents)."""
        kind = kind or ("api_error" if status >= 500 else "card_error" if status == 402 else "invalid_request_error")
        with self._lock:
            self._reject_refunds.append(_Refusal(status, code, message or f"Refund refused ({code or status}).",
                                                 kind=kind))

    # ----------------------------------------------------------------- events and delivery

    def event(self, type: str, obj: Mapping[str, Any], *, id: str | None = None,
              created: datetime | int | None = None, previous_attributes: Mapping[str, Any] | None = None,
              idempotency_key: str | None = None, request_id: str | None = None) -> dict[str, Any]:
        """An Event JSON as Stripe would deliver it, rendered at this stand-in's API version."""
        data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
        if previous_attributes is not None:
            data["previous_attributes"] = copy.deepcopy(dict(previous_attributes))
        return {
            "id": id or _new_id("evt_"),
            "object": "event",
            "api_version": self.api_version,
            "created": _epoch(created),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type,
        }

    def deliver(self, url: str, event: Mapping[str, Any] | bytes, secret: str, *, timestamp: int | None = None,
                extra_secrets: Iterable[str] = (), timeout: float = 10.0) -> httpx.Response:
        """POST the event to `url` signed like Stripe (`Stripe-Signature: t=…,v1=…`)."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url!r}")
        body = event if isinstance(event, bytes) else json.dumps(event, separators=(",", ":")).encode()
        when = int(datetime.now(UTC).timestamp()) if timestamp is None else timestamp
        header = sign_payload(body, secret, when, extra_secrets=tuple(extra_secrets))
        return httpx.post(url, content=body, timeout=timeout, headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": header,
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        })

    # ----------------------------------------------------------------- HTTP

    def fault_body(self, status: int) -> Any:
        if status == 429:
            return error_body("invalid_request_error", "Too many requests hit the API too quickly.", "rate_limit")
        if status == 409:
            return error_body("idempotency_error", "There is currently another in-progress request using this "
                              "Idempotent Key.", "idempotency_key_in_use")
        if status >= 500:
            return error_body("api_error", "Something went wrong on Stripe's end.")
        return error_body("invalid_request_error", f"Injected fault {status}.")

    def fault_headers(self, status: int) -> dict[str, str]:
        return {"Request-Id": _new_id("req_"), "Stripe-Version": self.api_version}

    def handle(self, request: Recorded) -> Reply:
        reply = self._handle(request)
        reply.headers.setdefault("Request-Id", _new_id("req_"))
        reply.headers.setdefault("Stripe-Version", self.api_version)
        return reply

    def _handle(self, request: Recorded) -> Reply:
        path = self.canonical_path(request.path)
        if not self._authorised(request):
            return json_reply(error_body("invalid_request_error", "Invalid API Key provided."), status=401)
        try:
            if request.method == "GET":
                # The base keeps the query as a dict: the SDK's indexed `expand[0]=` survives, a repeated
                # `expand[]=` keeps its last value only.
                return self._get_route(path, decode_form(request.query.items()))
            if request.method == "POST":
                return self._post(request, path)
        except _Refusal as refusal:
            return _refusal_reply(refusal)
        return json_reply(error_body("invalid_request_error", f"Unrecognized request URL ({request.method}: "
                                     f"{path})."), status=404)

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        if isinstance(reply, _LostReply):
            handler.close_connection = True  # no status line, no body: the client's read fails
            return
        StandIn._write(handler, reply)

    def _authorised(self, request: Recorded) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer":
            return secrets.compare_digest(credential.strip().encode(), self.api_key.encode())
        if scheme.lower() == "basic":  # `curl -u key:` (stripe.md §1)
            try:
                user = base64.b64decode(credential.strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return False
            return secrets.compare_digest(user.encode(), self.api_key.encode())
        return False

    # ----------------------------------------------------------------- GET

    def _get_route(self, path: str, query: dict[str, Any]) -> Reply:
        parts = path.strip("/").split("/")
        if parts[:1] != ["v1"] or len(parts) < 2:
            raise _Refusal(404, None, f"Unrecognized request URL (GET: {path}).", save=False)
        resource = parts[1]
        expand = _expand_list(query)
        if resource == "balance" and len(parts) == 2:
            return json_reply(self._balance_object())
        kinds = {"charges": "charge", "refunds": "refund", "disputes": "dispute", "customers": "customer",
                 "invoices": "invoice", "subscriptions": "subscription", "payment_intents": "payment_intent"}
        kind = kinds.get(resource)
        if kind is None:
            raise _Refusal(404, None, f"Unrecognized request URL (GET: {path}).", save=False)
        if len(parts) == 3:
            obj = self._objects[kind].get(parts[2])
            if obj is None:
                raise _Refusal(404, "resource_missing", f"No such {kind.replace('_', '')}: '{parts[2]}'", param="id")
            return json_reply(self._render(obj, expand))
        if len(parts) == 2:
            return json_reply(self._list(kind, resource, query, expand))
        raise _Refusal(404, None, f"Unrecognized request URL (GET: {path}).", save=False)

    def _list(self, kind: str, resource: str, query: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        filters: dict[str, Callable[[dict[str, Any]], bool]] = {}
        for name in ("customer", "charge", "payment_intent", "subscription", "email"):
            if name in query and isinstance(query[name], str):
                filters[name] = _refers_to(name, query[name])
        if kind == "subscription":
            status = query.get("status")
            if status is None:
                filters["status"] = lambda o: o.get("status") != "canceled"
            elif status != "all":
                filters["status"] = _field_is("status", status)
        elif kind == "invoice" and isinstance(query.get("status"), str):
            filters["status"] = _field_is("status", query["status"])
        items = [o for o in self._objects[kind].values()
                 if not o.get("deleted") and all(check(o) for check in filters.values())]
        items.sort(key=lambda o: (o.get("created", 0), self._order.get(o["id"], 0)), reverse=True)
        limit = _limit(query.get("limit"))
        after, before = query.get("starting_after"), query.get("ending_before")
        ids = [o["id"] for o in items]
        if after is not None:
            if after not in ids:
                raise _invalid(f"No such {kind}: '{after}'", "starting_after", "resource_missing")
            items = items[ids.index(after) + 1:]
            page, has_more = items[:limit], len(items) > limit
        elif before is not None:
            if before not in ids:
                raise _invalid(f"No such {kind}: '{before}'", "ending_before", "resource_missing")
            items = items[: ids.index(before)]
            page, has_more = items[-limit:], len(items) > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        inner = [e.removeprefix("data.") for e in expand if e.startswith("data.")]
        return {"object": "list", "url": f"/v1/{resource}", "has_more": has_more,
                "data": [self._render(o, inner) for o in page]}

    def _balance_object(self) -> dict[str, Any]:
        return {
            "object": "balance",
            "available": [{"amount": amount, "currency": currency, "source_types": {"card": amount}}
                          for currency, amount in sorted(self._balance.items())],
            "pending": [{"amount": 0, "currency": currency, "source_types": {"card": 0}}
                        for currency in sorted(self._balance)],
            "livemode": False,
        }

    # ----------------------------------------------------------------- POST

    def _post(self, request: Recorded, path: str) -> Reply:
        try:
            pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(request.body))
        except (UnicodeDecodeError, ValueError):
            raise _invalid("The request body is not form-encoded.", None, None) from None
        params = decode_form(pairs)
        route = self._post_route(path)
        key = request.headers.get("idempotency-key")
        fingerprint = json.dumps(params, sort_keys=True)
        if key:
            if len(key) > 255:
                raise _invalid("Idempotency keys can be up to 255 characters long.", None, "idempotency_key_invalid")
            saved = self._idempotent.get((self.api_key, key))
            if saved is not None:
                if (saved.method, saved.path, saved.params) != (request.method, path, fingerprint):
                    raise _Refusal(400, None, "Keys for idempotent requests can only be used with the same "
                                   "parameters they were first used with. Try using a key other than "
                                   f"'{key}' if you meant to execute a different request.",
                                   kind="idempotency_error", save=False)
                replay = Reply(saved.reply.status, saved.reply.body, {**saved.reply.headers,
                                                                      "Idempotent-Replayed": "true"})
                return self._maybe_lose(path, replay)
        try:
            reply = route(params)
        except _Refusal as refusal:
            if not refusal.save:
                raise
            reply = _refusal_reply(refusal)
        if key:
            reply.headers.setdefault("Request-Id", _new_id("req_"))
            reply.headers["Idempotency-Key"] = key
            self._idempotent[(self.api_key, key)] = _Saved(request.method, path, fingerprint,
                                                           Reply(reply.status, reply.body, dict(reply.headers)))
        return self._maybe_lose(path, reply)

    def _maybe_lose(self, path: str, reply: Reply) -> Reply:
        if path == "/v1/refunds" and self._lose_refunds:
            self._lose_refunds -= 1
            return _LostReply(reply.status, reply.body, reply.headers)
        return reply

    def _post_route(self, path: str) -> Callable[[dict[str, Any]], Reply]:
        parts = path.strip("/").split("/")
        if parts == ["v1", "refunds"]:
            return self._create_refund
        if len(parts) == 4 and parts[:2] == ["v1", "invoices"] and parts[3] == "send":
            return lambda params: self._send_invoice(parts[2], params)
        if len(parts) == 3 and parts[:2] == ["v1", "charges"]:
            return lambda params: self._update_charge(parts[2], params)
        raise _Refusal(404, None, f"Unrecognized request URL (POST: {path}).", save=False)

    def _create_refund(self, params: dict[str, Any]) -> Reply:
        unknown = sorted(set(params) - REFUND_PARAMS)
        if unknown:
            raise _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")
        charge_id, intent_id = params.get("charge"), params.get("payment_intent")
        if charge_id is None and intent_id is None:
            raise _invalid("You must specify a Charge or a PaymentIntent.", "charge", "parameter_missing")
        if charge_id is not None and intent_id is not None:
            raise _invalid("You may only specify one of these parameters: charge, payment_intent.", "charge",
                           "parameters_exclusive")
        amount = params.get("amount")
        if amount is not None and (not isinstance(amount, str) or not amount.lstrip("-").isdigit()):
            raise _invalid("Invalid integer: amount", "amount", "parameter_invalid_integer")
        reason = params.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            raise _invalid(f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}", "reason")
        metadata = params.get("metadata", {})
        if metadata == "":
            metadata = {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise _invalid("Invalid metadata: must be a hash of strings", "metadata")
        expand = params.get("expand", [])
        if not isinstance(expand, list):
            raise _invalid("Invalid array", "expand", "parameter_invalid")
        if intent_id is not None:
            intent = self._objects["payment_intent"].get(intent_id)
            if intent is None:
                raise _Refusal(404, "resource_missing", f"No such payment_intent: '{intent_id}'",
                               param="payment_intent")
            charge_id = _ref_id(intent.get("latest_charge"))
            if not charge_id:
                raise _Refusal(400, "charge_not_refundable", "This PaymentIntent has no successful charge to refund.",
                               param="payment_intent")
        charge = self._objects["charge"].get(charge_id) if isinstance(charge_id, str) else None
        if charge is None:
            raise _Refusal(404, "resource_missing", f"No such charge: '{charge_id}'", param="charge")
        if self._reject_refunds:
            raise self._reject_refunds.pop(0)
        remaining = charge["amount"] - charge["amount_refunded"]
        if charge["refunded"] or remaining <= 0:
            raise _Refusal(400, "charge_already_refunded", f"Charge {charge_id} has already been refunded.",
                           param="charge")
        dispute = next((d for d in self._objects["dispute"].values() if d["charge"] == charge_id), None)
        if charge.get("disputed") and (dispute is None or not dispute.get("is_charge_refundable")):
            raise _Refusal(400, "charge_disputed", f"Charge {charge_id} has been charged back; it cannot be refunded.",
                           param="charge")
        if charge.get("status") != "succeeded":
            raise _Refusal(400, "charge_not_refundable", f"Charge {charge_id} did not succeed; it cannot be refunded.",
                           param="charge")
        value = remaining if amount is None else int(amount)
        if value < 1:
            raise _Refusal(400, "amount_too_small", "Refund amount must be at least 1 in the smallest currency unit.",
                           param="amount")
        if value > remaining:
            raise _Refusal(400, "amount_too_large", f"Refund amount ({value}) is greater than unrefunded amount on "
                           f"charge ({remaining})", param="amount")
        refund = _template("refund")
        refund.update(
            id=_new_id("re_"), amount=value, charge=charge_id, currency=charge["currency"], created=_epoch(None),
            metadata=dict(metadata), payment_intent=charge.get("payment_intent"), reason=reason,
            status=self.refund_status, customer=charge.get("customer"), balance_transaction=_new_id("txn_"),
            payment_method=charge.get("payment_method"),
            destination_details={"card": {"reference": None, "reference_status": "pending",
                                          "reference_type": "acquirer_reference_number", "type": "refund"},
                                 "type": "card"},
        )
        if self.refund_status == "pending":
            refund["pending_reason"] = "processing"
        charge["amount_refunded"] += value
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self._store("refund", refund)
        self._refund_posts += 1
        return json_reply(self._render(refund, expand))

    def _send_invoice(self, invoice_id: str, params: dict[str, Any]) -> Reply:
        invoice = self._objects["invoice"].get(invoice_id)
        if invoice is None:
            raise _Refusal(404, "resource_missing", f"No such invoice: '{invoice_id}'", param="invoice")
        if invoice["status"] in ("void", "uncollectible"):
            raise _Refusal(400, "invoice_not_editable", f"You can't send an invoice that is {invoice['status']}.")
        if invoice["status"] == "draft":  # Stripe finalizes drafts before sending (stripe.md §9)
            when = _epoch(None)
            invoice.update(status="open", number=invoice["number"] or f"STANDIN-{len(self._objects['invoice']):04d}",
                           hosted_invoice_url=f"{self._base_url()}/invoice/{invoice_id}",
                           invoice_pdf=f"{self._base_url()}/invoice/{invoice_id}/pdf", effective_at=when)
            invoice["status_transitions"]["finalized_at"] = when
        self._changed()
        return json_reply(self._render(invoice, _expand_list(params)))

    def _update_charge(self, charge_id: str, params: dict[str, Any]) -> Reply:
        charge = self._objects["charge"].get(charge_id)
        if charge is None:
            raise _Refusal(404, "resource_missing", f"No such charge: '{charge_id}'", param="charge")
        allowed = {"receipt_email", "metadata", "description", "expand"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise _invalid(f"Received unknown parameter: {unknown[0]}", unknown[0], "parameter_unknown")
        email = params.get("receipt_email")
        if email is not None and email != charge.get("receipt_email"):
            # A changed receipt_email sends a new receipt (stripe.md §9), which gets a number.
            charge["receipt_email"] = email or None
            charge["receipt_number"] = f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
        if isinstance(params.get("metadata"), dict):
            charge["metadata"].update(params["metadata"])
        if "description" in params:
            charge["description"] = params["description"] or None
        self._changed()
        return json_reply(self._render(charge, _expand_list(params)))

    # ----------------------------------------------------------------- plumbing

    def _base_url(self) -> str:
        return self.url if self.running else "http://127.0.0.1"

    def _store(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            self._order[obj["id"]] = self._seq
            self._objects[kind][obj["id"]] = obj
            self._changed()
            return copy.deepcopy(obj)

    def _get(self, kind: str, object_id: str) -> dict[str, Any]:
        obj = self._objects[kind].get(object_id)
        if obj is None:
            raise KeyError(f"no Stripe {kind} {object_id!r}")
        return obj

    def _find(self, object_id: str) -> dict[str, Any]:
        for prefix, kind in _PREFIXES.items():
            if object_id.startswith(prefix) and object_id in self._objects[kind]:
                return self._objects[kind][object_id]
        raise KeyError(f"no Stripe object {object_id!r}")

    def _render(self, obj: dict[str, Any], expand: Iterable[str]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        for path in expand:
            head, _, rest = path.partition(".")
            value = out.get(head)
            if isinstance(value, str):
                with contextlib.suppress(KeyError):
                    out[head] = self._render(self._find(value), [rest] if rest else [])
        return out


def _refusal_reply(refusal: _Refusal) -> Reply:
    return json_reply(error_body(refusal.kind, refusal.message, refusal.code, refusal.param), status=refusal.status)


def _expand_list(params: Mapping[str, Any]) -> list[str]:
    expand = params.get("expand", [])
    if isinstance(expand, str):
        return [expand]
    return [e for e in expand if isinstance(e, str)] if isinstance(expand, list) else []


def _ref_id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _refers_to(name: str, wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: _ref_id(obj.get(name)) == wanted


def _field_is(name: str, wanted: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: obj.get(name) == wanted


def _limit(value: Any) -> int:
    if value is None:
        return 10
    if not isinstance(value, str) or not value.isdigit() or not 1 <= int(value) <= 100:
        raise _invalid("Invalid limit: must be an integer between 1 and 100", "limit", "parameter_invalid_integer")
    return int(value)


def _template(kind: str) -> dict[str, Any]:
    template: dict[str, Any] = copy.deepcopy(_TEMPLATES[kind])
    return template


# Stripe's current sample objects (github.com/stripe/openapi, openapi/fixtures3.json at f6c2a48f, MIT),
# with the fixtures' placeholder values (a Link wallet, a Connect transfer, a pending update...) set to
# what a plain card payment has. Every one validates against the 2023-08-16 schemas except the fields
# Stripe has since removed (stripe-openapi-subset.json x-drift).
_TEMPLATES: Final[dict[str, dict[str, Any]]] = json.loads("""
{
 "charge": {
  "amount": 100,
  "amount_captured": 100,
  "amount_refunded": 0,
  "application": null,
  "application_fee": null,
  "application_fee_amount": null,
  "balance_transaction": "txn_1PgaxNB7WZ01zgkWEV3TLf40",
  "billing_details": {
   "address": {
    "city": null,
    "country": null,
    "line1": null,
    "line2": null,
    "postal_code": null,
    "state": null
   },
   "email": null,
   "name": null,
   "phone": null,
   "tax_id": null
  },
  "calculated_statement_descriptor": null,
  "captured": true,
  "created": 1234567890,
  "currency": "usd",
  "customer": null,
  "description": null,
  "disputed": false,
  "failure_balance_transaction": null,
  "failure_code": null,
  "failure_message": null,
  "fraud_details": {},
  "id": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
  "livemode": false,
  "metadata": {},
  "object": "charge",
  "on_behalf_of": null,
  "outcome": {
   "advice_code": null,
   "network_advice_code": null,
   "network_decline_code": null,
   "network_status": "approved_by_network",
   "reason": null,
   "risk_level": "normal",
   "risk_score": 32,
   "seller_message": "Payment complete.",
   "type": "authorized"
  },
  "paid": true,
  "payment_intent": null,
  "payment_method": "card_1PgaftB7WZ01zgkWm3waTcFp",
  "payment_method_details": {
   "card": {
    "amount_authorized": null,
    "authorization_code": null,
    "brand": "visa",
    "checks": {
     "address_line1_check": null,
     "address_postal_code_check": null,
     "cvc_check": "pass"
    },
    "country": "US",
    "exp_month": 8,
    "exp_year": 2030,
    "extended_authorization": {
     "status": "disabled"
    },
    "fingerprint": "AOB934RVNwzk6xtn",
    "funding": "credit",
    "incremental_authorization": {
     "status": "unavailable"
    },
    "installments": null,
    "last4": "4242",
    "mandate": null,
    "multicapture": {
     "status": "unavailable"
    },
    "network": "visa",
    "network_token": {
     "used": false
    },
    "network_transaction_id": null,
    "overcapture": {
     "maximum_amount_capturable": 100,
     "status": "unavailable"
    },
    "regulated_status": null,
    "three_d_secure": {
     "authentication_flow": null,
     "electronic_commerce_indicator": null,
     "exemption_indicator": null,
     "result": null,
     "result_reason": null,
     "transaction_id": null,
     "version": null
    },
    "transaction_link_id": null,
    "wallet": null
   },
   "type": "card"
  },
  "receipt_email": null,
  "receipt_number": null,
  "receipt_url": "https://pay.stripe.com/receipts/payment/standin",
  "refunded": false,
  "review": null,
  "shipping": {},
  "source_transfer": null,
  "statement_descriptor": null,
  "statement_descriptor_suffix": null,
  "status": "succeeded",
  "transfer_data": null,
  "transfer_group": null
 },
 "customer": {
  "address": {
   "city": null,
   "country": null,
   "line1": null,
   "line2": null,
   "postal_code": null,
   "state": null
  },
  "balance": 0,
  "created": 1234567890,
  "currency": "usd",
  "default_source": null,
  "delinquent": false,
  "description": null,
  "discount": null,
  "email": null,
  "id": "cus_QXg1o8vcGmoR32",
  "invoice_prefix": "STANDIN1",
  "invoice_settings": {
   "custom_fields": null,
   "default_payment_method": null,
   "footer": null,
   "rendering_options": {
    "amount_tax_display": null,
    "template": null
   }
  },
  "livemode": false,
  "metadata": {},
  "name": null,
  "next_invoice_sequence": 1,
  "object": "customer",
  "phone": null,
  "preferred_locales": [],
  "shipping": {},
  "tax_exempt": "none",
  "test_clock": null
 },
 "dispute": {
  "amount": 1000,
  "balance_transactions": [],
  "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
  "created": 1234567890,
  "currency": "usd",
  "enhanced_eligibility_types": [
   "visa_compelling_evidence_3"
  ],
  "evidence": {
   "access_activity_log": null,
   "billing_address": null,
   "cancellation_policy": null,
   "cancellation_policy_disclosure": null,
   "cancellation_rebuttal": null,
   "customer_communication": null,
   "customer_email_address": null,
   "customer_name": null,
   "customer_purchase_ip": null,
   "customer_signature": null,
   "duplicate_charge_documentation": null,
   "duplicate_charge_explanation": null,
   "duplicate_charge_id": null,
   "enhanced_evidence": {},
   "product_description": null,
   "receipt": null,
   "refund_policy": null,
   "refund_policy_disclosure": null,
   "refund_refusal_explanation": null,
   "service_date": null,
   "service_documentation": null,
   "shipping_address": null,
   "shipping_carrier": null,
   "shipping_date": null,
   "shipping_documentation": null,
   "shipping_tracking_number": null,
   "uncategorized_file": null,
   "uncategorized_text": null
  },
  "evidence_details": {
   "due_by": 1723679999,
   "enhanced_eligibility": {},
   "has_evidence": false,
   "past_due": false,
   "submission_count": 0
  },
  "id": "dp_1Pgc71B7WZ01zgkWMevJiAUx",
  "is_charge_refundable": true,
  "livemode": false,
  "metadata": {},
  "object": "dispute",
  "payment_intent": null,
  "payment_method_details": {
   "card": {
    "brand": "visa",
    "case_type": "inquiry",
    "network": "visa",
    "network_reason_code": "10.4"
   },
   "type": "card"
  },
  "reason": "general",
  "status": "warning_needs_response"
 },
 "invoice": {
  "account_country": "US",
  "account_name": null,
  "account_tax_ids": null,
  "amount_due": 1000,
  "amount_overpaid": 0,
  "amount_paid": 0,
  "amount_remaining": 1000,
  "amount_shipping": 0,
  "application": null,
  "attempt_count": 0,
  "attempted": false,
  "auto_advance": false,
  "automatic_tax": {
   "disabled_reason": null,
   "enabled": false,
   "liability": {
    "type": "account"
   },
   "provider": null,
   "status": null
  },
  "automatically_finalizes_at": null,
  "billing_reason": "manual",
  "collection_method": "charge_automatically",
  "created": 1234567890,
  "currency": "usd",
  "custom_fields": null,
  "customer": "cus_QXg1o8vcGmoR32",
  "customer_account": null,
  "customer_address": {
   "city": null,
   "country": null,
   "line1": null,
   "line2": null,
   "postal_code": null,
   "state": null
  },
  "customer_email": null,
  "customer_name": null,
  "customer_phone": null,
  "customer_shipping": {},
  "customer_tax_exempt": "none",
  "customer_tax_ids": [],
  "default_payment_method": null,
  "default_source": null,
  "default_tax_rates": [],
  "description": null,
  "discounts": [],
  "due_date": 1234567890,
  "effective_at": 1234567890,
  "ending_balance": null,
  "footer": null,
  "from_invoice": null,
  "hosted_invoice_url": null,
  "id": "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
  "invoice_pdf": null,
  "issuer": {
   "type": "self"
  },
  "last_finalization_error": null,
  "latest_revision": null,
  "lines": {
   "data": [
    {
     "amount": 1000,
     "currency": "usd",
     "description": "My First Invoice Item (created for API docs)",
     "discount_amounts": [],
     "discountable": true,
     "discounts": [],
     "id": "il_1Pgc6sB7WZ01zgkWFnxLrLCq",
     "invoice": "in_1Pgc6tB7WZ01zgkWu9fdqL6I",
     "livemode": false,
     "metadata": {},
     "object": "line_item",
     "parent": {
      "invoice_item_details": {
       "invoice_item": "ii_standin",
       "proration": false,
       "proration_details": {
        "credited_items": null
       },
       "subscription": null
      },
      "subscription_item_details": null,
      "type": "invoice_item_details"
     },
     "period": {
      "end": 1721954054,
      "start": 1721954054
     },
     "pretax_credit_amounts": null,
     "pricing": {
      "type": "price_details",
      "unit_amount_decimal": null
     },
     "quantity": 1,
     "quantity_decimal": null,
     "subscription": null,
     "subtotal": 1000,
     "taxes": null
    }
   ],
   "has_more": false,
   "object": "list",
   "url": "/v1/invoices/in_1Pgc6tB7WZ01zgkWu9fdqL6I/lines"
  },
  "livemode": false,
  "metadata": {},
  "next_payment_attempt": 1234567890,
  "number": null,
  "object": "invoice",
  "on_behalf_of": null,
  "parent": null,
  "payment_settings": {
   "default_mandate": null,
   "payment_method_options": {
    "acss_debit": {},
    "bancontact": {
     "preferred_language": "fr"
    },
    "card": {
     "request_three_d_secure": null
    },
    "customer_balance": {
     "funding_type": null
    },
    "konbini": {},
    "payto": {},
    "pix": {
     "amount_includes_iof": null
    },
    "sepa_debit": {},
    "upi": {},
    "us_bank_account": {}
   },
   "payment_method_types": null
  },
  "period_end": 1234567890,
  "period_start": 1234567890,
  "post_payment_credit_notes_amount": 0,
  "pre_payment_credit_notes_amount": 0,
  "receipt_number": null,
  "rendering": {
   "amount_tax_display": null,
   "pdf": {
    "page_size": null
   },
   "template": null,
   "template_version": null
  },
  "shipping_cost": null,
  "shipping_details": {},
  "starting_balance": 0,
  "statement_descriptor": null,
  "status": "draft",
  "status_transitions": {
   "finalized_at": null,
   "marked_uncollectible_at": null,
   "paid_at": null,
   "voided_at": null
  },
  "subtotal": 1000,
  "subtotal_excluding_tax": 1000,
  "test_clock": null,
  "total": 1000,
  "total_discount_amounts": [],
  "total_excluding_tax": 1000,
  "total_pretax_credit_amounts": null,
  "total_taxes": null,
  "webhooks_delivered_at": 1234567890
 },
 "payment_intent": {
  "amount": 1099,
  "amount_capturable": 0,
  "amount_details": {
   "tip": {}
  },
  "amount_received": 0,
  "application": null,
  "application_fee_amount": null,
  "automatic_payment_methods": {
   "enabled": true
  },
  "canceled_at": null,
  "cancellation_reason": null,
  "capture_method": "automatic",
  "client_secret": null,
  "confirmation_method": "automatic",
  "created": 1234567890,
  "currency": "usd",
  "customer": null,
  "customer_account": null,
  "description": null,
  "excluded_payment_method_types": null,
  "id": "pi_1PgafyB7WZ01zgkWSjxsAJo3",
  "last_payment_error": null,
  "latest_charge": null,
  "livemode": false,
  "managed_payments": {
   "enabled": false
  },
  "metadata": {},
  "next_action": null,
  "object": "payment_intent",
  "on_behalf_of": null,
  "payment_method": null,
  "payment_method_configuration_details": null,
  "payment_method_options": {},
  "payment_method_types": [
   "card"
  ],
  "processing": null,
  "receipt_email": null,
  "review": null,
  "setup_future_usage": null,
  "shipping": {},
  "source": null,
  "statement_descriptor": null,
  "statement_descriptor_suffix": null,
  "status": "succeeded",
  "transfer_data": null,
  "transfer_group": null
 },
 "refund": {
  "amount": 100,
  "balance_transaction": null,
  "charge": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
  "created": 1234567890,
  "currency": "usd",
  "customer": null,
  "customer_account": null,
  "destination_details": {
   "card": {
    "type": "reversal"
   },
   "type": "card"
  },
  "id": "re_1Pgc72B7WZ01zgkWqPvrRrPE",
  "metadata": {},
  "object": "refund",
  "payment_intent": null,
  "payment_method": null,
  "reason": null,
  "receipt_number": null,
  "source_transfer_reversal": null,
  "status": "succeeded",
  "transfer_reversal": null
 },
 "subscription": {
  "application": null,
  "application_fee_percent": null,
  "automatic_tax": {
   "disabled_reason": null,
   "enabled": false,
   "liability": {
    "type": "account"
   }
  },
  "billing_cycle_anchor": 1234567890,
  "billing_cycle_anchor_config": null,
  "billing_mode": {
   "flexible": {},
   "type": "classic"
  },
  "billing_schedules": [],
  "billing_thresholds": null,
  "cancel_at": null,
  "cancel_at_period_end": false,
  "canceled_at": null,
  "cancellation_details": {
   "comment": null,
   "feedback": null,
   "reason": null
  },
  "collection_method": "charge_automatically",
  "created": 1234567890,
  "currency": "usd",
  "customer": "cus_QXg1o8vcGmoR32",
  "customer_account": null,
  "days_until_due": null,
  "default_payment_method": null,
  "default_source": null,
  "default_tax_rates": [],
  "description": null,
  "discounts": [],
  "ended_at": null,
  "id": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
  "invoice_settings": {
   "account_tax_ids": null,
   "custom_fields": null,
   "description": null,
   "footer": null,
   "issuer": {
    "type": "self"
   }
  },
  "items": {
   "data": [
    {
     "billing_thresholds": null,
     "created": 1721954054,
     "current_period_end": 976287773,
     "current_period_start": 1896570518,
     "discounts": [],
     "id": "si_QXhVnC2h0Jczwc",
     "metadata": {},
     "object": "subscription_item",
     "price": {
      "active": true,
      "billing_scheme": "per_unit",
      "created": 1721948530,
      "currency": "usd",
      "custom_unit_amount": null,
      "id": "price_1PgafmB7WZ01zgkW6dKueIc5",
      "livemode": false,
      "lookup_key": null,
      "metadata": {},
      "nickname": null,
      "object": "price",
      "product": "prod_QXg1hqf4jFNsqG",
      "recurring": {
       "interval": "month",
       "interval_count": 1,
       "meter": null,
       "trial_period_days": null,
       "usage_type": "licensed"
      },
      "tax_behavior": "unspecified",
      "tiers_mode": null,
      "transform_quantity": null,
      "type": "recurring",
      "unit_amount": 2000,
      "unit_amount_decimal": "2000"
     },
     "quantity": 1,
     "subscription": "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
     "tax_rates": []
    }
   ],
   "has_more": false,
   "object": "list",
   "url": "/v1/subscription_items?subscription=sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
  },
  "latest_invoice": null,
  "livemode": false,
  "managed_payments": {
   "enabled": false
  },
  "metadata": {},
  "next_pending_invoice_item_invoice": null,
  "object": "subscription",
  "on_behalf_of": null,
  "pause_collection": null,
  "payment_settings": {
   "payment_method_options": {
    "acss_debit": {},
    "bancontact": {
     "preferred_language": "fr"
    },
    "card": {
     "network": null,
     "request_three_d_secure": null
    },
    "customer_balance": {
     "funding_type": null
    },
    "konbini": {},
    "payto": {},
    "pix": {},
    "sepa_debit": {},
    "upi": {},
    "us_bank_account": {}
   },
   "payment_method_types": null,
   "save_default_payment_method": null
  },
  "pending_invoice_item_interval": null,
  "pending_setup_intent": null,
  "pending_update": null,
  "schedule": null,
  "start_date": 1234567890,
  "status": "active",
  "test_clock": null,
  "transfer_data": null,
  "trial_end": null,
  "trial_settings": {
   "end_behavior": {
    "missing_payment_method": "create_invoice"
   }
  },
  "trial_start": null
 }
}
""")
