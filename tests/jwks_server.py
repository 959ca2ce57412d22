"""A local Supabase Auth JWKS endpoint (GET /auth/v1/.well-known/jwks.json) with real keys.

Serves the key set in Supabase's format (public JWKs with kid, alg, use,
key_ops) and lets a test rotate it; mints tokens in Supabase's claim shape
signed with the private halves. Counts fetches, so tests can see caching.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


@dataclass
class SigningKey:
    """A private key, its kid and algorithm."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def es256(cls) -> SigningKey:
        return cls(str(uuid.uuid4()), "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rs256(cls) -> SigningKey:
        return cls(str(uuid.uuid4()), "RS256",
                   rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_jwk(self) -> dict[str, Any]:
        algo = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        jwk = algo.to_jwk(self.private.public_key(), as_dict=True)
        # As Supabase serves them.
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig",
                "key_ops": ["verify"], "ext": True}


@dataclass
class JwksServer:
    """The endpoint; `keys` is what it serves (a test may replace it at any time)."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    #: Seconds each fetch hangs before answering (an outage: 0 answers at once).
    delay_s: float = 0.0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def issuer(self) -> str:
        return self.url + "/auth/v1"

    def start(self) -> JwksServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                outer.fetches += 1
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                body = json.dumps({"keys": [k.public_jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def token(self, key: SigningKey, **claims: Any) -> str:
        """A Supabase access token signed with `key` (claims override the defaults)."""
        return jwt.encode(supabase_claims(self.issuer, **claims), key.private,
                          algorithm=key.alg, headers={"kid": key.kid})


def supabase_claims(issuer: str, **extra: Any) -> dict[str, Any]:
    """An access token's claims as Supabase Auth writes them (a phone user by default)."""
    now = int(time.time())
    return {"iss": issuer, "sub": str(uuid.uuid4()), "aud": "authenticated",
            "exp": now + 3600, "iat": now, "role": "authenticated", "phone": "15551230001",
            "app_metadata": {"provider": "phone"}, "user_metadata": {},
            "aal": "aal1", "session_id": str(uuid.uuid4()), "is_anonymous": False, **extra}
