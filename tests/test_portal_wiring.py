"""The customer page is built with the relay's app, from the relay's own settings object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from tasks.portal.signin import ConsoleSender
from tasks.relay import create_app
from tests.relay_helpers import relay_settings


@pytest.fixture()
def build() -> Iterator[Any]:
    made: list[Starlette] = []

    def make(**kwargs: Any) -> Starlette:
        app = create_app(relay_settings(database_url="postgresql://nobody@127.0.0.1:9/none"),
                         **kwargs)
        made.append(app)
        return app

    yield make
    for app in made:
        app.state.relay.stop()


def test_one_settings_object_for_the_relay_and_the_page(build) -> None:
    app = build(loopback=True)
    portal = app.state.portal  # there before any request
    assert portal.settings is app.state.relay.settings
    # Loopback without SESSION_SECRET: one key of this process, in that one object.
    assert portal.settings.session_secret is not None
    assert portal.loopback and isinstance(portal.sender, ConsoleSender)


def test_off_loopback_the_page_prints_no_codes_and_makes_no_key(build) -> None:
    app = build()
    portal = app.state.portal
    assert portal.settings is app.state.relay.settings
    assert not portal.loopback and portal.sender is None
    assert portal.settings.session_secret is None
