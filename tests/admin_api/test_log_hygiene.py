"""Everything logged during the test session (recorded by tests/admin_api/conftest.py from its
first admin API test on, at DEBUG level) is scanned for every password, token, session cookie,
CSRF token, TOTP secret and code, and recovery code the tests used.  This module runs last."""

import re

from tests.admin_api.conftest import LOG_LINES, SECRETS

OWN_LOGGERS = ("convot.admin_api", "convot.mail")


def test_the_session_used_secrets_and_logged_lines():
    # the scan means something only if the session exercised the flows
    assert len(SECRETS) > 20, "run with the other admin API tests"
    assert any('"msg":"request"' in line for line in LOG_LINES)


def test_no_secret_appears_in_any_log_line():
    found = {}
    # A short secret (a 6-digit TOTP code) can occur by chance inside a random hex id; it counts
    # only as a whole token.  Long secrets count anywhere.
    short = {s: re.compile(r"(?<![0-9A-Za-z])" + re.escape(s) + r"(?![0-9A-Za-z])") for s in SECRETS if len(s) < 12}
    long = [s for s in SECRETS if len(s) >= 12]
    for line in LOG_LINES:
        for secret in long:
            if secret in line:
                found.setdefault(secret[:4] + "…", line[:200])
        for secret, pattern in short.items():
            if secret in line and pattern.search(line):
                found.setdefault(secret[:4] + "…", line[:200])
    assert found == {}, f"secrets in logs: {found}"


def test_our_log_lines_name_no_email_address():
    own = [line for line in LOG_LINES if re.search(r'"logger":"(' + "|".join(map(re.escape, OWN_LOGGERS)) + r')[."]', line)]
    assert own, "no admin API log lines were recorded"
    leaking = [line[:200] for line in own if re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", line)]
    assert leaking == []
