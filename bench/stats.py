"""Figures: samples, medians, targets and the verdict next to each (a missed target always shows MISSED)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

# Target kinds: how a labctl median is compared with its target value.
RATIO_LE = "ratio<="  # labctl / baseline <= value
RATIO_GE = "ratio>="  # labctl / baseline >= value
DELTA_LE = "delta<="  # labctl - baseline <= value (same unit)
ABS_LE = "<="  # labctl <= value
ABS_LT = "<"  # labctl < value


@dataclass(frozen=True)
class Target:
    kind: str
    value: float
    text: str  # as printed, e.g. "≤ 1.5× docker"


def summary(samples: list[float]) -> dict[str, Any] | None:
    if not samples:
        return None
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "runs": len(samples),
        "samples": [round(s, 6) for s in samples],
    }


@dataclass
class Figure:
    """One row of the table: labctl's samples, the baseline's samples (same run) and the target."""

    key: str
    title: str
    unit: str  # s | ms | req/s | % | MB
    labctl: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_title: str = ""
    target: Target | None = None
    note: str = ""
    skipped: str | None = None  # why the figure was not measured (printed instead of numbers)
    failed: str | None = None  # why the samples do not count (e.g. a wrk run with socket errors)
    judged: bool = True  # False in --quick: figures only, no verdicts

    def ratio(self) -> float | None:
        if not self.labctl or not self.baseline:
            return None
        base = statistics.median(self.baseline)
        return statistics.median(self.labctl) / base if base else None

    def met(self) -> bool | None:
        """True/False against the target; None when there is no target or nothing was measured."""
        if self.target is None or self.skipped or not self.labctl:
            return None
        value = statistics.median(self.labctl)
        kind, limit = self.target.kind, self.target.value
        if kind in (ABS_LE, ABS_LT):
            return value <= limit if kind == ABS_LE else value < limit
        if not self.baseline:
            return None
        base = statistics.median(self.baseline)
        if kind == DELTA_LE:
            return value - base <= limit
        ratio = self.ratio()
        if ratio is None:
            return None
        return ratio <= limit if kind == RATIO_LE else ratio >= limit

    def verdict(self) -> str:
        """SKIPPED, FAILED (samples that do not count), NOT MEASURED, ok, MISSED; "—" with no target or unjudged."""
        if self.skipped:
            return "SKIPPED"
        if self.failed:
            return "FAILED"
        if not self.judged:
            return "—" if self.labctl or self.target is None else "NOT MEASURED"
        met = self.met()
        if met is None:
            return "—" if self.target is None else "NOT MEASURED"
        return "ok" if met else "MISSED"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "labctl": summary(self.labctl),
            "baseline": summary(self.baseline),
            "baseline_title": self.baseline_title,
            "ratio": self.ratio(),
            "delta": self._delta(),
            "target": {"kind": self.target.kind, "value": self.target.value, "text": self.target.text}
            if self.target
            else None,
            "verdict": self.verdict(),
            "note": self.note,
            "skipped": self.skipped,
            "failed": self.failed,
            "judged": self.judged,
        }

    def _delta(self) -> float | None:
        if not self.labctl or not self.baseline:
            return None
        return statistics.median(self.labctl) - statistics.median(self.baseline)


def from_json(d: dict[str, Any]) -> Figure:
    """A Figure back from its ``to_json`` form (for ``python -m bench --markdown``)."""
    t = d.get("target")
    return Figure(
        d["key"],
        d["title"],
        d["unit"],
        (d.get("labctl") or {}).get("samples", []),
        (d.get("baseline") or {}).get("samples", []),
        d.get("baseline_title", ""),
        Target(t["kind"], t["value"], t["text"]) if t else None,
        d.get("note", ""),
        d.get("skipped"),
        d.get("failed"),
        d.get("judged", True),
    )


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "req/s":
        return f"{value:.0f} req/s"
    if unit == "%":
        return f"{value:.2f} %"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "µs":
        return f"{value:.0f} µs"
    return f"{value:g} {unit}"


def fmt_series(samples: list[float], unit: str) -> str:
    if not samples:
        return "—"
    med = statistics.median(samples)
    if len(samples) == 1:
        return fmt(med, unit)
    return f"{fmt(med, unit)} [{fmt(min(samples), unit).split()[0]}–{fmt(max(samples), unit).split()[0]}]"


def compare_text(f: Figure) -> str:
    if f.target is not None and f.target.kind == DELTA_LE:
        delta = f._delta()
        return "—" if delta is None else f"{delta:+.2f} {f.unit}"
    ratio = f.ratio()
    return "—" if ratio is None else f"{ratio:.2f}×"


def table(figures: list[Figure]) -> list[list[str]]:
    """Rows of strings: header first."""
    rows = [
        [
            "figure",
            "labctl median [min–max]",
            "baseline (same run) median [min–max]",
            "ratio/Δ",
            "target",
            "result",
            "n",
        ]
    ]
    for f in figures:
        if f.skipped:
            rows.append([f.title, f.skipped, "", "", f.target.text if f.target else "", f.verdict(), ""])
            continue
        if f.failed and not f.labctl:
            rows.append([f.title, f.failed, "", "", f.target.text if f.target else "", f.verdict(), ""])
            continue
        base = f"{f.baseline_title}: {fmt_series(f.baseline, f.unit)}" if f.baseline else (f.baseline_title or "—")
        rows.append(
            [
                f.title,
                fmt_series(f.labctl, f.unit),
                base,
                compare_text(f),
                f.target.text if f.target else "—",
                f.verdict(),
                str(len(f.labctl)),
            ]
        )
    return rows


def render_text(figures: list[Figure]) -> str:
    """An aligned table; a skipped figure is one line saying why (it does not widen the columns)."""
    rows = table(figures)
    measured = [r for n, r in enumerate(rows) if n == 0 or r[5] != "SKIPPED"]
    widths = [max(len(r[i]) for r in measured) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        if n > 0 and r[5] == "SKIPPED":
            lines.append(f"{r[0].ljust(widths[0])}  SKIPPED: {r[1]}")
            continue
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(figures: list[Figure]) -> str:
    rows = table(figures)
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    for r in rows[1:]:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


BAD_VERDICTS = ("MISSED", "FAILED", "NOT MEASURED")


def problems(figures: list[Figure], failures: list[str]) -> list[str]:
    """Why a run must exit non-zero: groups that failed, figures that failed, were not measured or missed
    their target (an unjudged figure, as in --quick, only fails when it could not be measured)."""
    out = list(failures)
    for f in figures:
        verdict = f.verdict()
        if verdict in BAD_VERDICTS:
            why = f.failed or (f"target {f.target.text}" if verdict == "MISSED" and f.target else "")
            out.append(f"{verdict}: {f.title}" + (f" ({why})" if why else ""))
    return out
