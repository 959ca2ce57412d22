"""The staff console at /staff: every message, failure and reply, and what to do about them.

web (frame, cookies, CSRF, the member as the database says), signin (who e-mails
the code), signin_routes, pages (the GET pages), actions (the POSTs), data (the
rows, read as the caller), words (statuses in words).
"""

from __future__ import annotations

from starlette.routing import Route

from tasks.staff import actions, pages, signin_routes, web

ROUTES = [
    Route("/staff", pages.messages, methods=["GET"]),
    Route("/staff/staff.css", web.stylesheet, methods=["GET"]),
    Route("/staff/code", signin_routes.send_code, methods=["POST"]),
    Route("/staff/sign-in", signin_routes.sign_in, methods=["POST"]),
    Route("/staff/sign-out", signin_routes.sign_out, methods=["POST"]),
    Route("/staff/registrations/{id}", pages.registration, methods=["GET"]),
    Route("/staff/registrations/{id}/send", actions.send_now, methods=["POST"]),
    Route("/staff/registrations/{id}/silence", actions.silence_next, methods=["POST"]),
    Route("/staff/deliveries/{id}/resend", actions.resend, methods=["POST"]),
    Route("/staff/handled", actions.mark_handled, methods=["POST"]),
    Route("/staff/attention", pages.attention, methods=["GET"]),
    Route("/staff/replies", pages.replies, methods=["GET"]),
    Route("/staff/queue", pages.queue, methods=["GET"]),
]
