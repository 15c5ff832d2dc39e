"""The SMTP sender: one message to one recipient, over TLS with the server's certificate verified.

`SMTP_URL` says how to reach the server: `smtp://user:password@host:587` (STARTTLS, required),
`smtps://user:password@host:465` (TLS from the first byte), or a plain `smtp://host:25` that is only
accepted for a loopback host (a local relay or mail sink). The password never leaves this module: the
URL is parsed once into `SmtpTarget` (the password a SecretStr), and no error text built here quotes it.

Sending is split at the one point that matters for "exactly once": the end of the message data (the
final `.`). Before it, the server cannot have accepted the message and any failure may be retried
(`Temporary`); after it, a lost connection leaves the outcome unknown (`InDoubt`), and the caller is
told just before that point (`on_commit`) so it can record that it may be past it.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_ANSWER_BUDGET = 300


class SmtpMode(StrEnum):
    STARTTLS = "starttls"  # smtp:// to any host other than a loopback one
    TLS = "tls"  # smtps://
    LOOPBACK = "loopback"  # smtp:// to 127.0.0.1, ::1 or localhost: STARTTLS when offered, else plain


@dataclass(frozen=True)
class SmtpTarget:
    mode: SmtpMode
    host: str
    port: int
    username: str | None
    password: SecretStr | None

    def describe(self) -> str:
        """Where mail goes, for logs and `config check`: never the credentials."""
        return f"{'smtps' if self.mode is SmtpMode.TLS else 'smtp'}://{self.host}:{self.port} ({self.mode})"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpTarget:
    """The target an SMTP_URL names; ValueError with a reason that never quotes the URL (it holds a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a URL; use smtp://user:password@host:587 or smtps://user:password@host:465") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must start with smtp:// (STARTTLS) or smtps:// (TLS)")
    host = parts.hostname
    if not host:
        raise ValueError("names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be only smtp[s]://user:password@host:port, with no path or query")
    loopback = SmtpMode.LOOPBACK if is_loopback(host) else SmtpMode.STARTTLS
    mode = SmtpMode.TLS if parts.scheme == "smtps" else loopback
    username = unquote(parts.username) if parts.username else None
    password = SecretStr(unquote(parts.password)) if parts.password else None
    if (username is None) != (password is None) and mode is not SmtpMode.LOOPBACK:
        raise ValueError("give both the user name and the password, or neither")
    return SmtpTarget(mode=mode, host=host, port=port or (465 if mode is SmtpMode.TLS else 587),
                      username=username, password=password)


class MailError(Exception):
    """A send that did not complete; str() is safe to show on a card (the server's own answer)."""


class Temporary(MailError):
    """A 4xx answer or a connection problem before the message data ended: retrying is safe."""


class Permanent(MailError):
    """A 5xx answer, a refused login or an untrusted certificate: retrying alone will not help."""


class InDoubt(MailError):
    """The connection was lost after the whole message was sent: the server may have accepted it."""


def _answer(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(message.split())}"[:_ANSWER_BUDGET]


def _raise_for(code: int, text: bytes | str, doing: str) -> None:
    answer = _answer(code, text)
    if 400 <= code < 500:
        raise Temporary(f"the mail server answered {doing} with {answer}")
    raise Permanent(f"the mail server answered {doing} with {answer}")


def message_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF line ends, a leading dot doubled, the final `.` line."""
    data = message.as_bytes(policy=SMTP_POLICY)
    data = _DOT_AT_LINE_START.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class SmtpSender:
    """Sends one message per connection: simple, and a connection problem can never mix two messages."""

    name = "smtp"

    def __init__(self, target: SmtpTarget, *, timeout: float = 30.0, ca_file: str | None = None) -> None:
        self.target = target
        self.timeout = timeout
        # The system's trust store (or `ca_file`), with host name checking: never an unverified context.
        self.tls = ssl.create_default_context(cafile=ca_file)

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        if target.mode is SmtpMode.TLS:
            return smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout, context=self.tls)
        smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout)
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls(context=self.tls)
            smtp.ehlo()
        elif target.mode is SmtpMode.STARTTLS:
            smtp.close()
            raise Permanent(f"{target.host} does not offer STARTTLS; refusing to send credentials or mail in clear")
        return smtp

    def send(self, message: EmailMessage, sender: str, recipient: str,
             on_commit: Callable[[], None] = lambda: None) -> str:
        """Send `message`; returns the server's answer (e.g. "250 2.0.0 OK queued as …").

        `on_commit` runs right before the end of the data is sent: from then on a failure is `InDoubt`.
        """
        committed = completed = False
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._connect()
            if self.target.username and self.target.password:
                smtp.login(self.target.username, self.target.password.get_secret_value())
            code, text = smtp.mail(sender)
            if code != 250:
                _raise_for(code, text, "MAIL FROM")
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                _raise_for(code, text, "RCPT TO")
            smtp.putcmd("data")
            code, text = smtp.getreply()
            if code != 354:
                _raise_for(code, text, "DATA")
            data = message_bytes(message)
            on_commit()
            committed = True
            smtp.send(data)
            code, text = smtp.getreply()
            if code != 250:
                _raise_for(code, text, "the message")
            answer = _answer(code, text)
            completed = True
        except MailError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise Permanent(f"the mail server refused the login: {_answer(exc.smtp_code, exc.smtp_error)}") from None
        except smtplib.SMTPResponseException as exc:
            if committed:
                raise InDoubt(f"unclear answer after the message was sent: {_answer(exc.smtp_code, exc.smtp_error)}"
                              ) from None
            _raise_for(exc.smtp_code, exc.smtp_error, "the connection")
            raise  # unreachable: _raise_for always raises
        except ssl.SSLCertVerificationError as exc:
            raise Permanent(f"the mail server's TLS certificate is not trusted ({exc.verify_message})") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            what = exc.__class__.__name__
            if committed:
                raise InDoubt(f"the connection was lost after the message was sent ({what}); the server may "
                              "have accepted it") from None
            raise Temporary(f"could not reach the mail server {self.target.host}:{self.target.port} ({what})"
                            ) from None
        finally:
            if smtp is not None and not completed:
                smtp.close()  # mid-conversation a QUIT would only wait for an answer that is not coming
        assert smtp is not None
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()  # the message was accepted: a failed goodbye changes nothing
        return answer
