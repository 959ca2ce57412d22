"""A text's direct POST over HTTPS verifies the server as requests would.

The POST creating a message goes to the requests session's urllib3 pool
directly (tasks/providers/twilio_sms.py). Real Twilio is HTTPS, so that pool
must be the adapter's own, with its certificate checks: a server whose
certificate no trusted authority signed is refused before anything is sent,
and one signed by the CA bundle the environment names is used.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tasks.providers.twilio_sms import TwilioSms

SID = "AC" + "0" * 32
TOKEN = "tls-test-token"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Twilio(BaseHTTPRequestHandler):
    """Just enough of Messages.json: every POST is accepted and recorded."""

    posts: list[tuple[str, str | None, str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.posts.append((self.path, self.headers.get("Authorization"),
                           self.rfile.read(length).decode()))
        body = json.dumps({"sid": "SM" + "1" * 32, "status": "queued", "account_sid": SID,
                           "to": "+15555550100", "body": "x"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def https_twilio(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    _Twilio.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Twilio)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _provider(base_url: str) -> TwilioSms:
    from tasks.settings import Settings

    return TwilioSms(Settings(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                              twilio_from_number="+15005550006", twilio_api_base_url=base_url,
                              provider_timeout_s=5))


def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    https_twilio: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.providers.base import ProviderError, Sms

    url, _cert = https_twilio
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProviderError) as caught:
        _provider(url).send(Sms(to="+15555550100", body="Hello"))
    assert caught.value.code == "network" and "certificate" in caught.value.message.lower()
    assert _Twilio.posts == []


def test_a_certificate_the_named_bundle_signs_is_used(
    https_twilio: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from requests.auth import _basic_auth_str

    from tasks.providers.base import Sms

    url, cert = https_twilio
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    provider = _provider(url)
    assert provider.send(Sms(to="+15555550100", body="Your plates are ready & waiting")) \
        == "SM" + "1" * 32
    [(path, auth, form)] = _Twilio.posts
    assert path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert auth == _basic_auth_str(SID, TOKEN)
    assert "Body=Your+plates+are+ready+%26+waiting" in form
    # The POST went the direct way, on the adapter's pool for that URL.
    assert len(provider._client().http_client._targets) == 1
