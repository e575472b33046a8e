"""The terminal front end: ``pydags run FILE.py[:NAME]`` (``--cache``, ``--dry-run``),
``pydags resume FILE.py[:NAME]``, ``pydags show FILE.py[:NAME]`` or ``RUN_ID``, ``pydags runs``,
``pydags watch RUN_ID|PIPELINE`` and ``pydags cache`` (``prune``)."""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pydags.pipeline import Pipeline
from pydags.recorder import Snapshot
from pydags.run import Run
from pydags.status import PALETTE, StageStatus


class CommandError(Exception):
    """A one-line problem with the command's input (exit code 2)."""


def find_pipeline(target: str) -> Pipeline:
    """Import ``FILE.py`` and return its pipeline named ``NAME`` (or its only pipeline)."""
    path, _, name = target.partition(":")
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"no such file: {path}")
    sys.path.insert(0, str(file.resolve().parent))
    try:
        namespace = runpy.run_path(str(file), run_name="__pydags__")
    except Exception as exc:
        raise CommandError(f"{path} raised {type(exc).__name__}: {exc}") from None
    found = {k: v for k, v in namespace.items() if isinstance(v, Pipeline)}
    if name:
        if name not in found:
            raise CommandError(f"{path} has no pipeline named {name!r} "
                               f"(it has: {', '.join(found) or 'none'})")
        return found[name]
    if not found:
        raise CommandError(f"{path} defines no Pipeline at top level")
    if len(found) > 1:
        raise CommandError(f"{path} defines several pipelines ({', '.join(found)}); "
                           f"pick one with {path}:NAME")
    return next(iter(found.values()))


def progress_table(run: Snapshot) -> Table:
    """How far the run is, the running stages and the failures so far."""
    running = [n for n, s in run.status.items() if s is StageStatus.RUNNING]
    table = Table.grid(padding=(0, 2))
    table.add_row(Text(run.summary, style="bold"), f"{run.wall_time or 0:.1f}s")
    table.add_row("running:", Text(", ".join(running[:8]) + (" …" if len(running) > 8 else "")))
    for name in running:
        if name in run.items:
            table.add_row(Text(f"  {name}:"), run.items[name].summary())
    failed = run.failed()
    if failed:
        table.add_row("[red]failed:[/]", Text(", ".join(failed)))
    return table


def summary_table(run: Snapshot, run_id: str | None = None) -> Table:
    """Every stage with its status and duration, and the run's totals."""
    named = f" (run {run_id})" if run_id else ""
    table = Table(title=Text(f"{run.pipeline_name}{named}: {run.wall_time or 0:.2f}s"))
    cached = any(r.cache for r in run.stage_records.values())
    for column in ("stage", "status", "seconds", "worker", *(["cache"] if cached else [])):
        table.add_column(column)
    for record in run.stage_records.values():
        look = PALETTE[record.status].rich
        took = f"{record.duration:.2f}" if record.duration is not None else "-"
        worker = run.items[record.name].summary() if record.name in run.items else record.worker
        row = [Text(record.name), Text(record.status.value, style=look), took,
               Text(worker or "-")]
        table.add_row(*row, *([Text(record.cache or "-")] if cached else []))
    return table


def stale_table(pipeline: Pipeline) -> Table:
    """Each stage, whether a run with ``--cache`` would run it, and why."""
    reasons = pipeline.stale()
    running = sum(reason is not None for reason in reasons.values())
    table = Table(title=Text(f"{pipeline.name}: {running} of {len(reasons)} stages would run "
                             "(with --cache; without it, all do)"))
    for column in ("stage", "runs", "why"):
        table.add_column(column)
    for name, reason in reasons.items():
        table.add_row(Text(name), "yes" if reason else "no",
                      Text(reason or "its result is known (cached)"))
    return table


def run_command(args: argparse.Namespace, console: Console) -> int:
    pipeline = find_pipeline(args.target)
    if getattr(args, "dry_run", False):
        console.print(stale_table(pipeline))
        return 0
    resume = (args.run or True) if args.command == "resume" else False
    try:
        run = pipeline.prepare(num_cores=args.cores, raise_on_error=False, cache=args.cache,
                               resume=resume)
    except (KeyError, ValueError) as exc:  # no run to resume, say
        raise CommandError(str(exc).strip("'\"")) from None
    live = Live(console=console, refresh_per_second=8, transient=True)
    run.subscribe(lambda _: live.update(progress_table(run.snapshot())),
                  # what stages print, as they do:
                  on_output=lambda _, text: console.out(text, end="", highlight=False))
    with live:
        run.start(block=False).wait()
    return report(run, console)


def report(run: Run, console: Console) -> int:
    """The run's table, efficiency and errors; the exit code its end gives."""
    final = run.snapshot()
    console.print(summary_table(final, run.id))
    from pydags.views.timeline import efficiency_summary

    if final.durations:
        console.print(efficiency_summary(final))
    for name in run.failed():
        console.print(f"[red]stage {escape(repr(name))} failed:[/]")
        console.print(Text(run.errors[name]), highlight=False)
    return 0 if run.ok else 1


