"""kombu's Redis transport, keeping one Redis client per channel instead of one per command.

kombu's Redis channel builds a new `redis.Redis` object for every publish,
acknowledgement and event (`Channel.conn_or_acquire`), all on the same
connection pool. Building one fills its table of response callbacks: about
0.7 ms of CPU each on a two-core machine, and a send takes four or five of
them (its task published by the tick, the task-sent, received, started and
succeeded events). A `redis.Redis` on a connection pool is safe to share
between threads, so the channel keeps the one it built, for as long as its
pool lives.

`use()` registers it for the redis:// and rediss:// schemes of this process
(kombu's alias table, which is there to be extended), so every app and
worker started here uses it, the bench's bare-Celery peer included. Other
brokers (RabbitMQ) are untouched.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

#: Where kombu finds the transport below.
TRANSPORT_PATH = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    """A Redis channel that reuses its synchronous client."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # BRPOP and pub/sub hold their connection: kombu keeps those clients itself.
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        # A channel whose pools were dropped (a reconnect) gets a client on the new one.
        if client is None or client.connection_pool is not self.pool:
            client = super()._create_client()
            self._shared_client = client
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


def use() -> None:
    """Make redis:// and rediss:// broker URLs use this transport in this process."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = TRANSPORT_PATH
