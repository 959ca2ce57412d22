"""Tokens with invented key ids while the JWKS endpoint hangs: `python -m bench.jwks_outage`.

Serves a JWKS with one ES256 key, verifies a good token (the keys are then
known), waits out the cooldown, then makes the endpoint hang (it accepts and
never answers) and verifies N tokens with invented key ids from M threads at
once, as the relay's threads would. Prints how long the refusals took and
how many fetches reached the endpoint; the last line is one JSON object.

    python -m bench.jwks_outage                  # 20 tokens, 4 threads
    python -m bench.jwks_outage --tokens 200 --threads 16
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tasks.auth.api_tokens import verify_token
from tasks.exceptions import InvalidToken
from tasks.settings import Settings

PATH = "/auth/v1/.well-known/jwks.json"


class _Endpoint:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = str(uuid.uuid4())
        self.hang = threading.Event()
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.hang.is_set():
                    time.sleep(30)  # the outage: accepted, never answered in time
                jwk = {**ECAlgorithm.to_jwk(outer.key.public_key(), as_dict=True),
                       "kid": outer.kid, "alg": "ES256", "use": "sig"}
                body = json.dumps({"keys": [jwk]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def token(self, kid: str, key: Any = None) -> str:
        now = int(time.time())
        claims = {"iss": self.url + "/auth/v1", "sub": str(uuid.uuid4()), "aud": "authenticated",
                  "exp": now + 600, "iat": now, "role": "authenticated", "phone": "15550000000"}
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": kid})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    socket.setdefaulttimeout(None)
    endpoint = _Endpoint()
    settings = Settings(_env_file=None, supabase_url=endpoint.url,  # type: ignore[call-arg]
                        supabase_jwks_cooldown_s=0.2)
    verify_token(endpoint.token(endpoint.kid), settings)  # the keys are known
    time.sleep(0.3)  # the cooldown ran out: an outage now meets a refetch
    endpoint.hang.set()
    before = endpoint.fetches
    stranger = ec.generate_private_key(ec.SECP256R1())
    tokens = [endpoint.token(f"invented-{i}", stranger) for i in range(args.tokens)]
    took: list[float] = []

    def one(token: str) -> bool:
        started = time.monotonic()
        try:
            verify_token(token, settings)
            return False
        except InvalidToken:
            return True
        finally:
            took.append(time.monotonic() - started)

    started = time.monotonic()
    with ThreadPoolExecutor(args.threads) as pool:
        refused = sum(pool.map(one, tokens))
    total = time.monotonic() - started
    good_started = time.monotonic()
    verify_token(endpoint.token(endpoint.kid), settings)  # a known key, mid-outage
    good_s = time.monotonic() - good_started
    took.sort()
    figures = {"tokens": args.tokens, "threads": args.threads, "refused": refused,
               "total_s": round(total, 3), "slowest_s": round(took[-1], 3),
               "median_s": round(took[len(took) // 2], 4),
               "fetches_during_outage": endpoint.fetches - before,
               "known_key_mid_outage_s": round(good_s, 4)}
    print(f"{refused} of {args.tokens} invented-kid tokens refused in {total:.3f} s "
          f"({args.threads} threads; slowest {took[-1]:.3f} s); "
          f"{figures['fetches_during_outage']} fetch(es) reached the hanging endpoint")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
