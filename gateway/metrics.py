"""Prometheus metrics of the gateway.  Label values come from fixed sets (no ids)."""

from prometheus_client import Counter, Gauge, Histogram

connections = Gauge("convot_gateway_connections", "open authenticated sockets", ["role"])
frames_in = Counter("convot_gateway_frames_in_total", "client frames by type", ["type"])
frames_out = Counter("convot_gateway_frames_out_total", "server frames by kind", ["kind"])
deliveries = Counter("convot_gateway_deliveries_total", "event frames written to sockets")
events = Counter("convot_gateway_stream_events_total", "stream entries read by the fan-out")
# Per shard (a number below engine.shards: bounded); sum by (le) for the whole gateway.
delivery_latency = Histogram("convot_gateway_delivery_latency_seconds", "append-to-fan-out delay per event",
                             ["shard"],
                             buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
appended = Counter("convot_gateway_messages_appended_total", "messages acknowledged to senders")
slow_consumers = Counter("convot_gateway_slow_consumer_disconnects_total", "sockets cut for not reading")
closes = Counter("convot_gateway_closes_total", "sockets closed by the gateway, by close code", ["code"])
auth_failures = Counter("convot_gateway_auth_failures_total", "refused authentications", ["reason"])
errors = Counter("convot_gateway_errors_total", "error frames sent, by code", ["code"])
read_positions = Counter("convot_gateway_read_positions_total",
                         "members' read positions handed to PostgreSQL, by outcome (stored | dropped)", ["outcome"])


def _children(metric):
    """label value -> child, cached: the hot path skips labels() (a lock and a tuple per call).
    Only for metrics whose label values come from a fixed set in the code."""
    cache: dict = {}

    def child(value: str):
        c = cache.get(value)
        if c is None:
            c = cache[value] = metric.labels(value)
        return c
    return child


frame_in = _children(frames_in)      # frame_in("Send").inc()
frame_out = _children(frames_out)
