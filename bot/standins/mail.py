"""A local mail sink: a real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepts.

`finance-desk demo` points SMTP_URL at it (`smtp://127.0.0.1:<port>`: plain SMTP, which the app
accepts for a loopback host only), so the email path runs end to end without a mail provider.
"""

from __future__ import annotations

import socket
import threading
import time
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from types import TracebackType
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession


class _Keep:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        content = envelope.content or b""
        raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else bytes(content)
        self.sink._accepted(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], raw)
        return "250 2.0.0 OK queued by the local mail sink"


class MailSink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []  # (envelope sender, recipients, raw message)
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = 0

    def _accepted(self, sender: str, recipients: list[str], raw: bytes) -> None:
        with self._lock:
            self.messages.append((sender, recipients, raw))

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> Self:
        with socket.socket() as probe:  # aiosmtpd needs a port number up front
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._controller = Controller(_Keep(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[EmailMessage]:
        with self._lock:
            raws = [raw for _, _, raw in self.messages]
        return [message_from_bytes(raw, _class=EmailMessage, policy=DEFAULT_POLICY) for raw in raws]

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the mail sink received {len(self.messages)} of {count} messages")
            time.sleep(0.05)
        return self.received()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
