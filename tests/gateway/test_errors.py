"""The error table: unique codes, close codes in their documented ranges."""

from gateway.errors import CLOSE_CODES, ERRORS, RECONNECT_RANGE, TERMINAL_RANGE, GatewayError, is_reconnect


def test_close_codes_are_unique_and_in_range():
    closing = [s for s in ERRORS.values() if s.close_code is not None]
    assert len({s.close_code for s in closing}) == len(closing)
    for s in closing:
        assert s.close_code in RECONNECT_RANGE or s.close_code in TERMINAL_RANGE or s.close_code == 1009, s


def test_reconnect_and_terminal_split():
    for code in ("server_shutdown", "slow_consumer", "token_expired", "flood", "reauthenticate"):
        assert is_reconnect(ERRORS[code].close_code), code
    for code in ("auth_failed", "token_revoked", "access_revoked", "protocol_violation"):
        assert ERRORS[code].close_code in TERMINAL_RANGE and not is_reconnect(ERRORS[code].close_code)
    assert CLOSE_CODES[4001] == "slow_consumer"


def test_close_reason_is_short_and_coded():
    err = GatewayError("auth_failed", "expired")
    assert err.close_code == 4401 and err.close_reason == "auth_failed:expired"
    assert len(GatewayError("auth_failed", "x" * 500).close_reason.encode()) <= 123
    assert GatewayError("slow_consumer").close_reason == "slow_consumer"
