"""Reminders on conversations, and the notifications they (and mentions) leave for a member.

A member sets a reminder on a conversation; at ``remind_at`` the engine workers' reminder loop
(``engine/reminders.py``) posts a private note in the conversation and notifies the member
live.  Reminders are rows in PostgreSQL, so restarts lose none.  A conversation may carry
several, from several members; everybody on the team sees them on the conversation, each
member lists their own, and a member deletes their own (admins anyone's).  docs/workflow.md.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Boolean, Choice, DateTime, Integer, Nested, Schema, String, Uuid

routes = RouteTable(tag="reminders")

MAX_NOTE_CHARS = 1000
MAX_AHEAD = dt.timedelta(days=366)
PAST_TOLERANCE = dt.timedelta(minutes=1)


class ReminderCreate(Schema):
    remind_at = DateTime(example="2026-02-02T09:00:00+01:00", description="with a time zone; at most a year ahead")
    note = String(max_length=MAX_NOTE_CHARS, default="", example="Check the refund went through")


class Reminder(Schema):
    id = Uuid()
    conversation_id = Uuid()
    user_id = Uuid(description="who set it (and is notified)")
    remind_at = DateTime()
    note = String()
    status = Choice("pending", "fired")
    outcome = Choice("posted", "conversation_gone", nullable=True)
    message_seq = Integer(nullable=True, description="the note posted in the conversation")
    fired_at = DateTime(nullable=True)
    created_at = DateTime()


class ReminderList(Schema):
    items = Array(Nested(Reminder), max_items=1000)


class MyRemindersQuery(Schema):
    status = Choice("pending", "fired", "all", default="pending")
    limit = Integer(minimum=1, maximum=200, default=100)


class Notification(Schema):
    id = Integer()
    kind = Choice("mention", "reminder", "assignment")
    conversation_id = Uuid(nullable=True)
    message_seq = Integer(nullable=True)
    created_at = DateTime()
    read_at = DateTime(nullable=True)


class NotificationList(Schema):
    items = Array(Nested(Notification), max_items=200)
    unread = Integer(description="unread notifications in all")


class NotificationsQuery(Schema):
    unread_only = Boolean(default=False)
    limit = Integer(minimum=1, maximum=200, default=50)


class NotificationsRead(Schema):
    ids = Array(Integer(minimum=1), max_items=200, required=False, description="omit to mark every one read")


_COLUMNS = "id, conversation_id, user_id, remind_at, note, fired_at, outcome, message_seq, created_at"


def _view(row: asyncpg.Record) -> Reminder:
    return Reminder(id=row["id"], conversation_id=row["conversation_id"], user_id=row["user_id"],
                    remind_at=row["remind_at"], note=row["note"],
                    status="fired" if row["fired_at"] is not None else "pending", outcome=row["outcome"],
                    message_seq=row["message_seq"], fired_at=row["fired_at"], created_at=row["created_at"])


async def _conversation_exists(conn: asyncpg.Connection, org_id, conversation_id) -> None:
    found = await conn.fetchval("SELECT true FROM conversations WHERE org_id = $1 AND id = $2 FOR SHARE",
                                org_id, conversation_id)
    if not found:
        raise ApiError("not_found")


@routes.route("POST", "/v1/orgs/{org_id}/conversations/{conversation_id}/reminders", permission="conversations.write",
              body=ReminderCreate, response=Reminder, status=201, summary="Remind me about this conversation",
              description="At remind_at a private note is posted in the conversation and you are notified live.")
async def create_reminder(call: Call) -> Reminder:
    user = call.require_user().user_id
    b, conversation_id = call.body, call.path["conversation_id"]
    now = dt.datetime.now(dt.timezone.utc)
    limit = call.config.workflow.max_pending_reminders
    async with call.db() as conn:
        await _conversation_exists(conn, call.org_id, conversation_id)     # 404 first: nothing about others
        if b.remind_at < now - PAST_TOLERANCE or b.remind_at > now + MAX_AHEAD:
            raise ApiError("unprocessable_entity", details={"field": "remind_at",
                                                            "reason": "must be from now to a year ahead"})
        pending = await conn.fetchval(
            "SELECT count(*) FROM reminders WHERE org_id = $1 AND conversation_id = $2 AND user_id = $3 "
            "AND fired_at IS NULL", call.org_id, conversation_id, user)
        if pending >= limit:
            raise ApiError("conflict", f"You already have {limit} pending reminders on this conversation.")
        row = await conn.fetchrow(
            f"INSERT INTO reminders (org_id, conversation_id, user_id, remind_at, note) VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {_COLUMNS}", call.org_id, conversation_id, user, b.remind_at, b.note)
    return _view(row)


@routes.route("GET", "/v1/orgs/{org_id}/conversations/{conversation_id}/reminders", permission="conversations.read",
              response=ReminderList, summary="The team's reminders on this conversation")
async def conversation_reminders(call: Call) -> ReminderList:
    async with call.db() as conn:
        await _conversation_exists(conn, call.org_id, call.path["conversation_id"])
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM reminders WHERE org_id = $1 AND conversation_id = $2 "
                                f"ORDER BY remind_at, id LIMIT 1000", call.org_id, call.path["conversation_id"])
    return ReminderList(items=[_view(r) for r in rows])


@routes.route("GET", "/v1/orgs/{org_id}/reminders", permission="conversations.read", query=MyRemindersQuery,
              response=ReminderList, summary="Your reminders (pending first by time, or fired newest first)")
async def my_reminders(call: Call) -> ReminderList:
    user = call.require_user().user_id
    q = call.query
    where = {"pending": "AND fired_at IS NULL ORDER BY remind_at, id",
             "fired": "AND fired_at IS NOT NULL ORDER BY fired_at DESC, id",
             "all": "ORDER BY remind_at DESC, id"}[q.status]
    async with call.db() as conn:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM reminders WHERE org_id = $1 AND user_id = $2 {where} LIMIT $3",
                                call.org_id, user, q.limit)
    return ReminderList(items=[_view(r) for r in rows])


@routes.route("DELETE", "/v1/orgs/{org_id}/reminders/{reminder_id}", permission="conversations.write", status=204,
              summary="Delete a reminder (yours; admins and owners: anyone's)")
async def delete_reminder(call: Call) -> None:
    user = call.require_user().user_id
    reminder_id = call.path["reminder_id"]
    async with call.db() as conn:
        owner = await conn.fetchval("SELECT user_id FROM reminders WHERE org_id = $1 AND id = $2 FOR UPDATE",
                                    call.org_id, reminder_id)
        if owner is None:
            raise ApiError("not_found")
        if owner != user and not call.member.allows("team.manage"):
            raise ApiError("forbidden", "You can only delete your own reminders.")
        await conn.execute("DELETE FROM reminders WHERE org_id = $1 AND id = $2", call.org_id, reminder_id)
        if owner != user:
            await call.audit(conn, "reminder.deleted", "reminder", reminder_id, {"owner": str(owner)})


@routes.route("GET", "/v1/orgs/{org_id}/notifications", permission="conversations.read", query=NotificationsQuery,
              response=NotificationList, summary="Your notifications (reminders, mentions), newest first")
async def my_notifications(call: Call) -> NotificationList:
    user = call.require_user().user_id
    q = call.query
    async with call.db() as conn:
        rows = await conn.fetch(
            "SELECT id, kind, conversation_id, message_seq, created_at, read_at FROM notifications "
            "WHERE org_id = $1 AND user_id = $2 AND (NOT $3 OR read_at IS NULL) ORDER BY created_at DESC, id DESC "
            "LIMIT $4", call.org_id, user, q.unread_only, q.limit)
        unread = await conn.fetchval("SELECT count(*) FROM notifications WHERE org_id = $1 AND user_id = $2 "
                                     "AND read_at IS NULL", call.org_id, user)
    return NotificationList(items=[Notification(**dict(r)) for r in rows], unread=unread)


@routes.route("POST", "/v1/orgs/{org_id}/notifications/read", permission="conversations.read",
              body=NotificationsRead, response=NotificationList, summary="Mark your notifications read")
async def read_notifications(call: Call) -> NotificationList:
    user = call.require_user().user_id
    ids = call.body.ids if call.body.is_set("ids") else None
    async with call.db() as conn:
        await conn.execute("UPDATE notifications SET read_at = now() WHERE org_id = $1 AND user_id = $2 "
                           "AND read_at IS NULL AND ($3::bigint[] IS NULL OR id = ANY($3::bigint[]))",
                           call.org_id, user, ids)
        rows = await conn.fetch(
            "SELECT id, kind, conversation_id, message_seq, created_at, read_at FROM notifications "
            "WHERE org_id = $1 AND user_id = $2 ORDER BY created_at DESC, id DESC LIMIT 50", call.org_id, user)
        unread = await conn.fetchval("SELECT count(*) FROM notifications WHERE org_id = $1 AND user_id = $2 "
                                     "AND read_at IS NULL", call.org_id, user)
    return NotificationList(items=[Notification(**dict(r)) for r in rows], unread=unread)
