"""Development only: the mails caught by the local SMTP catch-all, at ``/dev/mail``.

Installed only when the admin API runs the catch-all (``admin_api.development`` and a loopback
``smtp.host``), and answered only to loopback clients.
"""

from __future__ import annotations

import datetime as dt
import html
import ipaddress
import re

from aiohttp import web

from admin_api import keys
from admin_api.call import Call
from admin_api.errors import ApiError
from admin_api.routing import RouteTable

routes = RouteTable(tag="development")

_URL = re.compile(r"https?://[^\s<>\"']+")


def _linkify(escaped: str) -> str:
    return _URL.sub(lambda m: f'<a href="{m.group(0)}" rel="noreferrer">{m.group(0)}</a>', escaped)


def render(mails) -> str:
    parts = ["<!doctype html><meta charset=utf-8><title>Convot dev mail</title>",
             f"<h1>Caught mail ({len(mails)})</h1>",
             "<p>Every mail sent by this development instance. Newest first.</p>"]
    for mail in reversed(mails):
        when = dt.datetime.fromtimestamp(mail.received_at).strftime("%Y-%m-%d %H:%M:%S")
        parts.append(
            f"<article><h2>{html.escape(mail.subject)}</h2>"
            f"<p>{when} &middot; to {html.escape(', '.join(mail.to))}</p>"
            f"<pre>{_linkify(html.escape(mail.text))}</pre></article><hr>")
    return "".join(parts)


@routes.route("GET", "/dev/mail", permission="public", content_type="text/html",
              summary="Development: mails caught by the local SMTP catch-all")
async def dev_mail(call: Call) -> web.Response:
    server = call.app.get(keys.CATCH_ALL)
    remote = call.request.remote or ""
    try:
        loopback = ipaddress.ip_address(remote).is_loopback
    except ValueError:
        loopback = False
    if server is None or not loopback:
        raise ApiError("not_found")
    return web.Response(text=render(server.messages()), content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"})
