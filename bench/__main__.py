"""`python -m bench`: the pipeline benchmark on a private stack (`regnotify bench` runs this).

The benchmark lives in the source tree, not in the wheel, and drives the
program from outside; the CLI starts it as a child process rather than
importing it, so the application never depends on its benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from bench import plans, report, runner
from bench.pipeline import WorkerShape
from tasks.cli.bench import add_options


def parser() -> argparse.ArgumentParser:
    """The options `regnotify bench` documents (defined once, in tasks/cli/bench.py)."""
    p = argparse.ArgumentParser(
        prog="regnotify bench",
        description="measure the pipeline (trigger, claim, sends, latency, memory) "
                    "on a private stack")
    add_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the plan, print the table, write the files, end with the figures as one JSON line."""
    args = parser().parse_args(argv)
    plan = plans.PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.processes or args.threads:
        plan = replace(plan, shape=WorkerShape(args.processes or plan.shape.processes,
                                               args.threads or plan.shape.threads))
    notes = plan.scaled_down()
    print(f"regnotify bench ({plan.mode}): workers {plan.shape}"
          + (f"; scaled down: {'; '.join(notes)}" if notes else ""), flush=True)

    def log(line: str) -> None:
        print(line, flush=True)

    began = time.monotonic()
    results = runner.run(plan, log=log)
    print()
    print(report.table(results))
    json_path, png_path = report.write_all(results, args.out)
    print(f"\nwrote {json_path} and {png_path} in {time.monotonic() - began:.0f} s")
    sys.stdout.flush()
    print(json.dumps(results.issue_figures()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
