"""The engine: sharded Redis Streams router, persistence workers, control events."""
