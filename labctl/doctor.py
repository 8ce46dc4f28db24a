"""``labctl doctor``'s checks (lab-spec §10): the engine, the shared images, the lab's controller and which
fault kinds this engine and kernel support, each checked for real (the fault probe is cached per engine).
Data only: the CLI renders the report as text or JSON."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from labctl import const
from labctl.client import Client
from labctl.domain.faults import KINDS
from labctl.engine.docker import Engine, connect
from labctl.engine.faults import FaultEngine
from labctl.errors import EngineError, LabError
from labctl.labdir import LabDir


@dataclass(frozen=True)
class Check:
    name: str  # engine | image | controller | budgets
    status: str  # ok | warn | error | info
    detail: str


@dataclass
class DoctorReport:
    lab: str
    checks: list[Check] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> {"supported": bool, "reason": str}

    @property
    def ok(self) -> bool:
        return all(c.status != "error" for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        """The ``doctor --json`` shape: ``{"lab", "ok", "checks": [{name, status, detail}], "faults"}``."""
        return {"lab": self.lab, "ok": self.ok, "checks": [asdict(c) for c in self.checks], "faults": self.faults}


def gather(lab: str) -> DoctorReport:
    """Run every check for ``lab``."""
    report = DoctorReport(lab)
    try:
        engine = Engine(connect(), lab)
    except LabError as err:
        report.checks.append(Check("engine", "error", str(err)))
        report.faults = {k: {"supported": False, "reason": "the engine is not reachable"} for k in KINDS}
        return report
    v = engine.version()
    where = os.environ.get("DOCKER_HOST") or "the local socket (DOCKER_HOST unset)"
    report.checks.append(
        Check(
            "engine",
            "ok",
            f"Docker {v.get('Version')} (API {v.get('ApiVersion')}) at {where}, kernel {v.get('KernelVersion')}",
        )
    )
    try:
        stack_id = engine.image_id(const.STACK_IMAGE)
        base = engine.base_image_path()
    except EngineError:
        stack_id = base = None
    if base:
        report.checks.append(Check("image", "ok", f"base {base}"))
    else:
        report.checks.append(
            Check(
                "image",
                "warn",
                "no base image yet: `labctl up` pulls debian:trixie-slim, or builds "
                f"{const.BASE_IMAGE} with debootstrap (root) when the engine cannot pull",
            )
        )
    have_stack = stack_id is not None
    if stack_id:
        report.checks.append(Check("image", "ok", f"{const.STACK_IMAGE} ({stack_id})"))
    else:
        report.checks.append(Check("image", "warn", f"{const.STACK_IMAGE} missing: `labctl up` builds it"))
    report.checks.append(_controller_check(LabDir(lab), lab))
    budgets = _budgets_check(lab)
    report.checks.append(budgets)
    if have_stack:
        report.faults = {k: s.as_dict() for k, s in FaultEngine(engine).probe().items()}
        if budgets.status != "ok":
            report.faults["memory"] = {"supported": False, "reason": budgets.detail, "mechanism": "cgroup"}
    else:
        report.faults = {
            k: {
                "supported": k == "host-failure",
                "reason": "container removal"
                if k == "host-failure"
                else f"not checked: {const.STACK_IMAGE} is missing",
            }
            for k in KINDS
        }
    return report


def _budgets_check(lab: str) -> Check:
    """Whether a controller here can give instances their budget (docs/instances.md): cgroup v1, writable, and an
    engine on this host."""
    from labctl.engine.cgroups import InstanceCgroups

    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return Check("budgets", "warn", f"instance budgets not enforced: the engine is remote ({host})")
    if not InstanceCgroups(lab).enabled:
        return Check(
            "budgets", "warn", "instance budgets not enforced: no writable cgroup v1 hierarchy at /sys/fs/cgroup"
        )
    return Check("budgets", "ok", "instance budgets: a parent cgroup per instance (cgroup v1, /sys/fs/cgroup)")


def _controller_check(d: LabDir, lab: str) -> Check:
    api = d.api() if d.exists() else None
    if api is None:
        return Check("controller", "info", f"lab {lab} is not up (`labctl up` starts it)")
    try:
        s = Client(lab).lab_status()
    except LabError as err:
        return Check("controller", "error", f"lab {lab}: {err}")
    return Check(
        "controller",
        "ok",
        f"lab {lab} answering on 127.0.0.1:{api['port']} (pid {s['controller_pid']}, "
        f"up {s['uptime_s']} s, router {s['router']['url']}, time scale {s['timescale']})",
    )
