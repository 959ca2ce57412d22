"""One error family, documented in one docstring: every class in tasks/ and db/ that
derives from RegnotifyError is drawn in db/errors.py's tree, and defined where the
tree says (db.errors or tasks.exceptions)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import db.errors

ROOT = Path(__file__).resolve().parent.parent
HOMES = {"db/errors.py", "tasks/exceptions.py"}


def _tree() -> set[str]:
    """The root and every name on a branch of the docstring's tree."""
    doc = db.errors.__doc__ or ""
    return {"RegnotifyError", *re.findall(r"(?:├──|└──)\s+(\w+)", doc)}


def _family_classes() -> dict[str, str]:
    """Class name -> the file defining it, for every subclass of RegnotifyError (by name)."""
    bases: dict[str, tuple[str, set[str]]] = {}
    for package in ("tasks", "db"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    names = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
                    bases[node.name] = (path.relative_to(ROOT).as_posix(), names)
    family = {"RegnotifyError"}
    grew = True
    while grew:
        grew = False
        for name, (_, parents) in bases.items():
            if name not in family and parents & family:
                family.add(name)
                grew = True
    return {name: bases[name][0] for name in family}


def test_every_member_is_in_the_tree_and_defined_in_a_home():
    tree = _tree()
    found = _family_classes()
    assert {"ProviderError", "ConfigurationError", "StoreUnavailable"} <= set(found)
    missing = sorted(set(found) - tree)
    assert not missing, f"add these to db/errors.py's tree: {missing}"
    strays = sorted(f"{name} ({path})" for name, path in found.items() if path not in HOMES)
    assert not strays, f"define these in db/errors.py or tasks/exceptions.py: {strays}"


def test_configuration_errors_are_the_familys_and_still_value_errors():
    from tasks.exceptions import ProviderConfigError, RelayConfigError

    for cls in (ProviderConfigError, RelayConfigError):
        assert issubclass(cls, db.errors.ConfigurationError) and issubclass(cls, ValueError)


def test_the_provider_adapters_refuse_missing_credentials_with_the_familys_error():
    import pytest

    from tasks.exceptions import ProviderConfigError
    from tasks.portal.signin import TwilioVerifySender
    from tasks.providers.resend_email import ResendEmail
    from tasks.providers.twilio_sms import TwilioSms
    from tasks.settings import Settings

    bare = Settings(_env_file=None, twilio_account_sid=None, twilio_auth_token=None,
                    resend_api_key=None)
    for adapter, words in ((TwilioSms, "Twilio needs TWILIO_ACCOUNT_SID"),
                           (ResendEmail, "Resend needs RESEND_API_KEY"),
                           (TwilioVerifySender, "TWILIO_VERIFY_SERVICE_SID needs")):
        with pytest.raises(ProviderConfigError, match=words):
            adapter(bare)
