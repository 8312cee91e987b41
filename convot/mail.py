"""Outgoing mail over SMTP, and the catch-all SMTP server of development and tests.

* :class:`SmtpSender` speaks SMTP with the standard library's ``smtplib`` in a worker thread
  (plain, STARTTLS or implicit TLS; AUTH when a username is configured).
* :class:`Outbox` is a bounded queue with one worker task: request handlers enqueue and
  return at once (so answers never wait on, or reveal, mail delivery); failed sends are
  retried with backoff.  Logs name the mail's kind, never its recipient or content.
* :class:`CatchAllServer` is an `aiosmtpd` server on loopback that accepts every mail and keeps
  the last ones in memory (and optionally as ``.eml`` files in a folder): the admin API runs it
  in development (`convot up`), where ``/dev/mail`` shows them, and tests read them through
  :meth:`CatchAllServer.wait_for`.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import itertools
import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

log = logging.getLogger("convot.mail")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    kind: str = "mail"  # a label for logs and metrics (e.g. "verify_email"); never personal

    def __repr__(self) -> str:
        return f"<Mail {self.kind}>"

    def to_message(self, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = self.to
        msg["Subject"] = self.subject
        msg["Date"] = formatdate(localtime=False)
        domain = sender.rsplit("@", 1)[-1].strip(">") or "convot.localhost"
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.text)
        return msg


class SmtpSender:
    def __init__(self, smtp) -> None:
        self.settings = smtp

    def send_sync(self, mail: Mail) -> None:
        s = self.settings
        message = mail.to_message(s.sender)
        context = ssl.create_default_context()
        if s.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.security == "starttls":
                client.starttls(context=context)
            if s.username:
                client.login(s.username, s.password)
            client.send_message(message)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    async def send(self, mail: Mail) -> None:
        await asyncio.to_thread(self.send_sync, mail)


class Outbox:
    """Bounded queue of mails delivered by one background task."""

    def __init__(self, sender: SmtpSender, *, maxsize: int = 1000, attempts: int = 4, backoff: float = 0.5) -> None:
        self._sender = sender
        self._queue: asyncio.Queue[Mail] = asyncio.Queue(maxsize)
        self._attempts = attempts
        self._backoff = backoff
        self._task: asyncio.Task | None = None
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mail-outbox")

    def enqueue(self, mail: Mail) -> bool:
        """Queue a mail; False when the queue is full (the caller decides what that means)."""
        try:
            self._queue.put_nowait(mail)
        except asyncio.QueueFull:
            log.warning("mail queue full, mail dropped", extra={"kind": mail.kind})
            return False
        return True

    async def join(self) -> None:
        """Wait until every mail queued so far was delivered or given up."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            mail = await self._queue.get()
            try:
                await self._deliver(mail)
            finally:
                self._queue.task_done()

    async def _deliver(self, mail: Mail) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                await self._sender.send(mail)
            except (smtplib.SMTPException, OSError) as exc:
                if attempt == self._attempts:
                    self.failed += 1
                    log.error("mail not delivered", extra={"kind": mail.kind, "error": type(exc).__name__})
                    return
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            else:
                self.sent += 1
                log.info("mail sent", extra={"kind": mail.kind})
                return

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (up to ``drain_timeout`` seconds), then stop."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        except asyncio.TimeoutError:
            log.warning("mail queue not drained at shutdown", extra={"pending": self._queue.qsize()})
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None


# --- catch-all server -------------------------------------------------------------------------

@dataclass(frozen=True)
class CaughtMail:
    id: int
    mail_from: str
    to: tuple[str, ...]
    subject: str
    text: str
    received_at: float = field(default_factory=time.time)


class _Handler:
    def __init__(self, server: "CatchAllServer") -> None:
        self._server = server

    async def handle_DATA(self, _smtp, _session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        self._server._store(envelope.mail_from, tuple(envelope.rcpt_tos), str(message.get("Subject", "")), text,
                            envelope.original_content or envelope.content)
        return "250 OK"


class CatchAllServer:
    """Accept every mail on ``host:port`` (loopback only) and keep the last ``keep`` of them."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, folder: Path | None = None, keep: int = 500) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the catch-all SMTP server listens on loopback only")
        self.host, self.port = host, port
        self.folder = folder
        self._mails: collections.deque[CaughtMail] = collections.deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        # aiosmtpd logs protocol lines at debug level: they would carry mail content (tokens).
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="convot-catch-all", loop=loop, data_size_limit=1 << 20),
            self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _store(self, mail_from: str, to: tuple[str, ...], subject: str, text: str, raw: bytes) -> None:
        caught = CaughtMail(next(self._ids), mail_from, to, subject, text)
        self._mails.append(caught)
        if self.folder is not None:
            path = self.folder / f"{int(caught.received_at)}-{caught.id:06d}.eml"
            path.write_bytes(raw)
        self._changed.set()
        self._changed = asyncio.Event()

    def messages(self) -> list[CaughtMail]:
        return list(self._mails)

    def clear(self) -> None:
        self._mails.clear()

    async def wait_for(self, predicate: Callable[[CaughtMail], bool], timeout: float = 10.0) -> CaughtMail:
        """The first caught mail matching ``predicate``, waiting for it if needed."""

        async def wait() -> CaughtMail:
            while True:
                for mail in self._mails:
                    if predicate(mail):
                        return mail
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)
