"""RFC 6238 TOTP (pure): the RFC's own test vectors, the ±1 step window, no reuse."""

import pytest

from admin_api import totp

RFC_SECRET = b"12345678901234567890"


@pytest.mark.parametrize("unix_time, expected", [
    # RFC 6238 appendix B (SHA-1), last 6 of the 8 digits
    (59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"),
    (2000000000, "279037"), (20000000000, "353130"),
])
def test_rfc_6238_vectors(unix_time, expected):
    assert totp.totp(RFC_SECRET, unix_time) == expected


def test_rfc_4226_hotp_vectors():
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
    assert [totp.hotp(RFC_SECRET, i) for i in range(10)] == expected


def test_codes_of_the_neighbouring_steps_are_accepted_and_no_further():
    t = 1_700_000_000.0
    step = totp.step_at(t)
    for delta in (-1, 0, 1):
        assert totp.accepted_step(RFC_SECRET, totp.hotp(RFC_SECRET, step + delta), t, None) == step + delta
    for delta in (-2, 2):
        assert totp.accepted_step(RFC_SECRET, totp.hotp(RFC_SECRET, step + delta), t, None) is None


def test_a_code_is_accepted_once_and_older_ones_never_after():
    t = 1_700_000_000.0
    step = totp.step_at(t)
    code = totp.hotp(RFC_SECRET, step)
    assert totp.accepted_step(RFC_SECRET, code, t, last_step=step) is None
    older = totp.hotp(RFC_SECRET, step - 1)
    assert totp.accepted_step(RFC_SECRET, older, t, last_step=step) is None
    newer = totp.hotp(RFC_SECRET, step + 1)
    assert totp.accepted_step(RFC_SECRET, newer, t, last_step=step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６", "12 34 5"])
def test_malformed_codes_are_refused(code):
    assert totp.accepted_step(RFC_SECRET, code, 1_700_000_000.0, None) is None


def test_spaces_inside_a_code_are_tolerated():
    t = 1_700_000_000.0
    code = totp.totp(RFC_SECRET, t)
    assert totp.accepted_step(RFC_SECRET, code[:3] + " " + code[3:], t, None) == totp.step_at(t)


def test_provisioning_uri_names_issuer_account_and_secret():
    uri = totp.provisioning_uri(RFC_SECRET, "ana@example.com", "Convot")
    assert uri.startswith("otpauth://totp/Convot:ana@example.com?")
    assert "secret=" + totp.secret_to_base32(RFC_SECRET) in uri
    assert "period=30" in uri and "digits=6" in uri and "issuer=Convot" in uri


def test_generated_secrets_are_160_bits_and_distinct():
    a, b = totp.generate_secret(), totp.generate_secret()
    assert len(a) == 20 and a != b
