"""The stand-in servers over real HTTP, driven by the same clients the product uses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot.standins import MoonClerkStandIn, PoofStandIn, SlackStandIn
from bot.standins.moonclerk import ACCEPT, customer_fixture, payment_fixture
from bot.standins.poof import webhook_fixture

CHANNEL = "C0FINANCE"
BOT_TOKEN = "xoxb-test"


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(usergroups={"S0APPROVERS": ["U0ALICE", "U0BOB"]}, revoked_tokens={"xoxb-revoked"}) as s:
        yield s


def web_client(slack: SlackStandIn, token: str = BOT_TOKEN, **kwargs: Any) -> WebClient:
    return WebClient(token=token, base_url=f"{slack.url}/api/", timeout=5, **kwargs)


@pytest.fixture
def moonclerk() -> Iterator[MoonClerkStandIn]:
    with MoonClerkStandIn(api_key="mc-key") as m:
        yield m


def mc_client(m: MoonClerkStandIn, key: str = "mc-key", accept: str = ACCEPT) -> httpx.Client:
    return httpx.Client(base_url=m.url, headers={"Authorization": f"Token token={key}", "Accept": accept}, timeout=5)


@pytest.fixture
def poof() -> Iterator[PoofStandIn]:
    with PoofStandIn(api_key="poof-key", balance="10") as p:
        yield p


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    # One client per test: building a fresh SSL context for every httpx.post() adds up.
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def no_retry_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    # RateLimitErrorRetryHandler sleeps Retry-After + random(); drop the jitter to keep tests fast.
    monkeypatch.setattr("slack_sdk.http_retry.builtin_handlers.random.random", lambda: 0.0)


def poof_post(http: httpx.Client, p: PoofStandIn, path: str, body: Any, key: str = "poof-key") -> httpx.Response:
    return http.post(f"{p.url}{path}", json=body, headers={"Authorization": key})


def decimal_json(response: httpx.Response) -> Any:
    return json.loads(response.content, parse_float=Decimal)


# --------------------------------------------------------------------------- base behaviour


def test_lifecycle_url_and_request_log() -> None:
    standin = SlackStandIn()
    with pytest.raises(RuntimeError):
        _ = standin.url
    with standin:
        assert standin.url.startswith("http://127.0.0.1:")
        assert standin.port > 0
        httpx.post(f"{standin.url}/api/auth.test", headers={"Authorization": "Bearer xoxb-x"}, timeout=5)
        (record,) = standin.calls("auth.test")
        assert record.method == "POST"
        assert record.path == "/api/auth.test"
        assert record.headers["authorization"] == "Bearer xoxb-x"
        url = standin.url
    assert not standin.running
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/api/auth.test", timeout=1)


def test_wait_for_sees_requests_from_other_threads_and_times_out_helpfully(slack: SlackStandIn) -> None:
    client = web_client(slack)
    worker = threading.Thread(target=lambda: client.chat_postMessage(channel=CHANNEL, text="later"))
    worker.start()
    found = slack.wait_for(lambda r: r.path.endswith("chat.postMessage"))
    worker.join()
    assert found[0].json == {"channel": CHANNEL, "text": "later"}

    with pytest.raises(TimeoutError, match=r"views\.open.*saw 1 request"):
        slack.wait_for("views.open", timeout=0.05)


def test_fail_next_queues_canned_responses_then_recovers(slack: SlackStandIn) -> None:
    client = web_client(slack)
    slack.fail_next("chat.postMessage", 500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel=CHANNEL, text="x")
        assert err.value.response.status_code == 500
        assert err.value.response["error"] == "fatal_error"
    assert client.chat_postMessage(channel=CHANNEL, text="x")["ok"] is True
    assert len(slack.calls("/api/chat.postMessage")) == 3
    assert slack.status_count(500) == 2


def test_delay_makes_a_path_slow_enough_to_time_out(poof: PoofStandIn, http: httpx.Client) -> None:
    poof.delay("/api/v2/payouts", 0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.post(
            f"{poof.url}/api/v2/payouts",
            json={"amount": "1", "crypto": "solana", "address": "addr"},
            headers={"Authorization": "poof-key"},
            timeout=0.1,
        )
    # The upstream still completes the payout after the client gave up: the ambiguous case
    # the product must not blindly retry.
    poof.wait_until(lambda: poof.payout_count == 1, 2.0, "payout never completed")
    poof.delay("/api/v2/payouts", None)
    assert poof_post(http, poof, "/api/v1/fetch_transactions", {}).json()[0]["paid"] == "payout"


# --------------------------------------------------------------------------- Slack


def test_slack_auth_test_and_token_checks(slack: SlackStandIn) -> None:
    auth = web_client(slack).auth_test()
    assert auth["user_id"] == "U0BOT"
    assert auth["team_id"] == "T0FIN"
    assert auth["bot_id"] == "B0BOT"
    for token, error in (("xoxb-revoked", "invalid_auth"), ("xoxp-user", "invalid_auth")):
        with pytest.raises(SlackApiError) as err:
            web_client(slack, token=token).auth_test()
        assert err.value.response["error"] == error
    bare = httpx.post(f"{slack.url}/auth.test", timeout=5).json()
    assert bare == {"ok": False, "error": "not_authed"}


def test_slack_post_update_history_and_threads(slack: SlackStandIn) -> None:
    client = web_client(slack)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Refund* $49.99"}}]
    metadata = {"event_type": "finance_case", "event_payload": {"case_id": "case-1"}}
    first = client.chat_postMessage(channel=CHANNEL, text="Refund request", blocks=blocks, metadata=metadata)
    second = client.chat_postMessage(channel=CHANNEL, text="second")
    assert first["channel"] == CHANNEL
    assert first["message"]["blocks"] == blocks
    assert first["message"]["metadata"] == metadata
    assert float(second["ts"]) > float(first["ts"])

    reply = client.chat_postMessage(channel=CHANNEL, text="escalated", thread_ts=first["ts"])
    assert reply["message"]["thread_ts"] == first["ts"]

    updated = client.chat_update(channel=CHANNEL, ts=first["ts"], text="Refund approved", blocks=[])
    assert updated["text"] == "Refund approved"
    assert slack.message(CHANNEL, first["ts"])["text"] == "Refund approved"
    assert slack.message(CHANNEL, first["ts"])["metadata"] == metadata

    with pytest.raises(SlackApiError) as err:
        client.chat_update(channel=CHANNEL, ts="1.000001", text="nope")
    assert err.value.response["error"] == "message_not_found"

    history = client.conversations_history(channel=CHANNEL, include_all_metadata=True, limit=10)
    assert [m["text"] for m in history["messages"]] == ["second", "Refund approved"]
    assert history["messages"][1]["metadata"] == metadata
    assert history["messages"][1]["reply_count"] == 1
    assert history["has_more"] is False

    page = client.conversations_history(channel=CHANNEL, limit=1)
    assert page["has_more"] is True
    assert [m["text"] for m in page["messages"]] == ["second"]

    thread = client.conversations_replies(channel=CHANNEL, ts=first["ts"])
    assert [m["text"] for m in thread["messages"]] == ["Refund approved", "escalated"]
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["Refund approved", "second"]
    assert len(slack.thread(CHANNEL, first["ts"])) == 2


def test_slack_history_and_replies_page_by_cursor_and_return_metadata_only_when_asked(slack: SlackStandIn) -> None:
    client = web_client(slack)
    metadata = {"event_type": "finance_desk_outbox", "event_payload": {"outbox_key": "card:1"}}
    card = client.chat_postMessage(channel=CHANNEL, text="card", metadata=metadata)["ts"]
    for n in range(5):
        slack.add_message(CHANNEL, f"chatter {n}")
        client.chat_postMessage(channel=CHANNEL, text=f"reply {n}", thread_ts=card, metadata=metadata)
    assert "metadata" not in client.conversations_history(channel=CHANNEL, limit=999)["messages"][-1]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.conversations_history(channel=CHANNEL, limit=2, include_all_metadata=True, cursor=cursor)
        seen += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        # A message posted between two pages never shifts what the next page holds.
        slack.add_message(CHANNEL, "late")
        if not page["has_more"]:
            break
        assert cursor and not cursor.isdigit()  # opaque, as Slack's are
    assert seen == [f"chatter {n}" for n in reversed(range(5))] + ["card"]
    assert page["messages"][-1]["metadata"] == metadata
    # oldest bounds both methods; the thread's parent always comes first.
    fourth = slack.thread(CHANNEL, card)[3]["ts"]
    thread = client.conversations_replies(channel=CHANNEL, ts=card, oldest=fourth, include_all_metadata=True)
    assert [m["text"] for m in thread["messages"]] == ["card", "reply 3", "reply 4"]
    assert thread["messages"][1]["metadata"] == metadata
    assert "metadata" not in client.conversations_replies(channel=CHANNEL, ts=card)["messages"][1]
    with pytest.raises(SlackApiError) as err:
        client.conversations_history(channel=CHANNEL, cursor="not-a-cursor")
    assert err.value.response["error"] == "invalid_cursor"


def test_slack_can_lose_an_answer_after_doing_the_work(slack: SlackStandIn) -> None:
    client = web_client(slack, retry_handlers=[])
    slack.lose_answers("chat.postMessage")
    with pytest.raises(Exception, match="without response"):
        client.chat_postMessage(channel=CHANNEL, text="page")
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["page"]  # it was posted all the same
    assert client.chat_postMessage(channel=CHANNEL, text="next")["ok"]  # only the next call lost its answer


def test_slack_accepts_form_bodies_with_json_encoded_values(slack: SlackStandIn) -> None:
    blocks = [{"type": "divider"}]
    response = httpx.post(
        f"{slack.url}/chat.postMessage",
        data={"channel": CHANNEL, "text": "form", "blocks": json.dumps(blocks)},
        headers={"Authorization": "Bearer xoxb-form"},
        timeout=5,
    ).json()
    assert response["ok"] is True
    assert slack.messages(CHANNEL)[0]["blocks"] == blocks


def test_slack_validation_and_channel_errors(slack: SlackStandIn) -> None:
    client = web_client(slack)
    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.postMessage", json={"channel": CHANNEL})
    assert err.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "divider"}] * 51)
    assert err.value.response["error"] == "invalid_blocks"

    slack.set_channel_error("C0GONE", "channel_not_found")
    slack.set_channel_error("C0PRIVATE", "not_in_channel")
    for channel, error in (("C0GONE", "channel_not_found"), ("C0PRIVATE", "not_in_channel")):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel=channel, text="x")
        assert err.value.response.status_code == 200
        assert err.value.response["error"] == error
    slack.set_channel_error("C0GONE", None)
    assert client.chat_postMessage(channel="C0GONE", text="back")["ok"]

    strict = SlackStandIn(known_channels={CHANNEL})
    with strict, pytest.raises(SlackApiError) as err:
        web_client(strict).chat_postMessage(channel="C0OTHER", text="x")
    assert err.value.response["error"] == "channel_not_found"

    with pytest.raises(SlackApiError) as err:
        client.api_call("chat.scheduleMessage", json={"channel": CHANNEL, "text": "x", "post_at": 1})
    assert err.value.response["error"] == "unknown_method"


def test_slack_rate_limit_returns_429_with_retry_after() -> None:
    # A frozen clock keeps the bucket from refilling mid-test on a slow machine.
    with SlackStandIn(enforce_rate_limit=True, clock=lambda: 0.0) as slack:
        client = web_client(slack)
        for i in range(3):
            client.chat_postMessage(channel=CHANNEL, text=f"burst {i}")
        # The bucket is per channel: another channel still has its burst.
        client.chat_postMessage(channel="C0OTHER", text="elsewhere")
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel=CHANNEL, text="one too many")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["retry-after"] == "1"
        assert err.value.response["error"] == "ratelimited"
        assert slack.rate_limited_count == 1
        assert len(slack.messages(CHANNEL)) == 3


def test_slack_rate_limit_refills_over_time() -> None:
    now = [100.0]
    with SlackStandIn(
        enforce_rate_limit=True, rate_limit_burst=1, rate_limit_per_second=2.0, clock=lambda: now[0]
    ) as s:
        client = web_client(s)
        client.chat_postMessage(channel=CHANNEL, text="a")
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel=CHANNEL, text="b")
        now[0] += 0.5
        assert client.chat_postMessage(channel=CHANNEL, text="c")["ok"]
        assert s.rate_limited_count == 1


def test_slack_sdk_retry_handler_retries_after_429(slack: SlackStandIn, no_retry_jitter: None) -> None:
    slack.enforce_rate_limit = True
    slack.rate_limit_burst = 1
    client = web_client(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    client.chat_postMessage(channel=CHANNEL, text="first")
    started = time.monotonic()
    assert client.chat_postMessage(channel=CHANNEL, text="second")["ok"] is True
    assert time.monotonic() - started >= 1.0  # the SDK honoured Retry-After: 1
    assert slack.rate_limited_count == 1
    assert [m["text"] for m in slack.messages(CHANNEL)] == ["first", "second"]
    assert len(slack.calls("chat.postMessage")) == 3


def test_slack_injected_429_is_retried_by_the_sdk(slack: SlackStandIn, no_retry_jitter: None) -> None:
    slack.retry_after = 0
    slack.fail_next("chat.update", 429)
    client = web_client(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    ts = client.chat_postMessage(channel=CHANNEL, text="v1")["ts"]
    assert client.chat_update(channel=CHANNEL, ts=ts, text="v2")["ok"]
    assert slack.message(CHANNEL, ts)["text"] == "v2"
    assert slack.rate_limited_count == 1


def test_slack_ephemeral_views_users_and_response_url(slack: SlackStandIn) -> None:
    client = web_client(slack)
    eph = client.chat_postEphemeral(channel=CHANNEL, user="U0ALICE", text="only you")
    assert eph["message_ts"]
    assert slack.ephemerals[0]["user"] == "U0ALICE"
    assert slack.messages(CHANNEL) == []

    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Loading"}, "blocks": []}
    opened = client.views_open(trigger_id="123.456.abc", view=modal)["view"]
    assert opened["id"].startswith("V")
    done = {**modal, "title": {"type": "plain_text", "text": "Customer"}}
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=done)["view"]
    assert updated["title"]["text"] == "Customer"
    with pytest.raises(SlackApiError) as err:
        client.views_update(view_id=opened["id"], hash=opened["hash"], view=done)
    assert err.value.response["error"] == "hash_conflict"
    slack.expire_trigger("old.trigger")
    with pytest.raises(SlackApiError) as err:
        client.views_open(trigger_id="old.trigger", view=modal)
    assert err.value.response["error"] == "expired_trigger_id"
    assert client.views_push(trigger_id="123.456.def", view=modal)["ok"]

    home = {"type": "home", "blocks": [{"type": "divider"}]}
    client.views_publish(user_id="U0ALICE", view=home)
    assert slack.home_views["U0ALICE"]["blocks"] == home["blocks"]

    user = client.users_info(user="U0ALICE")["user"]
    assert user["tz"] == "America/New_York"
    assert user["tz_offset"] == -18000
    assert "@" in user["profile"]["email"]
    assert client.usergroups_users_list(usergroup="S0APPROVERS")["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError):
        client.usergroups_users_list(usergroup="S0NOPE")

    url = slack.response_url("cmd-1")
    assert httpx.post(url, json={"response_type": "ephemeral", "text": "Looking up…"}, timeout=5).text == "ok"
    assert slack.responses == [{"response_type": "ephemeral", "text": "Looking up…"}]
    assert slack.responses_for("cmd-1") == slack.responses


def test_slack_wait_for_messages(slack: SlackStandIn) -> None:
    client = web_client(slack)
    threading.Thread(target=lambda: client.chat_postMessage(channel=CHANNEL, text="async")).start()
    assert slack.wait_for_messages(CHANNEL)[0]["text"] == "async"
    with pytest.raises(TimeoutError, match="wanted 2 message"):
        slack.wait_for_messages(CHANNEL, count=2, timeout=0.05)


# --------------------------------------------------------------------------- MoonClerk


def test_moonclerk_pages_25_customers_with_count_10() -> None:
    with MoonClerkStandIn(api_key="mc-key", seed=False) as m:
        added = [m.add_customer(name=f"Customer {i}") for i in range(25)]
        assert len({c["id"] for c in added}) == 25
        pages: list[list[dict[str, Any]]] = []
        with mc_client(m) as client:
            offset = 0
            while True:
                response = client.get("/customers", params={"count": 10, "offset": offset})
                assert response.status_code == 200
                assert list(response.json()) == ["customers"]  # no paging metadata in the envelope
                page = response.json()["customers"]
                pages.append(page)
                if len(page) < 10:
                    break
                offset += 10
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [c["name"] for p in pages for c in p] == [f"Customer {i}" for i in range(25)]
        assert len(m.calls("/customers")) == 3


def test_moonclerk_auth_accept_and_not_found(moonclerk: MoonClerkStandIn) -> None:
    with mc_client(moonclerk, key="wrong") as client:
        response = client.get("/customers")
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "Invalid API key"}}
    with mc_client(moonclerk, accept="application/json") as client:
        assert client.get("/customers").status_code == 406
    bare = httpx.get(f"{moonclerk.url}/customers", timeout=5)
    assert bare.status_code == 401
    with mc_client(moonclerk) as client:
        assert client.get("/customers/999").status_code == 404
        assert client.get("/customers/999").json() == {"error": {"message": "Not found"}}
        assert client.get("/plans").status_code == 404
        assert client.get("/customers", params={"count": 101}).status_code == 400


def test_moonclerk_fixtures_and_filters(moonclerk: MoonClerkStandIn) -> None:
    with mc_client(moonclerk) as client:
        assert client.get("/customers/523425").json() == {"customer": customer_fixture()}
        assert client.get("/payments/1348394").json() == {"payment": payment_fixture()}
        assert client.get("/forms").json()["forms"][0]["id"] == 234456

        late = moonclerk.add_customer(status="past_due", form_id=7)
        assert late["subscription"]["plan"]["amount"] == 1200  # nested fixture fields survive
        past_due = client.get("/customers", params={"status": "past_due"}).json()["customers"]
        assert [c["id"] for c in past_due] == [late["id"]]
        assert len(client.get("/customers", params={"form_id": 7}).json()["customers"]) == 1

        refund = moonclerk.add_payment(
            customer_id=late["id"], status="refunded", amount_refunded=1000, date="2024-03-31T23:59:59Z"
        )
        moonclerk.add_payment(customer_id=late["id"], date="2024-04-01T00:00:00Z")
        by_customer = client.get("/payments", params={"customer_id": late["id"]}).json()["payments"]
        assert [p["date"][:10] for p in by_customer] == ["2024-04-01", "2024-03-31"]  # newest first
        march = client.get("/payments", params={"date_from": "2024-03-31", "date_to": "2024-03-31"}).json()
        assert [p["id"] for p in march["payments"]] == [refund["id"]]
        refunded = client.get("/payments", params={"status": "refunded"}).json()["payments"]
        assert [p["id"] for p in refunded] == [refund["id"]]
        assert client.get("/payments", params={"date_from": "31/03/2024"}).status_code == 400


def test_moonclerk_fault_injection(moonclerk: MoonClerkStandIn) -> None:
    moonclerk.fail_next("/payments", 429)
    moonclerk.fail_next("/payments", 503)
    with mc_client(moonclerk) as client:
        assert client.get("/payments").status_code == 429
        assert client.get("/payments").status_code == 503
        assert client.get("/payments").status_code == 200


# --------------------------------------------------------------------------- Poof


def test_poof_invoice_transaction_and_mark_paid(poof: PoofStandIn, http: httpx.Client) -> None:
    invoice = poof_post(
        http,
        poof,
        "/api/v1/create_fiat_invoice",
        {
            "amount": "49.99",
            "payment": "cashapp",
            "currency": "usd",
            "redirect_url": "https://example.com/cancel",
            "success_url": "https://example.com/ok",
            "metadata": {"case_id": "case-1"},
        },
    )
    assert invoice.status_code == 200
    body = invoice.json()
    assert body["amount"] == "49.99"
    assert body["payment_link"] == f"{poof.url}/checkout/session/{body['payment_id']}"
    assert poof.invoice_count == 1
    assert http.get(body["payment_link"]).status_code == 200

    pending = poof_post(http, poof, "/api/v1/transaction", {"transaction": body["payment_id"]}).json()
    assert pending["paid"] == "no"
    assert pending["amount"] == "49.99"
    assert pending["metadata"]["external"] == {"case_id": "case-1"}
    assert set(webhook_fixture()) - {"x-poof-signature"} <= set(pending)

    poof.mark_paid(body["payment_id"])
    paid = poof_post(http, poof, "/api/v1/transaction", {"transaction": body["payment_id"]}).json()
    assert paid["paid"] == "yes"

    hook = poof.webhook_payload(body["payment_id"], "shh")
    assert hook["x-poof-signature"] == "shh"
    assert hook["paid"] == "yes"

    missing = poof_post(http, poof, "/api/v1/transaction", {"transaction": "nope"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "transaction not found"}


def test_poof_payouts_balances_and_counters(poof: PoofStandIn, http: httpx.Client) -> None:
    first = poof_post(http, poof, "/api/v2/payouts", {"amount": 0.1, "crypto": "solana", "address": "Abc"})
    assert first.status_code == 200
    assert decimal_json(first)["remaining_balance"] == "9.9"
    second = poof_post(http, poof, "/api/v1/payouts", {"amount": "0.2", "crypto": "solana", "address": "Abc"})
    assert second.json()["remaining_balance"] == "9.7"
    assert poof.payout_count == 2
    assert poof.invoice_count == 0
    assert poof.balance("solana") == Decimal("9.7")

    record = poof.transaction(second.json()["transaction_id"])
    assert record["paid"] == "payout"
    assert record["amount"] == "0.2"

    listed = poof_post(http, poof, "/api/v1/fetch_transactions", {}).json()
    assert isinstance(listed, list)
    assert [t["transaction"] for t in listed] == [
        first.json()["transaction_id"],
        second.json()["transaction_id"],
    ]

    balance = poof_post(http, poof, "/api/v2/balance", {"crypto": "solana"}).json()
    assert balance == {"balance": "9.7", "crypto": "solana"}

    too_much = poof_post(http, poof, "/api/v2/payouts", {"amount": "100", "crypto": "solana", "address": "Abc"})
    assert too_much.status_code == 400
    assert poof.payout_count == 2


def test_poof_auth_and_validation(poof: PoofStandIn, http: httpx.Client) -> None:
    denied = poof_post(http, poof, "/api/v1/create_fiat_invoice", {"amount": "1"}, key="Bearer poof-key")
    assert denied.status_code == 401
    assert denied.text == "invalid authorization"
    assert poof.invoice_count == 0
    float_amount = poof_post(
        http, poof, "/api/v1/create_fiat_invoice", {"amount": 1.5, "payment": "paypal", "currency": "usd"}
    )
    assert float_amount.status_code == 400
    assert "invalid" in float_amount.text
    assert http.get(f"{poof.url}/api/v1/transaction").status_code == 405

    poof.fail_next("/api/v2/payouts", 500)
    failed = poof_post(http, poof, "/api/v2/payouts", {"amount": "1", "crypto": "solana", "address": "Abc"})
    assert failed.status_code == 500
    assert poof.payout_count == 0
    assert poof.errors == []
