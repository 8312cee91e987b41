"""The mails the admin API sends.  Links carry tokens in the URL fragment (``#token=``), which
browsers never send to a server nor put in a Referer."""

from __future__ import annotations

from convot.mail import Mail


def _base(config) -> str:
    return config.admin_api.public_url.rstrip("/")


def verify_email(config, to: str, token: str) -> Mail:
    hours = config.auth.verify_token_ttl // 3600 or 1
    return Mail(to, "Confirm your email address for Convot",
                "Welcome to Convot!\n\nConfirm your email address by opening this link:\n\n"
                f"{_base(config)}/app/verify-email#token={token}\n\n"
                f"The link works once and expires in {hours} hour(s). If you did not sign up, ignore this mail.\n",
                kind="verify_email")


def account_exists(config, to: str) -> Mail:
    return Mail(to, "Someone tried to sign up to Convot with your address",
                "Someone (maybe you) tried to create a Convot account with this email address, which already "
                "has one.\n\n"
                f"Sign in: {_base(config)}/app/login\n"
                f"Forgot your password? {_base(config)}/app/forgot-password\n\n"
                "If it was not you, you can ignore this mail: nothing changed.\n",
                kind="account_exists")


def reset_password(config, to: str, token: str) -> Mail:
    minutes = config.admin_api.reset_window // 60
    return Mail(to, "Reset your Convot password",
                "Someone (hopefully you) asked to reset the password of your Convot account.\n\n"
                f"{_base(config)}/app/reset-password#token={token}\n\n"
                f"The link works once and expires in {minutes} minutes. If you receive several, any of them "
                "works until one is used. If you did not ask, ignore this mail: your password is unchanged.\n",
                kind="reset_password")


def password_changed(config, to: str) -> Mail:
    return Mail(to, "Your Convot password was changed",
                "The password of your Convot account was just changed.\n\n"
                f"If this was not you, reset it at once: {_base(config)}/app/forgot-password\n",
                kind="password_changed")


def mfa_changed(config, to: str, enabled: bool) -> Mail:
    what = "turned on" if enabled else "turned off"
    return Mail(to, f"Two-factor authentication was {what}",
                f"Two-factor authentication was {what} on your Convot account.\n\n"
                f"If this was not you, reset your password at once: {_base(config)}/app/forgot-password\n",
                kind="mfa_changed")


def email_change(config, to: str, token: str) -> Mail:
    return Mail(to, "Confirm your new email address for Convot",
                "Confirm that this address should become the email of your Convot account:\n\n"
                f"{_base(config)}/app/confirm-email#token={token}\n\n"
                "The link works once and expires in 1 hour. If you did not ask for this, ignore this mail.\n",
                kind="email_change")


def email_change_notice(config, to: str) -> Mail:
    return Mail(to, "A change of your Convot email address was requested",
                "Someone signed in to your Convot account asked to move it to another email address. It only "
                "changes once the new address confirms.\n\n"
                f"If this was not you, reset your password at once: {_base(config)}/app/forgot-password\n",
                kind="email_change_notice")


def invite(config, to: str, org_name: str, role: str, token: str) -> Mail:
    return Mail(to, f"You are invited to join {org_name} on Convot",
                f"You are invited to join {org_name} on Convot as {role}.\n\n"
                f"{_base(config)}/app/accept-invite#token={token}\n\n"
                "The invitation works once and expires in 7 days. Sign up or sign in with this email address "
                "to accept it.\n",
                kind="invite")
