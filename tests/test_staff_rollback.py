"""Undoing the staff console (migration 21) leaves no staff session an admin: the
console's regnotify-issued tokens (ten hours) would otherwise be admin again by their
claims alone, member or not."""

from __future__ import annotations

import pytest

from db.install.migrations import migrate
from db.install.undo import rollback
from tests.install_helpers import database
from tests.pg import as_role, connect
from tests.staff_helpers import staff_claims


@pytest.mark.parametrize("kind", ["vanilla", "supabase"])
def test_after_undoing_21_a_regnotify_staff_token_is_no_admin(pg_cluster, kind):
    with database(pg_cluster, kind) as db:
        migrate(db.owner_url)
        with connect(db.owner_url) as c:
            c.execute("INSERT INTO registrations (customer_name, customer_phone) "
                      "VALUES ('Ana Lopez', '+17135550101')")
            c.execute("INSERT INTO staff_members (email, name) "
                      "VALUES ('sam@dealer.example', 'Sam')")
        rollback(db.owner_url, 20, drop_data=True)
        staff = staff_claims("sam@dealer.example")
        supabase_admin = staff_claims("ops@dealer.example", iss="https://x.supabase.co/auth/v1")
        for claims, admin in ((staff, False), (supabase_admin, True)):
            with as_role(db.owner_url, "authenticated", claims) as c:
                assert c.execute("SELECT public.jwt_is_admin() AS a").fetchone()["a"] is admin
                seen = c.execute("SELECT count(*) AS n FROM registrations").fetchone()["n"]
                assert seen == (1 if admin else 0), claims
