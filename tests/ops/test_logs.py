"""convot/logs.py: JSON lines with time, level, service and the context's request or
connection id; the human format of `convot up`; secret-looking fields redacted."""

import logging

import orjson
import pytest

from convot import logs


@pytest.fixture
def capture():
    """The root handler as setup_logging installs it, writing into a list."""
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    def install(fmt: str, service: str = "gateway"):
        logs.setup_logging(service, fmt, "info")
        root = logging.getLogger()
        handler = ListHandler()
        handler.setFormatter(root.handlers[0].formatter)
        root.handlers[:] = [handler]
        return records

    saved = logging.getLogger().handlers[:]
    yield install
    logging.getLogger().handlers[:] = saved


def test_json_lines_carry_time_level_service_and_connection_id(capture):
    records = capture("json", "gateway")
    token = logs.connection_id.set("c0ffee123456")
    try:
        logging.getLogger("convot.gateway").warning("socket cut", extra={"close": 4001, "reason": "slow_consumer"})
    finally:
        logs.connection_id.reset(token)
    entry = orjson.loads(records[-1])
    assert entry["service"] == "gateway" and entry["level"] == "warning" and entry["msg"] == "socket cut"
    assert entry["connection_id"] == "c0ffee123456" and "request_id" not in entry
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    assert entry["reason"] == "slow_consumer"


def test_request_id_and_redaction_of_secret_looking_fields(capture):
    records = capture("json", "admin-api")
    token = logs.request_id.set("req-1")
    try:
        logging.getLogger("convot.admin_api").info("login", extra={
            "password": "hunter2", "api_key": "ck_1:secret", "token": "eyJ", "body": "message text", "route": "/x"})
    finally:
        logs.request_id.reset(token)
    line = records[-1]
    entry = orjson.loads(line)
    assert entry["request_id"] == "req-1" and entry["route"] == "/x"
    for key in ("password", "api_key", "token", "body"):
        assert entry[key] == "[redacted]"
    assert "hunter2" not in line and "ck_1:secret" not in line and "message text" not in line


def test_human_format_for_convot_up(capture):
    records = capture("human", "up")
    token = logs.connection_id.set("abc123")
    try:
        logging.getLogger("convot.up").info("gateway-1 exited", extra={"restarts": 1, "secret": "x"})
    finally:
        logs.connection_id.reset(token)
    line = records[-1]
    assert " up " in line and " I gateway-1 exited [abc123]" in line
    assert "restarts=1" in line and "secret=[redacted]" in line
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(line)


def test_exceptions_are_one_json_line(capture):
    records = capture("json", "engine")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("convot.engine").exception("failed")
    entry = orjson.loads(records[-1])
    assert "ValueError" in entry["exc"] and "\n" not in records[-1]
