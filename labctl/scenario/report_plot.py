"""The report's picture: one matplotlib figure, drawn once, saved as ``report.png`` and inlined as SVG.

Panels share the time axis (seconds since the run started): one lane per dyno colored by its runtime instance,
with the instance faults over it; latency per dyno; errors per second; the checks. Dashed vertical lines are the
actions (commands, faults, tasks, traffic). matplotlib is imported here only, when a report is written.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from labctl.scenario import report_model as m

DPI = 100
WIDTH = 15.0  # inches: 1500 px
LEFT = 1.45  # inches: the lane labels
RIGHT = (0.5, 1.75)  # inches: without / with traffic (the legends of the latency and error panels)
LANE_H = 0.62
BAR_H = 0.56  # of a lane
FONT = 12
LEGEND_COLS = 10
MAX_LEVELS = 8  # rows of action labels
MAX_DOTS = 2500  # request dots per dyno
RED = "#c62828"
GREEN = "#2e7d32"
ACTION_STYLE = {
    "run": ("#222222", (0, (5, 3)), 1.5),
    "fault": (RED, (0, (5, 3)), 1.8),
    "task": ("#6a1b9a", (0, (5, 3)), 1.8),
    "traffic": ("#666666", (0, (6, 2, 1, 2)), 1.2),
    "snapshot": ("#9e9e9e", (0, (1, 3)), 1.2),
}
_HALO = {"boxstyle": "round,pad=0.15", "fc": (1, 1, 1, 0.75), "ec": "none"}  # text stays text in the SVG
ERROR_COLORS = ["#b2182b", "#ef6548", "#fdae61", "#7f2704", "#d6604d", "#f4a582"]
RELEASE_COLORS = ["#b0bec5", "#37474f", "#8d6e63", "#78909c", "#263238"]  # slate shades: not an instance color, not red


@dataclass
class Picture:
    png: bytes
    svg: str


def render(data: dict[str, Any]) -> Picture | None:
    """The picture of a result, or None when no step ran (nothing to draw)."""
    window = m.time_window(data)
    if window is None:
        return None
    from matplotlib import rc_context

    with rc_context({"font.size": FONT, "svg.fonttype": "none", "svg.hashsalt": "labctl", "hatch.linewidth": 1.0}):
        fig = _Drawing(data, *window).draw()
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=DPI)
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return Picture(png.getvalue(), _inline_svg(svg.getvalue().decode("utf-8")))


def _inline_svg(text: str) -> str:
    """The ``<svg>`` element alone, scaled to the page, with SVG 2 ``href`` (no namespace URL to fetch)."""
    text = text[text.index("<svg") :]
    text = text.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "").replace("xlink:href=", "href=")
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text, count=1)


class _Drawing:
    def __init__(self, data: dict[str, Any], t_lo: float, t_hi: float):
        self.data, self.t_lo, self.t_hi = data, t_lo, t_hi
        self.colors = m.instance_colors(data)
        self.lanes = m.lanes(data, t_lo)
        self.spans = {k: m.spans(data, *k, t_lo, t_hi) for k in self.lanes}
        self.actions = m.actions(data)
        self.records = m.records(data)
        self.w = m.bin_width(t_hi - t_lo)
        self.releases = m.release_bins(self.records, self.w)  # which release answered, when (preboot's switch)
        self.several_apps = len({a for a, _ in self.lanes}) > 1
        self.right = RIGHT[1] if self.records else RIGHT[0]
        dynos = sorted({r["dyno"] for r in self.records} | {self._lane_name(k) for k in self.lanes}, key=m.dyno_key)
        self.dyno_colors = (
            {d: ("#9e9e9e" if d == m.NONE else m.DYNO_COLORS[i % len(m.DYNO_COLORS)]) for i, d in enumerate(dynos)}
            if self.records
            else {}
        )

    def _lane_name(self, lane: tuple[str, str]) -> str:
        return f"{lane[0]} {lane[1]}" if self.several_apps else lane[1]

    def _sec_per_char(self, size: float = 11) -> float:
        """How many seconds of the time axis one character of text takes (about)."""
        return (self.t_hi - self.t_lo) / (WIDTH - LEFT - self.right) * size * 0.62 / 72

    def _x_in(self, t: float) -> float:
        return LEFT + (t - self.t_lo) / (self.t_hi - self.t_lo) * (WIDTH - LEFT - self.right)

    # -- layout -------------------------------------------------------------------------------------

    def draw(self) -> Any:
        labelled = [a for a in self.actions if a.kind != "snapshot"]
        placed = self._place(labelled)
        n_levels = max([lvl for lvl, _ in placed], default=0) + 1
        total = self._layout(n_levels)
        self._title(total)
        self._labels(labelled, placed, n_levels)
        self._lanes()
        if self.records:
            self._latency()
            self._errors()
        if len(self.releases) > 1:
            self._releases()
        self._checks()
        self._action_lines()
        self._legend()
        return self.fig

    def _layout(self, n_levels: int) -> float:
        """The figure and its panels, stacked top to bottom at fixed heights in inches; the figure's height."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        heights = [("labels", 0.3 * n_levels + 0.1), ("lanes", LANE_H * max(1, len(self.lanes)) + 0.15)]
        if self.records:
            heights += [("latency", 3.0), ("errors", 1.55)]
        if len(self.releases) > 1:
            heights += [("releases", 0.6)]
        heights += [("checks", 0.5)]
        self.legend_handles = self._legend_handles()
        rows = -(-len(self.legend_handles) // LEGEND_COLS)
        top, bottom, gap = 1.0, 0.95 + 0.3 * rows, 0.16
        total = top + bottom + sum(h for _, h in heights) + gap * (len(heights) - 1)
        self.fig = Figure(figsize=(WIDTH, total), dpi=DPI, facecolor="white")
        FigureCanvasAgg(self.fig)
        y = total - top
        self.axes: dict[str, Any] = {}
        for name, h in heights:
            y -= h
            ax = self.fig.add_axes(
                (LEFT / WIDTH, y / total, (WIDTH - LEFT - self.right) / WIDTH, h / total), sharex=self.axes.get("lanes")
            )
            ax.set_xlim(self.t_lo, self.t_hi)
            self.axes[name] = ax
            y -= gap
        return total

    def _place(self, labelled: list[m.Action]) -> list[tuple[int, str]]:
        """(row, alignment) of each action label: no two overlap (widths estimated from the characters), a label
        that would leave the picture on the right ends at its line; past MAX_LEVELS rows, the freest row."""
        ends: list[float] = []
        out = []
        for a in labelled:
            x = self._x_in(a.t)
            width = len(a.label) * FONT * 0.6 / 72 + 0.2
            ha = "left" if x + width < WIDTH - 0.1 else "right"
            x0, x1 = (x, x + width) if ha == "left" else (x - width, x)
            lvl = next((i for i, end in enumerate(ends) if end < x0), len(ends))
            if lvl >= MAX_LEVELS:
                lvl = min(range(len(ends)), key=lambda i: ends[i])
            ends[lvl : lvl + 1] = [x1]
            out.append((lvl, ha))
        return out

    def _title(self, total: float) -> None:
        status = self.data.get("status", "error")
        verdict = {"pass": "PASS", "interrupted": "INTERRUPTED"}.get(status, "FAIL")
        exp = self.data.get("expectations") or {}
        head = self.fig.text(
            0.25 / WIDTH,
            1 - 0.42 / total,
            f" {verdict} ",
            fontsize=20,
            weight="bold",
            color="white",
            va="center",
            bbox={"boxstyle": "round,pad=0.25", "fc": GREEN if status == "pass" else RED, "ec": "none"},
        )
        from matplotlib.text import Annotation

        self.fig.add_artist(
            Annotation(
                self.data.get("scenario", ""),
                (1, 0.5),
                xycoords=head,
                xytext=(14, 0),
                textcoords="offset points",
                fontsize=20,
                weight="bold",
                va="center",
            )
        )
        held = f"{exp.get('held', 0)}/{exp.get('total', 0)} expectations held"
        desc = self.data.get("description") or ""
        line = f"{held}  —  {desc}" if desc else held
        fits = int((WIDTH - 0.5) * 72 / (13 * 0.55))  # characters of 13 pt text across the picture
        if len(line) > fits:  # one line, never cut off at the edge: the whole text is in report.html
            line = line[: fits - 1].rstrip() + "…"
        self.fig.text(0.25 / WIDTH, 1 - 0.82 / total, line, fontsize=13, color="#444", va="center")

    def _labels(self, labelled: list[m.Action], placed: list[tuple[int, str]], n_levels: int) -> None:
        ax = self.axes["labels"]
        ax.set_ylim(n_levels, -0.1)
        ax.axis("off")
        for a, (lvl, ha) in zip(labelled, placed, strict=True):
            color, style, width = ACTION_STYLE[a.kind]
            ax.plot(
                [a.t, a.t], [lvl + 0.45, n_levels + 1], color=color, linestyle=style, linewidth=width, clip_on=False
            )
            ax.text(
                a.t,
                lvl + 0.45,
                f" {a.label} ",
                color=color,
                fontsize=FONT,
                va="bottom",
                ha=ha,
                family="DejaVu Sans Mono",
                weight="bold" if a.kind in ("run", "fault", "task") else None,
            )

    def _action_lines(self) -> None:
        for name, ax in self.axes.items():
            if name == "labels":
                continue
            for a in self.actions:
                color, style, width = ACTION_STYLE[a.kind]
                ax.axvline(a.t, color=color, linestyle=style, linewidth=width, zorder=5)

    # -- lanes ---------------------------------------------------------------------------------------

    def _lanes(self) -> None:
        ax = self.axes["lanes"]
        n = max(1, len(self.lanes))
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_yticks(range(len(self.lanes)), [self._lane_name(k) for k in self.lanes], fontsize=14, weight="bold")
        for tick, lane in zip(ax.get_yticklabels(), self.lanes, strict=True):
            tick.set_color(self.dyno_colors.get(self._lane_name(lane), "#222"))
        ax.tick_params(axis="x", labelbottom=False)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
        for i, lane in enumerate(self.lanes):
            if i % 2 == 0:
                ax.axhspan(i - 0.5, i + 0.5, color="#f7f7f7", zorder=0)
            for s in self.spans[lane]:
                self._bar(ax, i, s)
            self._marks(ax, i, self.spans[lane])
        for lane, a, b, label in m.fault_overlays(self.data, self.spans, self.t_hi):
            self._fault(ax, self.lanes.index(lane), a, b, label)

    def _bar(self, ax: Any, i: int, s: m.Span) -> None:
        from matplotlib.colors import to_rgba
        from matplotlib.patches import Rectangle

        color = self.colors.get(s.instance or "", "#bdbdbd")
        kw: dict[str, Any] = {"facecolor": color, "edgecolor": color, "linewidth": 1, "zorder": 2}
        if s.state in ("down", "crashed"):
            kw.update(facecolor="#eeeeee", edgecolor="#757575", hatch="///")
        elif not s.container:  # between two containers: the old one stopping, the new one not created yet
            kw.update(facecolor="white", linestyle=(0, (3, 2)), linewidth=1.6)
        elif s.state != "up":  # starting
            kw.update(facecolor=to_rgba(color, 0.35))
        ax.add_patch(Rectangle((s.a, i - BAR_H / 2), s.b - s.a, BAR_H, **kw))

    def _marks(self, ax: Any, i: int, spans: list[m.Span]) -> None:
        sec_per_char = self._sec_per_char()
        for k, (a, b, label) in enumerate(m.container_marks(spans)):
            if k and label.startswith("↻"):  # a new container on the same instance: a white cut in the bar
                ax.plot([a, a], [i - BAR_H / 2 - 0.04, i + BAR_H / 2 + 0.04], color="white", linewidth=3, zorder=3)
            options = [label, label.split(" i-")[0], label[:1]] if k else [label]
            text = next((t for t in options if (b - a) > sec_per_char * (len(t) + 1.5)), "")
            if text:
                ax.text(
                    a + sec_per_char * 0.6,
                    i,
                    text,
                    fontsize=11,
                    va="center",
                    ha="left",
                    zorder=4,
                    weight="bold",
                    family="DejaVu Sans Mono",
                    bbox=_HALO,
                )

    def _fault(self, ax: Any, i: int, a: float, b: float, label: str) -> None:
        from matplotlib.patches import Rectangle

        ax.add_patch(
            Rectangle(
                (a, i - 0.47), b - a, 0.94, facecolor=(0.85, 0.1, 0.1, 0.16), edgecolor=RED, linewidth=2.2, zorder=1
            )
        )
        ax.add_patch(
            Rectangle(
                (a, i - BAR_H / 2),
                b - a,
                BAR_H,
                facecolor="none",
                edgecolor=RED,
                hatch="xx",
                linewidth=0,
                alpha=0.45,
                zorder=3,
            )
        )
        ax.text(
            a + self._sec_per_char(),
            i,
            f"⚠ {label}",
            color="white",
            fontsize=11,
            weight="bold",
            ha="left",
            va="center",
            zorder=6,
            bbox={"boxstyle": "round,pad=0.2", "fc": RED, "ec": "none"},
        )

    # -- traffic -------------------------------------------------------------------------------------

    def _latency(self) -> None:
        ax = self.axes["latency"]
        ax.set_yscale("log")
        ax.set_ylabel("latency", fontsize=13)
        ax.yaxis.set_major_formatter(_ms_formatter())
        ax.yaxis.set_minor_formatter(_ms_formatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
        ax.tick_params(axis="x", labelbottom=False)
        ax.grid(color="#eeeeee", which="major")
        w = self.w
        for dyno, pts in m.latency_bins(self.records, w).items():
            self._latency_dyno(ax, dyno, pts, w)
        bad = _thin([r for r in self.records if m.is_error(r) and r.get("latency_ms")])
        if bad:
            ax.scatter(
                [r["t"] for r in bad],
                [r["latency_ms"] for r in bad],
                marker="x",
                s=28,
                color=RED,
                linewidths=1.4,
                zorder=4,
                label="an error",
            )
        self._medians(ax)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=self.dyno_colors.get(d, "#444"), lw=2.6, label="no dyno" if d == m.NONE else d)
            for d in sorted({r["dyno"] for r in self.records if r.get("latency_ms") is not None}, key=m.dyno_key)
        ]
        handles += [
            Line2D([], [], color="#444", lw=2.6, label=f"p50 per {w:g} s"),
            Line2D([], [], color="#444", lw=1.1, ls=(0, (4, 2)), label="p95"),
            Line2D([], [], color="#444", lw=0, marker="o", ms=3, alpha=0.4, label="one request"),
        ]
        handles += [Line2D([], [], color=RED, lw=0, marker="x", ms=6, label="error")] if bad else []
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=11, frameon=False)

    def _latency_dyno(self, ax: Any, dyno: str, pts: list[tuple[float, float, float]], w: float) -> None:
        color = self.dyno_colors.get(dyno, "#444")
        mine = _thin([r for r in self.records if r["dyno"] == dyno and r.get("latency_ms") is not None])
        ax.scatter(
            [r["t"] for r in mine],
            [r["latency_ms"] for r in mine],
            s=7,
            color=color,
            alpha=0.22,
            linewidths=0,
            zorder=2,
        )
        xs, p50, p95 = _with_gaps(pts, w)
        ax.plot(xs, p50, color=color, linewidth=2.6, zorder=3)
        ax.plot(xs, p95, color=color, linewidth=1.1, linestyle=(0, (4, 2)), zorder=3)

    def _medians(self, ax: Any) -> None:
        """``p50 850 ms`` written on each dyno's line between two actions: the numbers of the story."""
        cuts = [a.t for a in self.actions if a.kind in ("run", "fault", "task")]
        span = self.t_hi - self.t_lo
        by_segment: dict[tuple[float, float], list[tuple[str, float]]] = {}
        for dyno, a, b, p50, n in m.segment_medians(self.records, cuts, self.t_lo, self.t_hi):
            if n >= 5 and b - a > span * 0.07:
                by_segment.setdefault((a, b), []).append((dyno, p50))
        for (a, b), items in by_segment.items():
            groups = m.close_groups(items)
            for j, (dynos, p50) in enumerate(groups):
                text = f"{', '.join(dynos)} {_ms(p50)}"
                half = self._sec_per_char(12) * len(text) / 2
                x = min(max((a + b) / 2, self.t_lo + half), self.t_hi - half)
                below = j == 0 and len(groups) > 1 and groups[1][1] / p50 < 2.2  # two labels close: one below
                color = self.dyno_colors.get(dynos[0], "#444") if len(dynos) == 1 else "#333333"
                ax.annotate(
                    text,
                    (x, p50),
                    xytext=(0, -9 if below else 9),
                    textcoords="offset points",
                    ha="center",
                    va="top" if below else "bottom",
                    fontsize=12,
                    weight="bold",
                    color=color,
                    zorder=6,
                    bbox=_HALO,
                )

    def _errors(self) -> None:
        ax = self.axes["errors"]
        ax.set_ylabel("errors / s", fontsize=13)
        ax.tick_params(axis="x", labelbottom=False)
        ax.grid(color="#eeeeee")
        w = self.w
        bins = m.error_bins(self.records, w)
        if not bins:
            ax.set_ylim(0, 1)
            ax.text(
                0.5,
                0.5,
                f"no errors in {len(self.records)} requests",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color=GREEN,
                fontsize=13,
                weight="bold",
            )
            return
        bottom: dict[int, float] = {}
        for j, (label, counts) in enumerate(bins.items()):
            color = "#5e3c99" if label == "timeout" else ERROR_COLORS[j % len(ERROR_COLORS)]
            ks = sorted(counts)
            ax.bar(
                [(k + 0.5) * w for k in ks],
                [counts[k] / w for k in ks],
                width=w * 0.9,
                bottom=[bottom.get(k, 0.0) for k in ks],
                color=color,
                label=f"{label} ({sum(counts.values())})",
                zorder=3,
            )
            for k in ks:
                bottom[k] = bottom.get(k, 0.0) + counts[k] / w
        ax.set_ylim(0, max(bottom.values()) * 1.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=11, frameon=False)

    def _releases(self) -> None:
        """Which release answered the requests of each bin: the old one until a preboot switch, then the new."""
        ax = self.axes["releases"]
        ax.set_ylim(0, 1)
        ax.set_yticks([0.5], ["served by"], fontsize=13)
        ax.tick_params(axis="x", labelbottom=False)
        bottom: dict[int, float] = {}
        for j, (release, shares) in enumerate(self.releases.items()):
            ks = sorted(shares)
            ax.bar(
                [(k + 0.5) * self.w for k in ks],
                [shares[k] for k in ks],
                width=self.w,
                bottom=[bottom.get(k, 0.0) for k in ks],
                color=RELEASE_COLORS[j % len(RELEASE_COLORS)],
                label=f"{release} ({sum(1 for r in self.records if r.get('release') == release)})",
                zorder=3,
            )
            for k in ks:
                bottom[k] = bottom.get(k, 0.0) + shares[k]
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.1), fontsize=11, frameon=False)

    # -- checks and legend ---------------------------------------------------------------------------

    def _checks(self) -> None:
        ax = self.axes["checks"]
        ax.set_ylim(0, 1)
        ax.set_yticks([0.6], ["checks"], fontsize=13)
        ax.grid(axis="x", color="#eeeeee")
        setup_end = (self.data.get("setup") or {}).get("end")
        note = f" (setup done at {setup_end:.1f} s)" if setup_end else ""
        ax.set_xlabel(f"seconds since the run started{note}", fontsize=13)
        for s in self.data.get("steps") or []:
            if s["kind"] not in m.CHECK_KINDS or s["status"] not in ("pass", "fail", "error"):
                continue
            ok = s["status"] == "pass"
            color = GREEN if ok else RED
            end = s["end"] if s.get("end") is not None else s["start"]
            if s["kind"] in ("wait_for", "task"):
                ax.plot([s["start"], end], [0.6, 0.6], color=color, linewidth=7, alpha=0.3, solid_capstyle="butt")
            ax.scatter([end], [0.6], s=230, color=color, zorder=6)
            ax.text(
                end,
                0.6,
                "✓" if ok else "✗",
                color="white",
                fontsize=11,
                weight="bold",
                ha="center",
                va="center",
                zorder=7,
            )
        for a in self.actions:
            if a.kind == "snapshot":
                ax.text(a.t, 0.04, f" ◉ {a.label}", color="#757575", fontsize=10, va="bottom", ha="left")

    def _legend_handles(self) -> list[Any]:
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor=c, label=m.short_id(i)) for i, c in self.colors.items()]
        handles += [
            Patch(facecolor="#9e9e9e", label="up"),
            Patch(facecolor="#9e9e9e55", edgecolor="#9e9e9e", label="starting"),
            Patch(facecolor="white", edgecolor="#9e9e9e", linestyle="--", label="no container"),
            Patch(facecolor="#eeeeee", edgecolor="#757575", hatch="///", label="down / crashed"),
        ]
        faults = self.data.get("faults") or []
        if faults:
            ends = {"router" if f.get("router") else "instance" for f in faults}
            label = "instance or router fault" if len(ends) > 1 else f"{ends.pop()} fault"
            handles.append(Patch(facecolor=(0.85, 0.1, 0.1, 0.16), edgecolor=RED, hatch="xx", label=label))
        return handles

    def _legend(self) -> None:
        handles = self.legend_handles
        self.fig.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(LEFT / WIDTH, 0.0),
            ncol=min(len(handles), LEGEND_COLS),
            fontsize=11,
            frameon=False,
            title="lane color = the instance the dyno runs on:",
            title_fontsize=11,
            alignment="left",
            handlelength=1.6,
            columnspacing=1.2,
        )


