"""Outgoing mail over real SMTP to the catch-all server."""

import asyncio
import logging

import pytest

from convot.config import load_config
from convot.embedded import free_port
from convot.mail import CatchAllServer, Mail, Outbox, SmtpSender


def smtp_settings(port: int):
    return load_config(env={}).replace(smtp={"port": port}).smtp


async def test_a_mail_travels_over_smtp_to_the_catch_all(tmp_path):
    server = CatchAllServer(port=0, folder=tmp_path)
    await server.start()
    try:
        await SmtpSender(smtp_settings(server.port)).send(
            Mail("ana@example.com", "Hello there", "Line one\nhttps://example.com/#token=abc\n", kind="test"))
        mail = await server.wait_for(lambda m: m.subject == "Hello there")
        assert mail.to == ("ana@example.com",)
        assert "no-reply@convot.localhost" in mail.mail_from
        assert "https://example.com/#token=abc" in mail.text
        files = list(tmp_path.glob("*.eml"))
        assert len(files) == 1 and b"Subject: Hello there" in files[0].read_bytes()
    finally:
        await server.close()


async def test_the_outbox_delivers_in_the_background_and_logs_no_address(caplog):
    server = CatchAllServer(port=0)
    await server.start()
    outbox = Outbox(SmtpSender(smtp_settings(server.port)))
    outbox.start()
    try:
        with caplog.at_level(logging.DEBUG):
            for i in range(3):
                assert outbox.enqueue(Mail(f"user{i}@example.com", f"n{i}", "secret body text", kind="test"))
            await asyncio.wait_for(outbox._queue.join(), 10)
        assert sorted(m.subject for m in server.messages()) == ["n0", "n1", "n2"]
        assert outbox.sent == 3
        logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
        assert "example.com" not in logged and "secret body text" not in logged
    finally:
        await outbox.close()
        await server.close()


async def test_an_unreachable_relay_is_retried_then_counted_as_failed():
    outbox = Outbox(SmtpSender(smtp_settings(free_port())), attempts=2, backoff=0.01)
    outbox.start()
    try:
        outbox.enqueue(Mail("ana@example.com", "s", "t"))
        await asyncio.wait_for(outbox._queue.join(), 20)
        assert (outbox.sent, outbox.failed) == (0, 1)
    finally:
        await outbox.close()


async def test_a_full_queue_refuses_instead_of_growing():
    outbox = Outbox(SmtpSender(smtp_settings(free_port())), maxsize=1)
    assert outbox.enqueue(Mail("a@example.com", "1", "x"))
    assert not outbox.enqueue(Mail("a@example.com", "2", "x"))


def test_the_catch_all_listens_on_loopback_only():
    with pytest.raises(ValueError):
        CatchAllServer("0.0.0.0", 0)


async def test_wait_for_times_out_when_nothing_matches():
    server = CatchAllServer(port=0)
    await server.start()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await server.wait_for(lambda m: True, timeout=0.2)
    finally:
        await server.close()
