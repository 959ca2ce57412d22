"""The customer page at /portal: sign in with the phone, follow the registration, choose how.

views (routes), signin (who texts and checks the code), limits (what
regnotify counts itself), state (one relay's portal), data (the customer's
rows, read as the customer), i18n (strings/<lang>.toml and Babel dates).
"""

from __future__ import annotations

from starlette.routing import Route

from tasks.portal import views

ROUTES = [
    Route("/portal", views.page, methods=["GET"]),
    Route("/portal/portal.css", views.stylesheet, methods=["GET"]),
    Route("/portal/code", views.send_code, methods=["POST"]),
    Route("/portal/sign-in", views.sign_in, methods=["POST"]),
    Route("/portal/preference", views.preference, methods=["POST"]),
    Route("/portal/sign-out", views.sign_out, methods=["POST"]),
]
