"""The benchmark's outputs: a table on the terminal, a JSON file and a PNG chart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.runner import GOALS, Results

#: Labels and units of the table's rows, in the order printed.
ROWS: tuple[tuple[str, str], ...] = (
    ("trigger_overhead_ratio", "trigger UPDATE tps ratio, sync commit off"),
    ("trigger_overhead_ratio_durable", "trigger UPDATE tps ratio, durable"),
    ("trigger_vs_seed_ratio", "UPDATE tps ours / seed's trigger, sync off"),
    ("trigger_vs_seed_ratio_durable", "UPDATE tps ours / seed's trigger, durable"),
    ("trigger_vs_seed_plan_ratio", "UPDATE tps ours / seed plan's, sync off"),
    ("trigger_vs_seed_plan_ratio_durable", "UPDATE tps ours / seed plan's, durable"),
    ("claim_rows_per_s", "claim rows/s, 2 claimers"),
    ("drain_vs_bare_celery_ratio", "drain sends/s / bare Celery tasks/s"),
    ("latency_bound_ratio", "200 ms sends/s / (concurrency / 0.2 s)"),
    ("latency_requests_bound_ratio", "the same, provider requests/s"),
    ("vs_sequential_ratio", "200 ms sends/s / sequential sends/s"),
    ("p99_due_to_send_s", "due to send p99, s"),
    ("p50_due_to_send_s", "due to send p50, s"),
    ("rss_growth_pct", "worker RSS growth, %"),
    ("backlog_drain_ratio", "backlog drain / bound at default limits"),
    ("email_batch_speedup", "e-mails/s batched / one per request"),
    ("drain_stack_cpu_ms_per_send", "drain CPU ms/send: workers+PG+Redis"),
    ("drain_worker_cpu_ms_per_send", "  of which workers"),
    ("drain_postgresql_cpu_ms_per_send", "  of which PostgreSQL"),
    ("drain_redis_cpu_ms_per_send", "  of which Redis"),
    ("bare_celery_stack_cpu_ms_per_task", "bare Celery CPU ms/task: workers+Redis"),
    ("bare_celery_worker_cpu_ms_per_task", "  of which workers"),
    ("bare_celery_postgresql_cpu_ms_per_task", "  of which PostgreSQL"),
    ("bare_celery_redis_cpu_ms_per_task", "  of which Redis"),
)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def table(results: Results) -> str:
    """The figures against their goals, one row each."""
    lines = [f"{'figure':<35} {'what':<42} {'value':>10}  {'goal':<9} result",
             "-" * 108]
    for key, label in ROWS:
        if key not in results.figures:
            continue
        goal = GOALS[key]
        met = goal.met(results.figures[key])
        verdict = "-" if met is None else ("met" if met else "MISSED")
        lines.append(f"{key:<35} {label:<42} {_fmt(results.figures[key]):>10}  {goal!s:<9} "
                     f"{verdict}")
    sends = results.details.get("sends")
    if sends:
        shape = sends["shape"]
        lines.append("")
        lines.append(
            f"workers: {shape['processes']} process(es) x {shape['threads']} threads;"
            f" bare Celery {' / '.join(f'{b:,.0f}' for b in sends['bare_celery_tasks_per_s'])}"
            f" tasks/s; drain {sends['drain']['per_s']:,.0f} sends/s;"
            f" 200 ms {sends['latency_run']['per_s']:,.0f} sends/s"
            f" (bound {sends['latency_run']['bound_per_s']:,.0f});"
            f" sequential {sends['sequential_per_s']:.2f} sends/s")
    notes = results.plan.scaled_down()
    if notes:
        lines.append(f"{results.plan.mode} mode, scaled down: " + "; ".join(notes))
    return "\n".join(lines)


def write_json(results: Results, path: Path) -> None:
    """Everything measured, with the plan and timings."""
    path.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")


def write_chart(results: Results, path: Path) -> None:
    """Four panels: ratios vs goals, send rates, claim rate, latency and memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = results.figures
    sends = results.details.get("sends", {})
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    fig.suptitle(f"regnotify bench ({results.plan.mode}) — "
                 f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, 2-core machine")

    ax = axes[0][0]
    ratio_keys = [("trigger_overhead_ratio", "trigger\n(sync off)"),
                  ("trigger_overhead_ratio_durable", "trigger\n(durable)"),
                  ("trigger_vs_seed_ratio", "ours / seed\n(sync off)"),
                  ("trigger_vs_seed_plan_ratio", "ours / seed\nplan\n(sync off)"),
                  ("drain_vs_bare_celery_ratio", "drain /\nbare Celery"),
                  ("latency_bound_ratio", "200 ms /\nbound")]
    values = [f[k] for k, _ in ratio_keys]
    colors = [_color(GOALS[k].met(f[k])) for k, _ in ratio_keys]
    ax.bar([label for _, label in ratio_keys], values, color=colors)
    for i, (key, _) in enumerate(ratio_keys):
        limit = GOALS[key].limit
        if limit is not None:
            ax.hlines(limit, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        ax.text(i, values[i], f"{values[i]:.2f}", ha="center", va="bottom")
    ax.set_ylim(0, max(1.05, max(values) * 1.15))
    ax.set_title("Ratios (dashed: goal; green met, red missed)")

    ax = axes[0][1]
    if sends:
        labels = ["bare Celery\nno-op", "ours, 0 ms\nproviders", "ours, 200 ms\nproviders",
                  "200 ms bound\n(conc. / 0.2 s)", "sequential\n200 ms"]
        rates = [statistics_mean(sends["bare_celery_tasks_per_s"]), sends["drain"]["per_s"],
                 sends["latency_run"]["per_s"], sends["latency_run"]["bound_per_s"],
                 sends["sequential_per_s"]]
        ax.bar(labels, rates, color=["#999999", "#4477aa", "#4477aa", "#bbbbbb", "#cc6677"])
        ax.set_yscale("log")
        for i, rate in enumerate(rates):
            ax.text(i, rate, f"{rate:,.0f}" if rate >= 10 else f"{rate:.1f}",
                    ha="center", va="bottom")
        ax.set_ylabel("messages / s (log)")
        ax.set_title(f"Send rates ({sends['shape']['processes']} x "
                     f"{sends['shape']['threads']} threads; vs sequential "
                     f"{f['vs_sequential_ratio']:g}x, goal 50x)")

    ax = axes[1][0]
    claim_rate = f["claim_rows_per_s"]
    detail = results.details.get("claim", {})
    labels = [f"our claim\n(batch {detail.get('batch', '?')})"]
    rates = [claim_rate]
    colors = [_color(GOALS["claim_rows_per_s"].met(claim_rate))]
    if "close_only_rows_per_s" in detail:
        labels.append("close rows only\n(no deliveries)")
        rates.append(detail["close_only_rows_per_s"])
        colors.append("#bbbbbb")
    ax.barh(labels, rates, color=colors)
    ax.axvline(GOALS["claim_rows_per_s"].limit or 0, color="black", linestyle="dashed")
    for i, rate in enumerate(rates):
        ax.text(rate, i, f" {rate:,.0f}", va="center")
    ax.set_xlim(0, max(*rates, 50_000) * 1.3)
    ax.invert_yaxis()
    ax.set_xlabel("due queue rows closed / s, 2 claimers (ours writes 2 delivery rows each)")
    ax.set_title("Claim throughput (dashed: goal 50 000)")

    ax = axes[1][1]
    labels = ["due→send p50 (s)", "due→send p99 (s)", "RSS growth (%)"]
    values = [f["p50_due_to_send_s"], f["p99_due_to_send_s"], f["rss_growth_pct"]]
    goals = [None, GOALS["p99_due_to_send_s"].limit, GOALS["rss_growth_pct"].limit]
    colors = ["#4477aa", _color(GOALS["p99_due_to_send_s"].met(values[1])),
              _color(GOALS["rss_growth_pct"].met(values[2]))]
    ax.bar(labels, values, color=colors)
    for i, (value, goal) in enumerate(zip(values, goals, strict=True)):
        ax.text(i, value, f"{value:g}", ha="center", va="bottom")
        if goal is not None:
            ax.hlines(goal, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
    ax.set_ylim(min(0, *values) * 1.2, max(*values, 10.0) * 1.2)
    ax.set_title("Latency and memory (dashed: goal, lower is better)")

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def statistics_mean(values: list[float]) -> float:
    """Mean of a non-empty list."""
    return sum(values) / len(values)


def _color(met: bool | None) -> str:
    return "#999999" if met is None else ("#228833" if met else "#ee6677")


def write_all(results: Results, out_dir: Path) -> tuple[Path, Path]:
    """The JSON file and the chart, named by mode and time; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = out_dir / f"bench-{results.plan.mode}-{stamp}.json"
    png_path = out_dir / f"bench-{results.plan.mode}-{stamp}.png"
    write_json(results, json_path)
    write_chart(results, png_path)
    return json_path, png_path
