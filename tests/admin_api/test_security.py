"""HTTP hardening: security headers, HSTS and Secure cookies under TLS, direct TLS 1.2+ serving,
security.txt."""

import asyncio
import datetime as dt
import ssl
import warnings

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from admin_api.app import create_app, serve
from admin_api.security import SecurityPolicy, tls_context
from convot.embedded import free_port
from tests.admin_api.conftest import PASSWORD, make_user


async def test_every_answer_carries_the_security_headers(client):
    for method, path in (("GET", "/healthz"), ("GET", "/v1/me"), ("GET", "/nowhere"), ("POST", "/v1/auth/login")):
        answer = await client.call(method, path, {"email": "x@example.com", "password": "y"} if method == "POST" else None)
        h = answer.headers
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"] and "default-src 'none'" in h["Content-Security-Policy"]
        assert h["X-Content-Type-Options"] == "nosniff"
        assert h["Referrer-Policy"] == "no-referrer"
        assert h["X-Frame-Options"] == "DENY"
        assert h["Cache-Control"] == "no-store"
        assert "Strict-Transport-Security" not in h  # plain HTTP: no HSTS


async def test_security_txt(client):
    answer = await client.call("GET", "/.well-known/security.txt")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
    fields = dict(line.split(": ", 1) for line in answer.body.strip().splitlines())
    assert fields["Contact"] == "mailto:security@convot.localhost"
    expires = dt.datetime.fromisoformat(fields["Expires"].replace("Z", "+00:00"))
    assert dt.datetime.now(dt.timezone.utc) < expires < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=366)
    assert fields["Canonical"].endswith("/.well-known/security.txt")


async def test_behind_https_cookies_are_secure_and_hsts_is_sent(api_config):
    cfg = api_config.replace(admin_api={"public_url": "https://convot.example", "port": free_port()},
                             smtp={"port": free_port()})
    app = create_app(cfg)
    server = TestServer(app)
    await server.start_server()
    try:
        user_id, email, _ = await make_user(app)
        async with aiohttp.ClientSession() as http:
            async with http.post(server.make_url("/v1/auth/login"), json={"email": email, "password": PASSWORD}) as resp:
                assert resp.status == 200
                assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
                cookies = resp.headers.getall("Set-Cookie")
        session = next(c for c in cookies if c.startswith("convot_session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=Lax" in session
    finally:
        await server.close()


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_context_refuses_anything_older_than_1_2(tmp_path):
    cert, key = _self_signed(tmp_path)
    assert tls_context(cert, key).minimum_version == ssl.TLSVersion.TLSv1_2


async def test_serve_speaks_tls_directly(api_config, tmp_path):
    cert, key = _self_signed(tmp_path)
    port = free_port()
    cfg = api_config.replace(admin_api={"tls_cert": cert, "tls_key": key, "port": port,
                                        "public_url": f"https://127.0.0.1:{port}"},
                             smtp={"port": free_port()})
    task = asyncio.create_task(serve(cfg))
    try:
        client_ctx = ssl.create_default_context(cafile=cert)
        for _ in range(100):
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=client_ctx) as resp:
                        assert resp.status == 200
                        assert resp.headers["Strict-Transport-Security"].startswith("max-age=63072000")
                        break
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the TLS server did not come up")
        # plain HTTP on the TLS port gets nowhere
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    await resp.read()
        # a client that stops at TLS 1.1 cannot connect
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cert)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is deprecated: that is the point
            old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, aiohttp.ClientError, OSError)):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=old) as resp:
                    await resp.read()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_client_ip_believes_forwarded_for_only_from_trusted_proxies():
    from convot.config import load_config

    cfg = load_config(env={}).replace(admin_api={"trusted_proxies": "10.0.0.0/8"})
    policy = SecurityPolicy.from_config(cfg)
    assert policy.client_ip("10.1.1.1", "203.0.113.9") == "203.0.113.9"
    assert policy.client_ip("10.1.1.1", "198.51.100.7, 10.2.2.2") == "198.51.100.7"
    assert policy.client_ip("203.0.113.50", "198.51.100.7") == "203.0.113.50"  # not a trusted proxy
    assert policy.client_ip("10.1.1.1", "not-an-ip") == "10.1.1.1"
    assert policy.client_ip("10.1.1.1", None) == "10.1.1.1"