def show_command(args: argparse.Namespace, console: Console) -> int:
    if Path(args.target.partition(":")[0]).suffix != ".py":  # a run's id
        from pydags.past_runs import load_run

        try:
            run = load_run(args.target)
        except KeyError as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        console.print(f"run {run.id} of {run.pipeline_name!r}: {run.state}")
        return report(run, console)
    pipeline = find_pipeline(args.target)
    pipeline.visualize().savefig(args.output, dpi=110)
    console.print(f"{pipeline!r} drawn to {args.output}")
    return 0


def runs_command(args: argparse.Namespace, console: Console) -> int:
    from pydags import journal
    from pydags.scribe import reading

    with reading() as db:
        rows = journal.runs(db, args.pipeline, args.last)
    table = Table(title=Text(f"runs in {journal.path()}"))
    for column in ("id", "pipeline", "state", "started", "seconds", "done", "failed"):
        table.add_column(column)
    for row in rows:
        look = {"ok": "green", "failed": "red", "interrupted": "yellow"}.get(row["state"], "")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"] or 0))
        seconds = f"{row['seconds']:.2f}" if row["seconds"] is not None else "-"
        table.add_row(row["id"], Text(row["pipeline"]), Text(row["state"], style=look),
                      started, seconds, f"{row['done']}/{row['stages']}", str(row["failed"]))
    console.print(table if rows else "no runs journaled yet")
    return 0


def watch_command(args: argparse.Namespace, console: Console) -> int:
    from pydags.past_runs import watch

    try:
        run = watch(args.target, block=False, show=False)
    except KeyError as exc:
        raise CommandError(str(exc).strip("'\"")) from None
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while not run._recorder.finished.wait(0.25):
            live.update(progress_table(run.snapshot()))
    console.print(f"run {run.id} of {run.pipeline_name!r}: {run.state}")
    return report(run, console)


def cache_command(args: argparse.Namespace, console: Console) -> int:
    from pydags import quota
    from pydags.store import DiskStore

    store = DiskStore(args.store)
    if args.action == "prune":
        if args.keep_last is None and args.older_than is None:
            raise CommandError("prune what? give --keep-last N, --older-than DAYS, or both")
        try:
            count, size = quota.prune(store, keep_last=args.keep_last,
                                      older_than=args.older_than)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        console.print(f"pruned {count} results, {size / 1e6:.1f} MB, from {store.path}")
        return 0
    table = Table(title=Text(f"results kept in {store.path} (quota {quota.quota() / 1e9:g} "
                             "GB)"))
    for column in ("pipeline", "results", "MB"):
        table.add_column(column)
    sizes = quota.sizes(store)
    for pipeline, (count, size) in sorted(sizes.items()):
        table.add_row(Text(pipeline), str(count), f"{size / 1e6:.1f}")
    console.print(table if sizes else f"no results kept in {store.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pydags", description="Run or draw a pydags pipeline; "
                                     "list, show, watch and resume its runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command, help in (("run", "run a pipeline with live progress"),
                          ("resume", "run again what did not succeed in a pipeline's last run "
                                     "(also one whose driver died)")):
        run = commands.add_parser(command, help=help)
        run.add_argument("target", help="FILE.py or FILE.py:NAME")
        run.add_argument("--cores", type=int, default=1, help="stages at once (-1: every core)")
        run.add_argument("--cache", action="store_true",
                         help="reuse cached results of unchanged stages, and say why others ran")
        if command == "run":
            run.add_argument("--dry-run", action="store_true",
                             help="run nothing: say which stages --cache would run, and why")
        else:
            run.add_argument("--run", help="the id of the run to resume (default: the last)")
    show = commands.add_parser("show", help="save a drawing of a pipeline, or show a run")
    show.add_argument("target", help="FILE.py or FILE.py:NAME, or a run's id")
    show.add_argument("-o", "--output", default="dag.png", help="image file (default dag.png)")
    runs = commands.add_parser("runs", help="list the journaled runs, newest first")
    runs.add_argument("pipeline", nargs="?", help="only this pipeline's")
    runs.add_argument("-n", "--last", type=int, default=20, help="how many (default 20)")
    watch = commands.add_parser("watch", help="follow a run going on in another process")
    watch.add_argument("target", help="a run's id, or a pipeline's name (its latest run)")
    cache = commands.add_parser("cache", help="the results kept, per pipeline; prune them")
    cache.add_argument("action", nargs="?", choices=["show", "prune"], default="show")
    cache.add_argument("--store", help="the store's folder (default: $PYDAGS_STORE or "
                       "~/.cache/pydags/store)")
    cache.add_argument("--keep-last", type=int, help="prune: keep each pipeline's last N runs'")
    cache.add_argument("--older-than", type=float,
                       help="prune: delete results not used for this many days")
    args = parser.parse_args(argv)
    console = Console()
    try:
        if args.command in ("run", "resume"):
            if args.cores == 0 or args.cores < -1:
                raise CommandError("--cores must be 1 or more, or -1 for every core")
            return run_command(args, console)
        return {"show": show_command, "runs": runs_command, "watch": watch_command,
                "cache": cache_command}[args.command](args, console)
    except CommandError as exc:
        print(f"pydags: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
