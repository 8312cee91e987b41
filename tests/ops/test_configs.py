"""configs/: the Prometheus configurations and alert rules pass promtool (syntax, and unit tests
of the alerts in tests/ops/alerts_test.yml), every metric they and the Grafana dashboard use is
one our code exports, and `convot up` writes scrape targets matching the ports it gives."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

from convot.config import REPO_ROOT, load_config
from convot.metrics import scrape_targets, write_scrape_targets
from convot.supervisor import metrics_port_clash
from tests.ops.promtool import promtool

CONFIGS = REPO_ROOT / "configs"
METRIC_RE = re.compile(r"\b(convot_[a-z0-9_]+|process_[a-z_]+|up)\b")


def exported_names() -> set[str]:
    import admin_api.middleware  # noqa: F401  (registers the admin API's metrics)
    import engine.metrics  # noqa: F401
    import engine.shopify.metrics  # noqa: F401
    import engine.webhooks  # noqa: F401
    import gateway.metrics  # noqa: F401

    names = {"up"}
    for family in REGISTRY.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "gauge": ("",)}.get(family.type, ("",))
        names.update(family.name + s for s in suffixes)
    return names


def test_prometheus_configs_are_valid():
    for path in (CONFIGS / "prometheus.yml", CONFIGS / "multinode" / "prometheus.yml"):
        proc = promtool("check", "config", str(path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS: 1 rule files found" in proc.stdout + proc.stderr


def test_alert_rules_pass_promtool_check_and_unit_tests():
    proc = promtool("check", "rules", str(CONFIGS / "alerts.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = promtool("test", "rules", str(Path(__file__).parent / "alerts_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def alert_blocks() -> dict[str, str]:
    """alert name -> its YAML text (the file is ours and regular; promtool checks its syntax)."""
    text = (CONFIGS / "alerts.yml").read_text()
    parts = re.split(r"^      - alert: ", text, flags=re.M)[1:]
    return {part.split("\n", 1)[0].strip(): part for part in parts}


def test_required_alerts_exist():
    alerts = alert_blocks()
    for required in ("ConvotGatewayDown", "ConvotPersistLag", "ConvotDeliveryLatencyP99High",
                     "ConvotAdminApiErrorRate", "ConvotGatewayErrorRate", "ConvotRedisMemoryHigh",
                     "ConvotShopifySyncFailing", "ConvotStripeWebhooksRefused"):
        assert required in alerts
    for name, block in alerts.items():
        assert re.search(r"severity: (critical|warning|info)\}", block), name
        assert "summary:" in block, name


def test_alerts_and_dashboard_use_only_exported_metrics():
    exported = exported_names()
    exprs = [(CONFIGS / "alerts.yml").read_text()]
    dashboard = json.loads((CONFIGS / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    exprs += [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used - exported == set()
    # every metric family of issue 7 is on the dashboard
    dash_text = " ".join(t["expr"] for p in panels for t in p["targets"])
    for name in ("convot_gateway_connections", "convot_gateway_frames_in_total", "convot_gateway_frames_out_total",
                 "convot_gateway_messages_appended_total", "convot_gateway_deliveries_total",
                 "convot_engine_persisted_total", "convot_gateway_delivery_latency_seconds_bucket",
                 "convot_engine_oldest_unpersisted_age_seconds", "convot_engine_stream_length",
                 "convot_engine_stream_pending", "convot_engine_append_batch_size_sum",
                 "convot_engine_persist_batch_size_sum", "convot_gateway_slow_consumer_disconnects_total",
                 "convot_gateway_closes_total", "convot_gateway_auth_failures_total", "convot_rate_limited_total",
                 "convot_admin_api_request_seconds_bucket", "convot_webhook_attempts_total",
                 "convot_shopify_sync_runs_total", "convot_stripe_webhook_events_total",
                 "convot_db_pool_connections", "convot_redis_pool_connections"):
        assert name in dash_text, name
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_convot_up_scrape_targets_follow_the_port_scheme(tmp_path):
    cfg = load_config(env={}).replace(data={"dir": str(tmp_path)})
    targets = scrape_targets(cfg, gateways=3, workers=2)
    assert [g["targets"] for g in targets["gateway"]] == [["127.0.0.1:9101"], ["127.0.0.1:9102"], ["127.0.0.1:9103"]]
    assert [g["labels"]["process"] for g in targets["engine"]] == ["engine-1", "engine-2"]
    assert [g["targets"] for g in targets["engine"]] == [["127.0.0.1:9201"], ["127.0.0.1:9202"]]
    assert targets["admin-api"] == [{"targets": ["127.0.0.1:8080"], "labels": {"process": "admin-api"}}]
    paths = write_scrape_targets(cfg, 3, 2)
    assert sorted(p.name for p in paths) == ["admin-api.json", "engine.json", "gateway.json"]
    assert json.loads((tmp_path / "prometheus" / "gateway.json").read_text()) == targets["gateway"]
    # configs/prometheus.yml reads exactly these files for the default data folder
    prom = (CONFIGS / "prometheus.yml").read_text()
    files = dict(re.findall(r"job_name: (\S+)\n    file_sd_configs:\n      - files: \[(\S+)\]", prom))
    assert files == {f"convot-{job}": f"../{load_config(env={}).data.dir}/prometheus/{job}.json"
                     for job in ("gateway", "engine", "admin-api")}


def test_metrics_port_ranges_must_not_overlap():
    cfg = load_config(env={})
    assert metrics_port_clash(cfg, 4, 4) is None
    assert "overlap" in metrics_port_clash(cfg.replace(engine={"metrics_port": 9103}), 4, 1)
    assert "admin API" in metrics_port_clash(cfg.replace(gateway={"metrics_port": 8079}), 2, 1)
