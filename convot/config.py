"""Configuration: defaults from ``configs/convot.toml``, overridden by ``CONVOT_*`` variables.

Loaded and validated once at start-up, then frozen.  Every value has one name,
``<section>.<key>``, and one environment variable, ``CONVOT_<SECTION>_<KEY>`` (upper case).
A bad or unknown value raises :class:`ConfigError` whose message names the key and what was
expected, so start-up stops with one clear line.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_FILE = REPO_ROOT / "configs" / "convot.toml"

# Variables with the CONVOT_ prefix that are not configuration keys.
_RESERVED_ENV = {"CONVOT_CONFIG"}
_RESERVED_ENV_PREFIXES = ("CONVOT_TEST_",)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "a port number from 0 to 65535"


def _positive(value: int | float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _non_negative(value: int | float) -> str | None:
    return None if value >= 0 else "a number of 0 or more"


def _one_of(*choices: str):
    def check(value: str) -> str | None:
        return None if value in choices else "one of " + ", ".join(choices)

    return check


def _url(*schemes: str):
    def check(value: str) -> str | None:
        if value == "":
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        return None if scheme in schemes else "a URL starting with " + " or ".join(s + "://" for s in schemes)

    return check


def _between(lo: int, hi: int):
    def check(value: int) -> str | None:
        return None if lo <= value <= hi else f"a number from {lo} to {hi}"

    return check


def setting(default: Any, check=None, doc: str = ""):
    return field(default=default, metadata={"check": check, "doc": doc})


@dataclass(frozen=True)
class DataSettings:
    dir: str = setting(".convot", doc="folder of the embedded servers' data and generated secrets")


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting("", _url("postgresql", "postgres"), "services' role; empty = embedded PostgreSQL")
    migrate_url: str = setting("", _url("postgresql", "postgres"), "owner role for migrations; empty = url")
    pool_min: int = setting(2, _positive)
    pool_max: int = setting(10, _positive)
    command_timeout: float = setting(30.0, _positive)


@dataclass(frozen=True)
class RedisSettings:
    url: str = setting("", _url("redis", "rediss", "unix"), "empty = embedded Redis")
    cluster: bool = setting(False, doc="connect with the Redis Cluster client")
    max_connections: int = setting(64, _positive)


@dataclass(frozen=True)
class EmbeddedSettings:
    postgres_port: int = setting(54329, _port)
    redis_port: int = setting(63799, _port)
    smtp_port: int = setting(8025, _port, "local catch-all SMTP server of `convot up`")


@dataclass(frozen=True)
class GatewaySettings:
    host: str = setting("127.0.0.1")
    port: int = setting(8765, _port)
    metrics_port: int = setting(9101, _port, "gateway i of `convot up` serves /metrics on metrics_port + i")
    max_frame_bytes: int = setting(65536, _positive, "larger frames close the socket (1009)")
    max_message_chars: int = setting(8000, _positive, "longer message bodies are refused")
    rate_limit_per_second: float = setting(20.0, _positive, "frames a socket may send per second")
    rate_limit_burst: int = setting(60, _positive)
    send_queue_frames: int = setting(2048, _positive, "outgoing frames buffered per socket before it is cut")
    send_buffer_bytes: int = setting(1048576, _positive, "unsent bytes a socket may hold before it is cut (4001)")
    auth_timeout: float = setting(10.0, _positive, "seconds a socket has to authenticate")
    drain_seconds: float = setting(10.0, _non_negative)


@dataclass(frozen=True)
class EngineSettings:
    shards: int = setting(16, _between(1, 16384), "number of Redis streams messages are sharded over")
    workers: int = setting(1, _positive, "worker processes started by `convot up`")
    metrics_port: int = setting(9201, _port, "worker i of `convot up` serves /metrics on metrics_port + i")
    batch_max: int = setting(1000, _positive, "entries persisted per PostgreSQL transaction")
    batch_linger_ms: int = setting(20, _between(0, 1000), "a consumer group reader (persistence, webhooks, "
                                   "assignment) that read less than a full batch collects this long more "
                                   "(fewer, larger transactions and acknowledgements under load)")
    claim_idle_ms: int = setting(15000, _positive, "pending entries idle this long are taken over")
    stream_retention: int = setting(100000, _positive, "persisted entries kept in Redis per shard")
    idempotency_ttl: int = setting(86400, _positive, "seconds a client_msg_id is remembered (retries answer the first ack)")
    recent_messages: int = setting(200, _positive, "messages per conversation kept in Redis for resume")
    conversation_ttl: int = setting(604800, _positive, "seconds an idle conversation's state stays in Redis")


@dataclass(frozen=True)
class AdminApiSettings:
    host: str = setting("127.0.0.1")
    port: int = setting(8080, _port)
    public_url: str = setting("http://127.0.0.1:8080", _url("http", "https"))
    gateway_public_url: str = setting("ws://127.0.0.1:8765", _url("ws", "wss"))
    tls_cert: str = setting("", doc="PEM certificate: serve TLS 1.2+ directly")
    tls_key: str = setting("")
    development: bool = setting(False, doc="relaxes https-only rules for webhooks; set by `convot up`")
    session_ttl: int = setting(1209600, _between(300, 7776000), "seconds a sign-in session lives at most")
    session_idle_ttl: int = setting(259200, _between(300, 7776000), "seconds of inactivity that end a session")
    reauth_seconds: int = setting(600, _between(30, 3600), "how long a re-authentication allows sensitive changes")
    cookie_samesite: str = setting("lax", _one_of("lax", "strict"), "SameSite of the session cookie")
    max_body_bytes: int = setting(65536, _between(1024, 10485760), "larger request bodies answer 413")
    trusted_proxies: str = setting("", doc="comma-separated CIDRs whose X-Forwarded-For is believed")
    allowed_origins: str = setting("", doc="extra browser origins allowed to make state-changing calls")
    security_contact: str = setting("mailto:security@convot.localhost", doc="Contact: of /.well-known/security.txt")
    org_deletion_grace_days: int = setting(14, _between(0, 90), "days before a deleted organisation is purged")
    login_account_limit: int = setting(10, _positive, "failed logins per account per login_window")
    login_ip_limit: int = setting(20, _positive, "failed logins per client IP per login_window")
    login_window: int = setting(900, _positive, "seconds")
    mfa_user_limit: int = setting(5, _positive, "failed MFA codes per account per mfa_window")
    mfa_ip_limit: int = setting(20, _positive, "failed MFA codes per client IP per mfa_window")
    mfa_window: int = setting(900, _positive, "seconds")
    reset_account_limit: int = setting(3, _positive, "reset mails per account per reset_window")
    reset_ip_limit: int = setting(10, _positive, "reset requests per client IP per reset_window")
    reset_window: int = setting(3600, _positive, "seconds; reset links live as long, see docs/admin-api.md")
    signup_ip_limit: int = setting(10, _positive, "sign-ups per client IP per hour")
    session_rate_limit: int = setting(1200, _positive, "requests per signed-in session per minute")
    ip_rate_limit: int = setting(3000, _positive, "requests without credentials per client IP per minute")


@dataclass(frozen=True)
class AuthSettings:
    issuer: str = setting("convot")
    audience: str = setting("convot-gateway")
    widget_token_ttl: int = setting(600, _between(30, 900), "seconds; widget tokens live at most 15 minutes")
    agent_token_ttl: int = setting(900, _between(30, 3600))
    jwt_private_keys: str = setting("", doc="kid=Ed25519 PEM path,...; first signs; empty = generated under data.dir")
    jwt_public_keys: str = setting("", doc="kid=PEM path,...; gateways verify with these; empty = from private keys")
    encryption_keys: str = setting("", doc="kid=base64 32 bytes,...; first encrypts; empty = generated")
    bcrypt_cost: int = setting(12, _between(12, 16), "bcrypt work factor of password hashes (at least 12)")
    verify_token_ttl: int = setting(86400, _between(600, 604800), "seconds an email verification link lives")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = setting("127.0.0.1")
    port: int = setting(8025, _port)
    sender: str = setting("Convot <no-reply@convot.localhost>")
    security: str = setting("none", _one_of("none", "starttls", "tls"), "transport security towards the relay")
    username: str = setting("", doc="relay login; empty = no AUTH")
    password: str = setting("", doc="relay password")
    timeout: float = setting(10.0, _positive, "seconds per SMTP conversation")
    catch_all: str = setting("auto", _one_of("auto", "off"),
                             "auto: in development with a loopback smtp.host, the admin API runs a catch-all "
                             "SMTP server on smtp.port and shows its mails at /dev/mail")


@dataclass(frozen=True)
class LogSettings:
    format: str = setting("json", _one_of("json", "human"))
    level: str = setting("info", _one_of("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class ShopifySettings:
    api_base: str = setting("https://partners.shopify.com", _url("http", "https"), "Partner API origin (tests point it at a fake)")
    api_version: str = setting("2025-07", doc="Partner API version in the GraphQL URL")
    poll_interval: float = setting(900.0, _positive, "seconds between incremental syncs of one connection")
    page_size: int = setting(100, _between(1, 100), "items per GraphQL page")
    overlap_seconds: int = setting(3600, _non_negative, "each incremental sync re-reads this far back; duplicates are dropped by id")
    request_timeout: float = setting(30.0, _positive, "seconds for one Partner API request, connect included")
    requests_per_second: float = setting(4.0, _positive, "client-side pace per connection (the Partner API allows 4)")
    throttle_retries: int = setting(6, _non_negative, "retries of one throttled request before the run fails")
    max_backoff: float = setting(60.0, _positive, "longest wait in seconds after one throttled answer")
    retry_base: float = setting(30.0, _positive, "seconds before retrying a failed run; doubles per failure, capped at poll_interval")
    max_failures: int = setting(12, _positive, "consecutive failed runs after which a connection stops until 'sync now'")
    concurrency: int = setting(2, _positive, "connections synced at the same time by one process")
    event_retention_days: int = setting(365, _positive, "lifecycle events older than this are folded into the merchant and deleted")


@dataclass(frozen=True)
class BillingSettings:
    stripe_api_base: str = setting("https://api.stripe.com", _url("http", "https"), "Stripe API origin (tests point it at a fake)")
    stripe_secret_key: str = setting("", doc="sk_...; empty = billing disabled")
    stripe_webhook_secret: str = setting("", doc="whsec_... of the webhook endpoint")
    webhook_tolerance: int = setting(300, _between(1, 300), "seconds a Stripe-Signature timestamp stays valid")
    price_ids: str = setting("", doc="plan=price_id,...: the Stripe price of each paid plan")
    plans_file: str = setting("configs/plans.toml", doc="plan limits (seats, apps); relative to the repository")
    request_timeout: float = setting(20.0, _positive, "seconds for one Stripe API request")


@dataclass(frozen=True)
class RestApiSettings:
    rate_limit: int = setting(600, _positive, "requests one API key may make per rate_window")
    rate_window: int = setting(60, _positive, "seconds")
    widget_session_ip_limit: int = setting(120, _positive, "widget sessions one client IP may open per minute")
    widget_session_app_limit: int = setting(6000, _positive, "widget sessions one app may open per minute")


@dataclass(frozen=True)
class WebhookSettings:
    timeout: float = setting(10.0, _positive, "seconds for one delivery attempt, connect included")
    retry_base: float = setting(30.0, _positive, "seconds before the first retry; doubles per failed attempt")
    retry_max: float = setting(3600.0, _positive, "longest wait between two attempts, seconds")
    give_up_after: int = setting(86400, _positive, "seconds after the event when an undelivered event is marked failed")
    concurrency: int = setting(32, _positive, "deliveries in flight per engine process")
    per_endpoint: int = setting(4, _positive, "deliveries in flight to one endpoint per engine process")
    poll_interval: float = setting(1.0, _positive, "seconds between looks for due deliveries")


@dataclass(frozen=True)
class DataRightsSettings:
    export_dir: str = setting("", doc="folder of export archives; empty = <data.dir>/exports")
    export_link_ttl: int = setting(900, _between(60, 86400), "seconds a signed download link stays valid")
    export_retention: int = setting(604800, _positive, "seconds an export archive is kept, then deleted")
    poll_interval: float = setting(5.0, _positive, "seconds between looks for exports and due organisation deletions")


@dataclass(frozen=True)
class WorkflowSettings:
    presence_grace: float = setting(30.0, _positive, "seconds an agent stays present after their last inbox socket closes")
    presence_lease: float = setting(60.0, _positive, "seconds a socket counts as open without a gateway heartbeat "
                                                     "(a crashed gateway's agents go offline after this)")
    sweep_interval: float = setting(1.0, _positive, "seconds between looks for agents whose presence ran out")
    reminder_poll_interval: float = setting(1.0, _positive, "longest wait in seconds between looks for due reminders")
    assignment_claim_idle_ms: int = setting(30000, _positive, "a dead worker's undecided new conversations are taken over after this")
    load_window: int = setting(300, _positive, "seconds an auto-assignment counts towards the agent's load before "
                                               "PostgreSQL shows it on the conversation")
    max_rules: int = setting(100, _between(1, 1000), "auto-assign rules per organisation")
    max_pending_reminders: int = setting(100, _between(1, 10000), "pending reminders per member per conversation")


@dataclass(frozen=True)
class MetricsSettings:
    host: str = setting("127.0.0.1", doc="address the gateways' and workers' /metrics listen on (0.0.0.0 for a remote Prometheus)")
    shard_stats_interval: float = setting(5.0, _positive, "seconds between reads of stream length, pending count and persist lag per shard")


@dataclass(frozen=True)
class Config:
    data: DataSettings = DataSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    gateway: GatewaySettings = GatewaySettings()
    engine: EngineSettings = EngineSettings()
    admin_api: AdminApiSettings = AdminApiSettings()
    auth: AuthSettings = AuthSettings()
    smtp: SmtpSettings = SmtpSettings()
    log: LogSettings = LogSettings()
    shopify: ShopifySettings = ShopifySettings()
    billing: BillingSettings = BillingSettings()
    rest_api: RestApiSettings = RestApiSettings()
    webhooks: WebhookSettings = WebhookSettings()
    data_rights: DataRightsSettings = DataRightsSettings()
    workflow: WorkflowSettings = WorkflowSettings()
    metrics: MetricsSettings = MetricsSettings()

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir).resolve()

    def replace(self, **sections: Mapping[str, Any]) -> "Config":
        """A copy with some keys changed, validated like the original (used by tests and `up`)."""
        changes = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = _build_section(name, type(current), {**dataclasses.asdict(current), **values})
        return dataclasses.replace(self, **changes)


def _coerce(key: str, typ: type, raw: Any, from_env: bool) -> Any:
    expected = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}[typ]
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return raw.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(f"config {key}: expected {expected}, got {raw!r}")
    if typ is int or typ is float:
        # TOML gives numbers (an int where a float is expected is fine, never the reverse, never
        # a bool); the environment gives text, parsed here.
        if isinstance(raw, int) and not isinstance(raw, bool) or typ is float and isinstance(raw, float):
            return typ(raw)
        if from_env and isinstance(raw, str):
            try:
                return typ(raw.strip())
            except ValueError:
                pass
        raise ConfigError(f"config {key}: expected {expected}, got {raw!r}")
    if not isinstance(raw, str):
        raise ConfigError(f"config {key}: expected {expected}, got {raw!r}")
    return raw


def _build_section(name: str, cls: type, values: Mapping[str, Any], from_env: frozenset[str] = frozenset()):
    hints = get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(f"config {name}.{key}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for key, f in known.items():
        if key not in values:
            continue
        full = f"{name}.{key} (env CONVOT_{name.upper()}_{key.upper()})"
        value = _coerce(full, hints[key], values[key], key in from_env)
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"config {full}: expected {problem}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file, apply ``CONVOT_*`` overrides, validate everything, return it frozen."""
    env = os.environ if env is None else env
    path = Path(path or env.get("CONVOT_CONFIG") or DEFAULT_CONFIG_FILE)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found (set CONVOT_CONFIG to a TOML file)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML ({exc})") from None

    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    hints = get_type_hints(Config)
    for name in raw:
        if name not in sections:
            raise ConfigError(f"config [{name}]: unknown section (known: {', '.join(sorted(sections))})")
        if not isinstance(raw[name], dict):
            raise ConfigError(f"config {name}: expected a [table]")

    env_values: dict[str, dict[str, str]] = {}
    for var, value in env.items():
        if not var.startswith("CONVOT_") or var in _RESERVED_ENV or var.startswith(_RESERVED_ENV_PREFIXES):
            continue
        rest = var[len("CONVOT_"):].lower()
        for name in sorted(sections, key=len, reverse=True):
            if rest.startswith(name + "_"):
                env_values.setdefault(name, {})[rest[len(name) + 1:]] = value
                break
        else:
            raise ConfigError(f"environment {var}: no such configuration key")

    built = {}
    for name in sections:
        values = dict(raw.get(name, {}))
        overrides = env_values.get(name, {})
        for key in overrides:
            if key not in {f.name for f in dataclasses.fields(hints[name])}:
                raise ConfigError(f"environment CONVOT_{name.upper()}_{key.upper()}: no such configuration key")
        values.update(overrides)
        built[name] = _build_section(name, hints[name], values, frozenset(overrides))
    config = Config(**built)
    if config.database.pool_min > config.database.pool_max:
        raise ConfigError("config database.pool_min: expected at most database.pool_max")
    return config
