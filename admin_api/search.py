"""Full-text search over an organisation's conversations and messages (PostgreSQL).

Two audiences, one query builder (:func:`search`):

* the **team** (``GET /v1/orgs/{org_id}/search``: inbox members, or API keys with
  ``messages:read``) -- every message including private notes, plus conversations whose
  contact's name, email or company matches;
* a **contact** (``GET /v1/orgs/{org_id}/contacts/{contact_id}/search``) -- what that shopper
  can see and nothing else: only their own conversations, never a private note, never a
  deleted message, and no team-only field (assignee, tags).  A developer's backend calls it to
  offer search to a shopper.

Words are matched by prefix in the ``simple`` configuration (``refund`` finds "refunds",
case-insensitive), all words must occur (AND).  Messages use the GIN index on
``messages.search``; contacts the expression index ``contacts_search`` (migration 0500).  Hits
come newest first with an opaque keyset cursor, so paging is stable while messages arrive.
Every statement names ``org_id`` and runs under row-level security.  A member's team search
carries their own read position (``read_seq``) with each conversation, like the conversation
list (admin_api/rest/conversations.py ``read_seqs``); an API key has none.  docs/workflow.md.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid

import orjson

from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.rest.conversations import read_seqs
from admin_api.routing import RouteTable
from admin_api.schemas import Array, Choice, DateTime, Integer, Nested, Schema, String, Uuid
from engine.events import STATUSES, normalise_tag

routes = RouteTable(tag="search")

MAX_TERMS = 12
MAX_TERM_CHARS = 64
_WORD = re.compile(r"\w+", re.UNICODE)
_UUID_OR_NONE = r"none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Must stay identical to the expression of the index contacts_search (migration 0500).
CONTACT_DOCUMENT = ("to_tsvector('simple', coalesce(ct.name, '') || ' ' || coalesce(ct.email::text, '') || ' ' "
                    "|| coalesce(ct.company, ''))")
HEADLINE_OPTIONS = "MaxFragments=1, MaxWords=24, MinWords=8, ShortWord=2, StartSel=\"\", StopSel=\"\""


class SearchQuery(Schema):
    q = String(min_length=1, max_length=200, example="refund", description="words; each matches by prefix")
    status = Choice(*STATUSES, required=False)
    assignee_id = String(pattern=_UUID_OR_NONE, required=False, description="a member's id, or `none`: unassigned")
    tag = String(max_length=64, required=False)
    app_id = Uuid(required=False)
    limit = Integer(minimum=1, maximum=100, default=20)
    cursor = String(max_length=300, required=False)


class ContactSearchQuery(Schema):
    q = String(min_length=1, max_length=200, example="refund")
    limit = Integer(minimum=1, maximum=100, default=20)
    cursor = String(max_length=300, required=False)


class SearchConversation(Schema):
    id = Uuid()
    status = Choice(*STATUSES)
    assignee_id = Uuid(nullable=True)
    tags = Array(String(), max_items=50)
    contact_id = Uuid(nullable=True)
    app_id = Uuid(nullable=True)
    last_message_at = DateTime(nullable=True)
    read_seq = Integer(required=False, nullable=True,
                       description="members only: the highest `seq` the requesting member has read in this conversation "
                                   "(from the `read` frames of their inbox sockets), null if none; absent for API keys")


class SearchMessage(Schema):
    seq = Integer()
    id = String()
    type = Choice("incoming", "outgoing", "note", "activity")
    author_kind = Choice("contact", "member", "system", "api")
    author_id = String(nullable=True)
    snippet = String(description="the words around the match (plain text)")
    created_at = DateTime()


class SearchHit(Schema):
    matched = Choice("message", "contact", description="a message's text, or the contact's name/email/company")
    conversation = Nested(SearchConversation)
    message = Nested(SearchMessage, nullable=True)


class SearchPage(Schema):
    items = Array(Nested(SearchHit), max_items=100, description="newest first")
    terms = Array(String(), max_items=MAX_TERMS, description="the words searched for (for highlighting)")
    next_cursor = String(nullable=True, description="pass as `cursor` for the next page; null on the last page")


class ContactConversation(Schema):
    id = Uuid()
    status = Choice(*STATUSES)


class ContactSearchHit(Schema):
    conversation = Nested(ContactConversation)
    message = Nested(SearchMessage)


class ContactSearchPage(Schema):
    items = Array(Nested(ContactSearchHit), max_items=100, description="newest first")
    terms = Array(String(), max_items=MAX_TERMS)
    next_cursor = String(nullable=True)


# ---- pure: the query ---------------------------------------------------------------------------

def terms_of(text: str) -> list[str]:
    """Lower-cased words of the query, deduplicated, at most MAX_TERMS."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = word.strip("_")[:MAX_TERM_CHARS]
        if word and word not in out:
            out.append(word)
        if len(out) == MAX_TERMS:
            break
    return out


