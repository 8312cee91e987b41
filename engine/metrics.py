"""Prometheus metrics of the engine (router and workers).  Label values are bounded."""

from prometheus_client import Counter, Gauge, Histogram

append_batch = Histogram("convot_engine_append_batch_size", "sends per Redis append pipeline",
                         buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
persisted = Counter("convot_engine_persisted_total", "stream entries written to PostgreSQL")
batch_size = Histogram("convot_engine_persist_batch_size", "entries per persisted batch",
                       buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000))
persist_seconds = Histogram("convot_engine_persist_seconds", "time to persist and acknowledge one batch",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
persist_lag = Histogram("convot_engine_persist_lag_seconds", "append-to-commit delay of persisted messages",
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
claimed = Counter("convot_engine_claimed_total", "pending entries taken over from idle consumers")
trimmed = Counter("convot_engine_trimmed_total", "persisted entries trimmed from shard streams")
dead_letters = Counter("convot_engine_dead_letters_total", "entries that could not be persisted")
pg_errors = Counter("convot_engine_postgres_errors_total", "failed PostgreSQL writes (retried)")
redis_errors = Counter("convot_engine_redis_errors_total", "failed Redis calls (retried)")
stale_groups = Gauge("convot_engine_stale_consumer_groups",
                     "shard streams on which trimming passes a stale consumer group (losing entries it has not "
                     "read or acknowledged), by group: persist | webhooks | assignment | other", ["group"])
KNOWN_GROUPS = ("webhooks", "assignment")       # persist is never passed by (docs/architecture.md)