def _with_gaps(pts: list[tuple[float, float, float]], w: float) -> tuple[list[float], list[float], list[float]]:
    """Lines broken where a dyno answered nothing for more than a bin (it was restarting)."""
    xs: list[float] = []
    p50: list[float] = []
    p95: list[float] = []
    for j, (x, a, b) in enumerate(pts):
        if j and x - pts[j - 1][0] > w * 2.5:
            xs.append(x - w)
            p50.append(float("nan"))
            p95.append(float("nan"))
        xs.append(x)
        p50.append(a)
        p95.append(b)
    return xs, p50, p95


def _thin(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_DOTS of them, evenly spread: a long run's dots would make the SVG megabytes."""
    return recs[:: -(-len(recs) // MAX_DOTS)] if recs else recs


def _ms(v: float) -> str:
    return f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def _tick(v: float) -> str:
    return f"{v:g} ms" if v < 1000 else f"{v / 1000:g} s"


def _ms_formatter(**kw: Any) -> Any:
    """Log-axis labels in ms / s. matplotlib picks which ticks get one (minor ones too when the axis spans
    less than about a decade), which would otherwise read ``6×10⁰``."""
    from matplotlib.ticker import LogFormatter

    class MsFormatter(LogFormatter):
        def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
            return _tick(x)

    return MsFormatter(**kw)
