"""The documentation site builds with `mkdocs build --strict`, so a broken link fails CI.

mkdocs.yml turns every link, anchor and nav problem into a warning, and
--strict turns warnings into a failed build: a link to a page or heading that
does not exist, a page under docs/ the nav leaves out, or a snippet (the
README's first steps, sql/migrations/README.md) whose file or section is gone.
The README is not part of the site, so its links to docs/ are checked here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_build_strict_passes(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner, not a warning
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stdout + built.stderr
    # The snippets were pulled in, not left as literal markers.
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "--8&lt;--" not in home and "--8<--" not in home
    assert "See one timeline with: regnotify status" in home
    migrations = (site / "migrations" / "index.html").read_text(encoding="utf-8")
    assert "Why some numbers are missing" in migrations


def test_every_relative_link_in_the_readme_resolves():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        assert (ROOT / link).exists(), f"README links {link}, which does not exist"


def test_the_readme_stays_a_five_minute_read():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move reference to docs/"


def test_every_docs_page_the_readme_maps_is_in_the_site_nav():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav):
        for item in nav:
            for value in (item.values() if isinstance(item, dict) else [item]):
                yield from (pages(value) if isinstance(value, list) else [value])

    in_nav = set(pages(config["nav"]))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in re.findall(r"\]\(docs/([^)#]+\.md)", readme):
        assert page in in_nav, f"README maps docs/{page}, which the site's nav leaves out"
