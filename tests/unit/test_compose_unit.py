"""The Compose controller's pieces that need no engine (issue 20 item 6): host paths, settings, the file itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from labctl.controller.releases import ENV_HOST_ROOT, host_path

REPO = Path(__file__).resolve().parents[2]


def test_a_controller_in_a_container_reads_the_hosts_files_under_the_host_root(monkeypatch):
    monkeypatch.delenv(ENV_HOST_ROOT, raising=False)
    assert host_path("/home/me/app") == Path("/home/me/app")
    monkeypatch.setenv(ENV_HOST_ROOT, "/host")
    assert host_path("/home/me/app") == Path("/host/home/me/app")
    assert host_path("relative/app") == Path("relative/app")


def test_init_with_bad_settings_is_one_line_and_creates_nothing(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "labctl.controller", "supervise", "--init", "--lab", "x", "--http-port", "70000"],
        capture_output=True,
        text=True,
        env={"LABCTL_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "labctl.controller: Invalid port 70000\n")
    assert not (tmp_path / "state").exists()


def test_supervise_without_state_and_without_init_says_so(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "labctl.controller", "supervise", "--lab", "x"],
        capture_output=True,
        text=True,
        env={"LABCTL_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=REPO,
        timeout=60,
    )
    assert (
        r.returncode == 1
        and r.stderr == f"labctl.controller: lab 'x' has no state in {tmp_path / 'x'}; run `labctl up`\n"
    )


def test_the_compose_service_is_labelled_with_its_lab_and_builds_from_the_local_base():
    svc = yaml.safe_load((REPO / "compose" / "docker-compose.yml").read_text())["services"]["controller"]
    assert svc["labels"]["io.labctl.controller"] == "${LABCTL_LAB:-default}"
    assert svc["build"]["args"]["BASE"] == "${LABCTL_BASE_IMAGE:-labctl/base:trixie}"
    assert "image" not in svc  # named after the Compose project: `down --rmi local` removes it
    assert "--init" in svc["command"] and svc["restart"] == "unless-stopped"
    assert "/:/host:ro" in svc["volumes"] and svc["environment"][ENV_HOST_ROOT] == "/host"
