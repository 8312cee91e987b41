"""Inbox socket tokens: a signed-in member's short-lived gateway JWT.

The inbox asks for one before it opens its websocket, and again before it expires (the socket
takes the new one in-band, docs/protocol.md).  The token carries the member's role and
``members.token_version``, so a role change or removal makes older tokens useless at once.
"""

from __future__ import annotations

from admin_api import keys
from admin_api.call import Call
from admin_api.routing import RouteTable
from admin_api.schemas import Integer, Schema, String

routes = RouteTable(tag="socket")


class SocketToken(Schema):
    token = String(description="gateway JWT (member role), sent in the socket's first frame, never in a URL")
    expires_at = Integer(description="Unix seconds")
    gateway_url = String()


@routes.route("POST", "/v1/orgs/{org_id}/socket-token", permission="conversations.read", response=SocketToken,
              summary="A short-lived gateway token for the inbox's websocket")
async def socket_token(call: Call) -> SocketToken:
    member = call.member
    token, expires = call.app[keys.TOKENS].member_token(call.org_id, call.user_id, member.role, member.token_version)
    return SocketToken(token=token, expires_at=expires, gateway_url=call.config.admin_api.gateway_public_url)
