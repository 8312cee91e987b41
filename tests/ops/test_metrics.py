"""Every service as a real process, a short chat through the gateway, then a scrape of every
/metrics endpoint: each metric of issue 7 is there with a sane value, no label carries an id,
`promtool check metrics` accepts the output, and the services' logs are JSON lines with no
token, message body or email in them."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.client import connect
from bench.seed import seed
from bench.stack import Services, config_env, wait_until
from convot.embedded import _set_pdeathsig, wait_for_port
from convot.tokens import TokenIssuer
from tests.ops.promtool import promtool

pytestmark = pytest.mark.slow

BODY = "metrics-test-body-7f3a"         # must never appear in a log
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(ss: dict, name: str, **labels) -> float | None:
    """Sum of the samples of ``name`` whose labels include ``labels`` (None: no such sample)."""
    found = [v for (n, ls), v in ss.items() if n == name and all((k, v2) in ls for k, v2 in labels.items())]
    return sum(found) if found else None


class Socket:
    def __init__(self):
        self.frames: list[dict] = []
        self.closed: int | None = None
        self.sock = None

    async def open(self, port: int, token: str) -> dict:
        self.sock = await connect("127.0.0.1", port, lambda b: self.frames.append(orjson.loads(b)), self._closed)
        self.sock.send(orjson.dumps({"type": "authenticate", "token": token, "ref": "a"}))
        return await self.wait(lambda f: f.get("ref") == "a")

    def _closed(self, code: int) -> None:
        self.closed = code

    async def wait(self, pred, timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for f in self.frames:
                if pred(f):
                    return f
            if self.closed is not None:
                raise AssertionError(f"socket closed with {self.closed}")
            await asyncio.sleep(0.02)
        raise AssertionError("timed out waiting for a frame")


@pytest.fixture(scope="module")
async def scraped(servers, tmp_path_factory):
    logs = tmp_path_factory.mktemp("ops-logs")
    cfg = servers.config(
        gateway={"rate_limit_per_second": 5.0, "rate_limit_burst": 20},
        admin_api={"login_ip_limit": 1, "login_account_limit": 1},
        billing={"stripe_webhook_secret": "whsec_metricstest"},
        metrics={"shard_stats_interval": 0.3},
    )
    services = Services(cfg, gateways=1, workers=1, log_dir=logs)
    api = None
    sockets: list[Socket] = []
    try:
        await asyncio.to_thread(services.start)
        api_log = open(logs / "admin-api.log", "ab")
        api = subprocess.Popen([sys.executable, "-m", "convot.cli", "admin-api"], env=config_env(cfg), stdout=api_log,
                               stderr=api_log, stdin=subprocess.DEVNULL, preexec_fn=_set_pdeathsig,
                               start_new_session=True)
        api_log.close()
        await asyncio.to_thread(wait_for_port, cfg.admin_api.port, 60, api, "admin-api")

        tenant = (await seed(servers.owner_url, 1, 2, [3]))[0]
        issuer = TokenIssuer(cfg)
        port = services.port()
        agents = [Socket() for _ in tenant.agents]
        shoppers = [Socket() for _ in tenant.contacts]
        for s, a in zip(agents, tenant.agents):
            assert (await s.open(port, issuer.member_token(tenant.org, a, "agent", 0)[0]))["type"] == "ready"
        for s, c in zip(shoppers, tenant.contacts):
            assert (await s.open(port, issuer.widget_token(tenant.org, c, tenant.app)[0]))["type"] == "ready"
        sockets = agents + shoppers
        sent = 0
        for i in range(5):
            for n, s in enumerate(shoppers):
                ref = f"m{i}"
                frame = {"type": "send", "client_msg_id": f"s{n}-{i}", "body": BODY, "ref": ref}
                if i:
                    frame["conversation_id"] = next(f["conversation_id"] for f in s.frames if f.get("type") == "ack")
                s.sock.send(orjson.dumps(frame))
                await s.wait(lambda f, ref=ref: f.get("ref") == ref and f["type"] == "ack")
                sent += 1
        for a in agents:          # each agent sees every message
            await a.wait(lambda f: sum(1 for x in a.frames if x.get("type") == "message") >= sent)

        # a refused token (auth failure, close 4401) and a flooding socket (rate limit, close 4006)
        bad = Socket()
        try:
            await bad.open(port, "not-a-jwt")
        except AssertionError:
            pass
        assert bad.closed == 4401
        flood = Socket()
        await flood.open(port, issuer.member_token(tenant.org, tenant.agents[0], "agent", 0)[0])
        for i in range(45):
            flood.sock.send(orjson.dumps({"type": "ping", "ref": i}))
        await asyncio.to_thread(wait_until, lambda: flood.closed is not None, 10)
        assert flood.closed == 4006

        # admin API: a 200, a 429 from the login limit, two refused Stripe webhooks
        base = f"http://127.0.0.1:{cfg.admin_api.port}"
        assert "ok" in scrape(base + "/healthz")
        statuses = []
        for _ in range(2):
            req = urllib.request.Request(base + "/v1/auth/login", method="POST",
                                         data=orjson.dumps({"email": "nobody@example.test", "password": "wrong-pass-1"}),
                                         headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=30)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
        assert statuses == [401, 429]
        req = urllib.request.Request(base + "/v1/billing/stripe/webhook", method="POST", data=b'{"id": "evt_1"}',
                                     headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=10)

        # the worker persisted everything; the shard statistics caught up
        engine_url = f"http://127.0.0.1:{services.metrics_ports['engine-1']}/metrics"
        gateway_url = f"http://127.0.0.1:{services.metrics_ports['gateway-1']}/metrics"

        def persisted() -> bool:
            ss = samples(scrape(engine_url))
            return (value(ss, "convot_engine_persisted_total") or 0) >= sent and \
                (value(ss, "convot_engine_stream_length") or 0) >= sent and \
                value(ss, "convot_engine_stream_pending") == 0
        assert await asyncio.to_thread(wait_until, persisted, 30)

        def flood_socket_gone() -> bool:       # the gateway counts it out once the close handshake ends
            return value(samples(scrape(gateway_url)), "convot_gateway_connections", role="member") == len(agents)
        assert await asyncio.to_thread(wait_until, flood_socket_gone, 15)
        texts = {"gateway": scrape(gateway_url), "engine": scrape(engine_url), "admin-api": scrape(base + "/metrics")}
        yield {"texts": texts, "sent": sent, "agents": len(agents), "shoppers": len(shoppers), "logs": logs,
               "shards": cfg.engine.shards, "tokens": [issuer.widget_token(tenant.org, tenant.contacts[0], tenant.app)[0]]}
    finally:
        for s in sockets:
            s.sock.close()
        if api is not None:
            api.terminate()
            api.wait(20)
        await asyncio.to_thread(services.stop)


def test_gateway_metrics(scraped):
    ss = samples(scraped["texts"]["gateway"])
    sent = scraped["sent"]
    assert value(ss, "convot_gateway_connections", role="shopper") == scraped["shoppers"]
    assert value(ss, "convot_gateway_connections", role="member") == scraped["agents"]
    assert value(ss, "convot_gateway_frames_in_total", type="Send") == sent
    assert value(ss, "convot_gateway_frames_out_total", kind="ack") == sent
    assert value(ss, "convot_gateway_messages_appended_total") == sent
    # each message reaches both agents and its own shopper
    assert value(ss, "convot_gateway_deliveries_total") >= sent * (scraped["agents"] + 1)
    assert value(ss, "convot_gateway_delivery_latency_seconds_count") >= sent
    assert 0 < value(ss, "convot_gateway_delivery_latency_seconds_sum") < 60 * sent
    # labelled per shard: every series names a shard below engine.shards
    shards = {dict(ls)["shard"] for (n, ls) in ss if n == "convot_gateway_delivery_latency_seconds_count"}
    assert shards and all(0 <= int(x) < scraped["shards"] for x in shards)
    assert value(ss, "convot_engine_append_batch_size_count") >= 1       # sends per Redis pipeline
    assert value(ss, "convot_engine_append_batch_size_sum") == sent
    assert value(ss, "convot_gateway_slow_consumer_disconnects_total") == 0
    assert value(ss, "convot_gateway_closes_total", code="4401") == 1
    assert value(ss, "convot_gateway_closes_total", code="4006") == 1
    assert value(ss, "convot_gateway_auth_failures_total") == 1
    assert value(ss, "convot_rate_limited_total", limit="socket_flood") == 1
    assert value(ss, "convot_rate_limited_total", limit="socket_frames") >= 1
    assert value(ss, "convot_db_pool_max_connections", pool="main") > 0
    assert value(ss, "convot_redis_pool_connections", pool="main") >= 1
    assert value(ss, "process_resident_memory_bytes") > 0


def test_engine_metrics(scraped):
    ss = samples(scraped["texts"]["engine"])
    sent = scraped["sent"]
    # stream entries: the messages plus one "conversation created" entry per shopper (and any
    # entries earlier tests of the session left in the streams)
    assert value(ss, "convot_engine_persisted_total") >= sent + scraped["shoppers"]
    assert value(ss, "convot_engine_persist_batch_size_sum") == value(ss, "convot_engine_persisted_total") + \
        value(ss, "convot_engine_dead_letters_total")
    assert value(ss, "convot_engine_persist_batch_size_count") >= 1
    assert value(ss, "convot_engine_stream_length") >= sent
    assert value(ss, "convot_engine_stream_pending") == 0
    shards = {dict(ls)["shard"] for n, ls in ss if n == "convot_engine_oldest_unpersisted_age_seconds"}
    assert len(shards) == 16                          # every shard reported, by number only
    assert value(ss, "convot_engine_oldest_unpersisted_age_seconds") == 0    # all persisted
    assert value(ss, "convot_redis_memory_used_bytes") > 0
    # Reported by outcome; earlier tests of the session may have left due connections whose fake
    # Partner API is gone, so the count itself is theirs.
    assert value(ss, "convot_shopify_sync_runs_total", result="failed") is not None
    # Shopify sync state: every status reported, at 0 when no organisation is in it
    assert {dict(ls)["status"] for n, ls in ss if n == "convot_shopify_connections"} >= {"active", "syncing", "stopped"}
    assert value(ss, "convot_webhook_attempts_total", result="ok") == 0      # no endpoint configured
    assert value(ss, "convot_db_pool_max_connections", pool="main") > 0
    assert value(ss, "convot_redis_pool_max_connections", pool="main") > 0


def test_admin_api_metrics(scraped):
    ss = samples(scraped["texts"]["admin-api"])
    assert value(ss, "convot_admin_api_request_seconds_count", route="/healthz", status="200") >= 1
    assert value(ss, "convot_admin_api_request_seconds_count", route="/v1/auth/login", status="429") == 1
    assert value(ss, "convot_rate_limited_total", limit="login_account+login_ip") == 1
    assert value(ss, "convot_stripe_webhook_events_total", outcome="webhook_signature_invalid") == 1
    assert value(ss, "convot_stripe_webhook_events_total", outcome="processed") == 0
    assert value(ss, "convot_db_pool_max_connections", pool="main") > 0
    assert value(ss, "convot_redis_pool_max_connections", pool="main") > 0


def test_label_values_are_bounded(scraped):
    for name, text in scraped["texts"].items():
        for (metric, labels), _ in samples(text).items():
            for key, val in labels:
                assert not UUID_RE.search(val), f"{name}: {metric}{{{key}={val!r}}} carries an id"
                assert "@" not in val, f"{name}: {metric}{{{key}}} carries an email"


def test_promtool_accepts_the_exposition(scraped):
    for name, text in scraped["texts"].items():
        proc = promtool("check", "metrics", stdin=text)
        assert proc.returncode == 0, f"{name}: {proc.stdout}{proc.stderr}"


def test_service_logs_are_json_lines_without_secrets(scraped):
    token = scraped["tokens"][0].split(".")[2]          # a signature: the part that must never leak
    for path in sorted(scraped["logs"].glob("*.log")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, path.name
        for line in lines:
            entry = orjson.loads(line)
            assert {"time", "level", "service", "msg"} <= entry.keys(), line
            assert BODY not in line and "@example.test" not in line and token not in line and "whsec_" not in line
        services = {orjson.loads(line)["service"] for line in lines}
        assert services == {path.stem.rsplit("-", 1)[0] if path.stem != "admin-api" else "admin-api"}
