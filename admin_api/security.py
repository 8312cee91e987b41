"""HTTP hardening: security headers, client IP behind trusted proxies, origins, TLS, security.txt."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from admin_api.routing import RouteTable

routes = RouteTable(tag="system")

# Strict defaults for API answers; a route that serves a page sets its own CSP first.
DEFAULT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
HSTS = "max-age=63072000; includeSubDomains"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass(frozen=True)
class SecurityPolicy:
    tls: bool                     # served over TLS (directly or behind a terminating proxy)
    allowed_origins: frozenset[str]
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    samesite: str

    @classmethod
    def from_config(cls, config) -> "SecurityPolicy":
        a = config.admin_api
        origins = {origin_of(a.public_url)}
        origins.update(origin_of(o.strip()) for o in a.allowed_origins.split(",") if o.strip())
        nets = tuple(ipaddress.ip_network(c.strip(), strict=False) for c in a.trusted_proxies.split(",") if c.strip())
        return cls(tls=bool(a.tls_cert) or a.public_url.startswith("https://"), allowed_origins=frozenset(origins),
                   trusted_proxies=nets, samesite=a.cookie_samesite.capitalize())

    def headers(self) -> dict[str, str]:
        out = dict(DEFAULT_HEADERS)
        if self.tls:
            out["Strict-Transport-Security"] = HSTS
        return out

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted_proxies)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str:
        """The client's address: the peer, or behind trusted proxies the last untrusted hop."""
        peer = peer or "0.0.0.0"
        if not forwarded_for or not self._trusted(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed chain is not believed
            if not self._trusted(hop):
                return hop
        return peer

    def origin_allowed(self, origin: str) -> bool:
        return origin in self.allowed_origins


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Server TLS: 1.2 minimum, the library's default (modern) ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context


@routes.route("GET", "/.well-known/security.txt", permission="public", content_type="text/plain",
              summary="Security contact (RFC 9116)")
async def security_txt(call) -> web.Response:
    a = call.config.admin_api
    expires = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=180)).replace(microsecond=0)
    base = a.public_url.rstrip("/")
    text = (f"Contact: {a.security_contact}\n"
            f"Expires: {expires.isoformat().replace('+00:00', 'Z')}\n"
            "Preferred-Languages: en\n"
            f"Canonical: {base}/.well-known/security.txt\n")
    return web.Response(text=text, content_type="text/plain")
