"""Draw the benchmark results as one PNG (``docs/benchmarks.png``).

Reads the JSON files the three benchmarks write with ``--json``::

    python -m benchmarks.bench --json /tmp/lfs-bench/bench.json
    python -m benchmarks.http_load --json /tmp/lfs-bench/http_load.json
    python -m benchmarks.scale --json /tmp/lfs-bench/scale.json
    python -m benchmarks.chart            # the three paths above are the defaults

and draws four panels: microseconds per request of the in-process benchmark, requests per second
over HTTP, the read+write handler's p50 and p99 with 1,000 and 1,000,000 stored sessions on every
server store, and its p99 while expired rows are being deleted, with each store's bytes per session.
A missing file leaves its panels out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch

RESULTS = Path(tempfile.gettempdir()) / "lfs-bench"
OURS = "#1f77b4"
OTHERS = "#b0b0b0"
BARE = "#2ca02c"


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        print(f"{path}: missing, its panels are left out")
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def color(name: str) -> str:
    if name.startswith("ours"):
        return OURS
    if name.startswith(("bare", "no sessions")):
        return BARE
    return OTHERS


def hbars(ax: Axes, values: dict[str, float], fmt: str, title: str, xlabel: str) -> None:
    names = list(values)[::-1]
    numbers = [values[name] for name in names]
    bars = ax.barh(names, numbers, color=[color(name) for name in names])
    ax.bar_label(bars, labels=[fmt.format(v) for v in numbers], padding=3, fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_xlim(0, max(numbers) * 1.22)
    ax.tick_params(axis="y", labelsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    legend = [Patch(color=OURS, label="litestar-flash-sessions"), Patch(color=BARE, label="no sessions")]
    ax.legend(handles=[*legend, Patch(color=OTHERS, label="other session libraries")], fontsize=7, loc="lower right")


def in_process_panel(ax: Axes, data: dict[str, Any]) -> None:
    settings = data["settings"]
    hbars(
        ax,
        data["results"],
        "{:.1f}",
        f"In-process (ASGI, no sockets): microseconds per request, lower is better\n"
        f"median of {settings['rounds']} rounds of {settings['requests']} requests",
        "microseconds per request",
    )


def http_panel(ax: Axes, data: dict[str, Any]) -> None:
    results = data["results"]
    labels = {f"{name}  (p99 {r['p99_ms']:.1f} ms)": r["rps"] for name, r in results.items()}
    settings = data["settings"]
    hbars(
        ax,
        labels,
        "{:,.0f}",
        f"HTTP, demo page GET / with a logged-in cookie: requests/s, higher is better\n"
        f"granian 1 worker, wrk -t1 -c{settings['connections']} -d{settings['duration_s']}s, "
        f"{data['machine'].get('cores')} cores shared",
        "requests per second",
    )


def grouped(
    ax: Axes,
    groups: dict[str, dict[str, float]],
    colors: list[str],
    title: str,
    ylabel: str,
    *,
    log: bool = False,
    vertical_labels: bool = False,
) -> None:
    """Bars of ``groups[group][series]``, one cluster per group (``log``: a logarithmic axis;
    ``vertical_labels``: the bars' figures turned upright, for many narrow bars)."""
    series = list(next(iter(groups.values())))
    width = 0.8 / len(series)
    for k, name in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        values = [groups[group][name] for group in groups]
        bars = ax.bar(xs, values, width, label=name, color=colors[k % len(colors)])
        ax.bar_label(
            bars, labels=[f"{v:,.0f}" for v in values], padding=2, fontsize=7, rotation=90 if vertical_labels else 0
        )
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(ax.get_ylim()[0], ax.get_ylim()[1] * (8 if vertical_labels else 3))
    else:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def short(count: str) -> str:
    """``1000000`` as ``1M``, ``10000`` as ``10k``."""
    n = int(count)
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k" if n >= 1_000 else str(n)


def scale_panel(ax: Axes, data: dict[str, Any]) -> None:
    groups = {}
    for store, sizes in data["scale"].items():
        small, large = sorted(sizes, key=int)[0], sorted(sizes, key=int)[-1]
        name = store.replace(" (Cluster)", "\non the Cluster").replace("Store", "\nStore", 1)
        groups[f"{name}\n{short(small)} / {short(large)}"] = {
            "p50, fewer sessions": sizes[small]["p50_us"],
            "p50, more sessions": sizes[large]["p50_us"],
            "p99, fewer sessions": sizes[small]["p99_us"],
            "p99, more sessions": sizes[large]["p99_us"],
        }
    grouped(
        ax,
        groups,
        ["#9ecae1", OURS, "#fdae6b", "#e6550d"],
        "Read+write handler by stored sessions (in-process): microseconds (log)",
        "microseconds per request",
        log=True,
        vertical_labels=True,
    )


def cleanup_panel(ax: Axes, data: dict[str, Any]) -> None:
    groups = {}
    for store, r in data["cleanup"].items():
        groups[f"{store}\n{r['deleted']:,} rows in {r['cleanup_s']:.2f} s"] = {
            "p50 without cleanup": r["without_cleanup"]["p50_us"],
            "p99 without cleanup": r["without_cleanup"]["p99_us"],
            "p50 during delete_expired()": r["during_cleanup"]["p50_us"],
            "p99 during delete_expired()": r["during_cleanup"]["p99_us"],
        }
    grouped(
        ax,
        groups,
        ["#98df8a", BARE, "#ff9896", "#d62728"],
        "Read+write handler during delete_expired(), in-process: microseconds (log)",
        "microseconds per request",
        log=True,
    )
    memory = data.get("memory")
    if memory:
        lines = [f"{store}: {r['bytes_per_session']:,.0f}" for store, r in memory["stores"].items()]
        ax.text(
            0.99,
            0.97,
            f"bytes per session ({memory['record_bytes']}-byte record)\n" + "\n".join(lines),
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=RESULTS / "bench.json")
    parser.add_argument("--http", type=Path, default=RESULTS / "http_load.json")
    parser.add_argument("--scale", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.png"))
    args = parser.parse_args()

    bench, http, scale = load(args.bench), load(args.http), load(args.scale)
    panels = []
    if bench:
        panels.append((in_process_panel, bench))
    if http:
        panels.append((http_panel, http))
    if scale and scale.get("scale"):
        panels.append((scale_panel, scale))
    if scale and scale.get("cleanup"):
        panels.append((cleanup_panel, scale))
    if not panels:
        raise SystemExit("no results to draw")

    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2 if len(panels) > 1 else 1, figsize=(16, 5.2 * rows), squeeze=False)
    for ax, (draw, data) in zip(axes.flat, panels, strict=False):
        draw(ax, data)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    machine = next(data for data in (http, scale) if data).get("machine", {}) if (http or scale) else {}
    if machine:
        fig.suptitle(
            f"litestar-flash-sessions benchmarks: {machine.get('cpu')}, {machine.get('cores')} cores, "
            f"Python {machine.get('python')}, Litestar {machine.get('litestar')}",
            fontsize=11,
        )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
