"""Configuration: defaults, CONVOT_* overrides, one-line errors naming the key."""

import pytest

from convot.config import ConfigError, load_config


def test_defaults_load_from_the_repo_file():
    config = load_config(env={})
    assert config.gateway.port == 8765
    assert config.engine.shards == 16
    assert config.database.url == ""


def test_environment_overrides_the_file():
    config = load_config(env={"CONVOT_GATEWAY_PORT": "9100", "CONVOT_DATABASE_URL": "postgresql://u@h/db",
                              "CONVOT_REDIS_CLUSTER": "true", "CONVOT_GATEWAY_RATE_LIMIT_PER_SECOND": "2.5"})
    assert config.gateway.port == 9100
    assert config.database.url == "postgresql://u@h/db"
    assert config.redis.cluster is True
    assert config.gateway.rate_limit_per_second == 2.5


@pytest.mark.parametrize(
    "env, key",
    [
        ({"CONVOT_GATEWAY_PORT": "abc"}, "gateway.port"),
        ({"CONVOT_GATEWAY_PORT": "70000"}, "gateway.port"),
        ({"CONVOT_ENGINE_SHARDS": "0"}, "engine.shards"),
        ({"CONVOT_AUTH_WIDGET_TOKEN_TTL": "3600"}, "auth.widget_token_ttl"),
        ({"CONVOT_LOG_FORMAT": "xml"}, "log.format"),
        ({"CONVOT_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"CONVOT_REDIS_CLUSTER": "maybe"}, "redis.cluster"),
        ({"CONVOT_GATEWAY_PORTX": "1"}, "CONVOT_GATEWAY_PORTX"),
        ({"CONVOT_NOSUCH_THING": "1"}, "CONVOT_NOSUCH_THING"),
    ],
)
def test_bad_values_name_their_key(env, key):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    message = str(info.value)
    assert key in message
    assert "\n" not in message


def test_unknown_key_in_file_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[gateway]\nprot = 1\n")
    with pytest.raises(ConfigError, match="gateway.prot: unknown key"):
        load_config(path, env={})


def test_unknown_section_and_bad_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[gatway]\nport = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(path, env={})
    path.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path, env={})


def test_config_is_frozen():
    config = load_config(env={})
    with pytest.raises(AttributeError):
        config.gateway.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("text, ok", [
    ("port = 9000", True), ("port = 9000.5", False), ("port = true", False), ('port = "9000"', False),
    ("rate_limit_per_second = 3", True), ("rate_limit_per_second = 2.5", True), ("rate_limit_per_second = false", False),
])
def test_numbers_in_the_file_keep_their_type(tmp_path, text, ok):
    """TOML numbers: an int where a float is expected is fine; a float for an int, a bool or a
    string for either is refused (only the environment's text is parsed)."""
    path = tmp_path / "c.toml"
    path.write_text(f"[gateway]\n{text}\n")
    if ok:
        load_config(path, env={})
    else:
        with pytest.raises(ConfigError, match="gateway."):
            load_config(path, env={})
