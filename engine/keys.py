"""Where things live in Redis: organisation -> shard, and every key of a shard.

All keys of shard N carry the hash tag ``{N}`` so that, on Redis Cluster, a shard is one
slot: the Lua scripts touch several keys of a shard atomically.  Only the control channel
and revocation records are global.
"""

from __future__ import annotations

import zlib

GROUP = "persist"                       # the workers' consumer group on every shard stream
CONTROL_CHANNEL = "cv:control"          # revocations, seen by every gateway


def shard_of(org_id: str, shards: int) -> int:
    """Stable for the life of the data: crc32 of the organisation id's text."""
    return zlib.crc32(str(org_id).encode()) % shards


def prefix(shard: int) -> str:
    return f"cv:{{{shard}}}:"


def stream(shard: int) -> str:
    return f"cv:{{{shard}}}:s"


def shard_of_stream(stream: str | bytes) -> int:
    """The shard number in a stream key (``cv:{7}:s`` -> 7)."""
    if isinstance(stream, bytes):
        stream = stream.decode()
    return int(stream.split("{", 1)[1].split("}", 1)[0])


def ephemeral_channel(shard: int) -> str:
    """Typing, presence and read receipts of the shard's organisations (pub/sub, not stored)."""
    return f"cv:{{{shard}}}:e"


def meta(shard: int, conversation_id: str) -> str:
    return f"cv:{{{shard}}}:c:{conversation_id}"


def recent(shard: int, conversation_id: str) -> str:
    return f"cv:{{{shard}}}:r:{conversation_id}"


def dead_letters(shard: int) -> str:
    """Entries the workers could not persist (constraint violations), kept for inspection."""
    return f"cv:{{{shard}}}:dead"


def revoked_token(jti: str) -> str:
    return f"cv:rv:j:{jti}"


def revoked_subject(org_id: str, subject: str) -> str:
    """Tokens of this subject in this organisation issued at or before the stored time are dead."""
    return f"cv:rv:s:{org_id}:{subject}"


def revoked_org(org_id: str) -> str:
    return f"cv:rv:o:{org_id}"