def tsquery(terms: list[str]) -> str:
    """``to_tsquery`` input: every term as a prefix, all required.  Terms hold only word
    characters, so nothing in them is tsquery syntax; the value still travels as a parameter."""
    return " & ".join(f"{t}:*" for t in terms)


def encode_cursor(at: dt.datetime, conversation_id, seq: int) -> str:
    raw = orjson.dumps([at.isoformat(), str(conversation_id), seq])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[dt.datetime, uuid.UUID, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at, conv, seq = orjson.loads(raw)
        when = dt.datetime.fromisoformat(at)
        if when.tzinfo is None or not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("bad cursor")
        return when, uuid.UUID(conv), seq
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise ApiError("unprocessable_entity", details={"field": "cursor", "reason": "is not a cursor of this search"}) \
            from None


# ---- the query -------------------------------------------------------------------------------

async def search(conn, org_id, text: str, *, limit: int, cursor: str | None = None, contact_id=None,
                 status: str | None = None, assignee: str | None = None, tag: str | None = None,
                 app_id=None) -> tuple[list[dict], list[str], str | None]:
    """Hits newest first: (rows, terms, next cursor).  ``contact_id`` set = the contact's view
    (their conversations only, no notes, no contact matches); otherwise the team's view."""
    terms = terms_of(text)
    if not terms:
        raise ApiError("unprocessable_entity", details={"field": "q", "reason": "must contain a word"})
    args: list = [org_id, tsquery(terms)]

    def arg(value) -> str:
        args.append(value)
        return f"${len(args)}"

    team = contact_id is None
    conv_filters = []
    if not team:
        conv_filters.append(f"c.contact_id = {arg(contact_id)}")
    if status:
        conv_filters.append(f"c.status = {arg(status)}")
    if assignee == "none":
        conv_filters.append("c.assignee_id IS NULL")
    elif assignee:
        conv_filters.append(f"c.assignee_id = {arg(uuid.UUID(assignee))}")
    if tag is not None:
        conv_filters.append("EXISTS (SELECT 1 FROM conversation_tags ctg JOIN tags t ON t.id = ctg.tag_id "
                            f"WHERE ctg.org_id = $1 AND ctg.conversation_id = c.id AND t.name = {arg(tag)})")
    if app_id is not None:
        conv_filters.append(f"c.app_id = {arg(app_id)}")
    conv_where = "".join(" AND " + f for f in conv_filters)
    page_where = ""
    if cursor:
        at, conv, seq = decode_cursor(cursor)
        page_where = f" AND (h.at, h.conversation_id, h.seq) < ({arg(at)}, {arg(conv)}, {arg(seq)})"
    message_visibility = "" if team else " AND m.type <> 'note'"
    contact_part = "" if not team else f"""
        UNION ALL
        SELECT c.id, 0, COALESCE(c.last_message_at, c.created_at), 'contact'
        FROM conversations c JOIN contacts ct ON ct.id = c.contact_id AND ct.org_id = $1
        WHERE c.org_id = $1 AND {CONTACT_DOCUMENT} @@ to_tsquery('simple', $2){conv_where}"""
    sql = f"""
    WITH hits AS (
        SELECT m.conversation_id, m.seq, m.created_at AS at, 'message' AS matched
        FROM messages m JOIN conversations c ON c.id = m.conversation_id AND c.org_id = $1
        WHERE m.org_id = $1 AND m.search @@ to_tsquery('simple', $2) AND m.deleted_at IS NULL{message_visibility}
              {conv_where}
        {contact_part}
    ), page AS (
        SELECT * FROM hits h WHERE true{page_where}
        ORDER BY h.at DESC, h.conversation_id DESC, h.seq DESC LIMIT {arg(limit + 1)}
    )
    SELECT p.matched, p.at, p.seq AS hit_seq, c.id, c.status, c.assignee_id, c.contact_id, c.app_id,
           c.last_message_at,
           COALESCE((SELECT array_agg(t.name ORDER BY t.name) FROM conversation_tags ctg JOIN tags t ON t.id = ctg.tag_id
                     WHERE ctg.org_id = $1 AND ctg.conversation_id = c.id), '{{}}') AS tags,
           m.seq, m.id AS message_id, m.type, m.author_kind, m.author_id, m.created_at,
           CASE WHEN m.body IS NULL THEN NULL
                ELSE ts_headline('simple', m.body, to_tsquery('simple', $2), '{HEADLINE_OPTIONS}') END AS snippet
    FROM page p
    JOIN conversations c ON c.id = p.conversation_id AND c.org_id = $1
    LEFT JOIN messages m ON p.matched = 'message' AND m.org_id = $1 AND m.conversation_id = p.conversation_id
                            AND m.seq = p.seq
    ORDER BY p.at DESC, p.conversation_id DESC, p.seq DESC"""
    rows = await conn.fetch(sql, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["at"], rows[-1]["id"], rows[-1]["hit_seq"]) if more else None
    return [dict(r) for r in rows], terms, next_cursor


def _message(row: dict) -> SearchMessage:
    return SearchMessage(seq=row["seq"], id=row["message_id"], type=row["type"], author_kind=row["author_kind"],
                         author_id=row["author_id"], snippet=row["snippet"] or "", created_at=row["created_at"])


@routes.route("GET", "/v1/orgs/{org_id}/search", permission="conversations.read", api_scope="messages:read",
              query=SearchQuery, response=SearchPage,
              summary="Search the organisation's messages (private notes included) and contacts",
              description="Every word must occur (prefix match, case-insensitive); filters apply to the conversation.")
async def search_team(call: Call) -> SearchPage:
    q = call.query
    tag = None
    if q.is_set("tag"):
        tag = normalise_tag(q.tag)
        if tag is None:
            raise ApiError("unprocessable_entity", details={"field": "tag", "reason": "is not a tag name"})
    async with call.db() as conn:
        rows, terms, next_cursor = await search(
            conn, call.org_id, q.q, limit=q.limit, cursor=q.cursor if q.is_set("cursor") else None,
            status=q.status if q.is_set("status") else None, assignee=q.assignee_id if q.is_set("assignee_id") else None,
            tag=tag, app_id=q.app_id if q.is_set("app_id") else None)
        positions = await read_seqs(call, conn, list({r["id"] for r in rows}))
    items = [SearchHit(matched=r["matched"], conversation=_team_conversation(r, positions),
                       message=_message(r) if r["matched"] == "message" else None)
             for r in rows]
    return SearchPage(items=items, terms=terms, next_cursor=next_cursor)


def _team_conversation(row: dict, positions: dict | None) -> SearchConversation:
    view = SearchConversation(id=row["id"], status=row["status"], assignee_id=row["assignee_id"],
                              tags=list(row["tags"]), contact_id=row["contact_id"], app_id=row["app_id"],
                              last_message_at=row["last_message_at"])
    if positions is not None:          # a member: their position or null; an API key: no field
        view.read_seq = positions.get(row["id"])
    return view


@routes.route("GET", "/v1/orgs/{org_id}/contacts/{contact_id}/search", permission="conversations.read",
              api_scope="messages:read", query=ContactSearchQuery, response=ContactSearchPage,
              summary="Search as the contact sees it: their conversations, never a private note",
              description="For shopper-facing search: only what the contact's own widget could show.")
async def search_as_contact(call: Call) -> ContactSearchPage:
    q, contact_id = call.query, call.path["contact_id"]
    async with call.db() as conn:
        if not await conn.fetchval("SELECT true FROM contacts WHERE org_id = $1 AND id = $2", call.org_id, contact_id):
            raise ApiError("not_found")
        rows, terms, next_cursor = await search(conn, call.org_id, q.q, limit=q.limit, contact_id=contact_id,
                                                cursor=q.cursor if q.is_set("cursor") else None)
    items = [ContactSearchHit(conversation=ContactConversation(id=r["id"], status=r["status"]), message=_message(r))
             for r in rows]
    return ContactSearchPage(items=items, terms=terms, next_cursor=next_cursor)
