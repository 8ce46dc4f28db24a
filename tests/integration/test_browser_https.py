"""HTTPS trusted by a browser, as mkcert does it (issue 20 item 7): headless Chromium refuses the lab's
certificate until ``labctl certs --install`` puts the lab's CA in its NSS database (``~/.pki/nssdb``), then loads
``https://<app>.localhost:<port>/`` without ``--ignore-certificate-errors``; ``--uninstall`` takes it out again.

HOME is a temporary directory (Chromium reads ``$HOME/.pki/nssdb``) and ``LABCTL_TRUST_STORES=nss`` keeps the
test away from the machine's system store, so nothing of the machine's trust changes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Lab
from tests.integration.helpers import chromium

pytestmark = pytest.mark.docker


def _page(url: str, profile: Path) -> str:
    """The page headless Chromium shows for ``url`` (a fresh browser each time: NSS is read at start)."""
    driver = chromium(profile)
    try:
        driver.get(url)
        return driver.page_source
    finally:
        driver.quit()


def test_chromium_trusts_the_lab_after_certs_install(
    lab: Lab, cr_app: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LABCTL_TRUST_STORES", "nss")
    url = f"https://{cr_app}.localhost:{lab.json('status')['router']['https_port']}/"

    before = _page(url, tmp_path / "profile-1")
    assert "ERR_CERT_AUTHORITY_INVALID" in before, before[:500]

    out = lab.ok("certs", "--install")
    nssdb = home / ".pki" / "nssdb"
    assert out.strip() == f"Chromium's NSS database: installed as 'labctl {lab.name} CA' ({nssdb})"

    # trusted now; a page that is another network error (the machine busy: CI saw one once) is loaded again,
    # at most three times, but a certificate error is never retried
    for attempt in range(3):
        after = _page(url, tmp_path / f"profile-2-{attempt}")
        assert "ERR_CERT" not in after, after[:500]
        if f'"app": "{cr_app}"' in after or f'"app":"{cr_app}"' in after:
            break
    else:
        raise AssertionError(re.findall(r"net::ERR_\w+|ERR_\w+", after)[:3] or after[-800:])

    out = lab.ok("certs", "--uninstall")
    assert out.strip() == f"Chromium's NSS database: removed 'labctl {lab.name} CA' ({nssdb})"
    listed = subprocess.run(["certutil", "-L", "-d", f"sql:{nssdb}"], capture_output=True, text=True).stdout
    assert f"labctl {lab.name} CA" not in listed
    again = _page(url, tmp_path / "profile-3")
    assert "ERR_CERT_AUTHORITY_INVALID" in again
