"""Telling the real-time side that a member's access changed.

When a member is removed or their role changes, their gateway tokens must die at once:

1. ``members.token_version`` is bumped in the same transaction (newer tokens carry the new
   ``ver``);
2. ``cv:rv:s:<org>:<user>`` (``engine.keys.revoked_subject``) is set to the current Unix time
   in seconds, living as long as a member token can: tokens of that subject issued at or before
   it are dead;
3. ``{"type": "revoke_member", "org", "user", "version", "at"}`` is published on ``cv:control``
   (``engine.keys.CONTROL_CHANNEL``) so every gateway closes that member's sockets now.
"""

from __future__ import annotations

import time
import uuid

import orjson

from engine.keys import CONTROL_CHANNEL, revoked_subject


class ControlPublisher:
    def __init__(self, redis, token_ttl: int) -> None:
        self._redis = redis
        self._ttl = token_ttl + 60

    async def revoke_member(self, org_id: uuid.UUID, user_id: uuid.UUID, version: int, reason: str) -> None:
        now = int(time.time())
        event = orjson.dumps({"type": "revoke_member", "org": str(org_id), "user": str(user_id),
                              "version": version, "reason": reason, "at": now})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(revoked_subject(str(org_id), str(user_id)), now, ex=self._ttl)
            pipe.publish(CONTROL_CHANNEL, event)
            await pipe.execute()
