"""Churn in the inbox: an uninstall seen within 48 hours posts an activity message
"Uninstalled <app>" into the merchant's conversation of the last 7 days and reopens it.

The message goes through the engine (``EngineClient``), so every socket sees it live; its
``client_msg_id`` is derived from the event id, so a retried notice never posts twice. An
activity message does not reopen a conversation by itself (only a customer's reply does), so
the notice reopens it explicitly.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

import asyncpg

from convot.db import scoped
from engine.shopify.revenue import churn_conversation
from engine.shopify.sync import Uninstall, utcnow

log = logging.getLogger("convot.shopify.churn")


def activity_text(app_name: str) -> str:
    return f"Uninstalled {app_name or 'the app'}"


def uninstall_notifier(pool: asyncpg.Pool, engine, *, now: Callable[[], datetime] = utcnow):
    """The runner's ``on_uninstall`` hook. ``engine`` is an ``engine.client.EngineClient``."""

    async def notify(org_id: uuid.UUID, uninstall: Uninstall) -> uuid.UUID | None:
        async with scoped(pool, org_id=org_id) as conn:
            conversation = await churn_conversation(conn, org_id, uninstall.shop_domain, uninstall.app_gid, now())
        if conversation is None:
            return None
        await engine.send_message(
            str(org_id), str(conversation), type="activity", author_kind="system", author_id=None,
            body=activity_text(uninstall.app_name),
            client_msg_id=f"shopify:{uninstall.event_id}" if uninstall.event_id else None,
            meta={"kind": "shopify.uninstalled", "app_gid": uninstall.app_gid, "shop": uninstall.shop_domain})
        await engine.update_conversation(str(org_id), str(conversation), status="open")
        log.info("uninstall posted to conversation", extra={"org_id": str(org_id), "conversation_id": str(conversation)})
        return conversation

    return notify
