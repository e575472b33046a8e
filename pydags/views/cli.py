"""The terminal front end: ``pydags run FILE.py[:NAME]`` (``--cache``, ``--dry-run``) and
``pydags show FILE.py[:NAME]``."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from pydags.pipeline import Pipeline
from pydags.recorder import Snapshot
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


def summary_table(run: Snapshot) -> Table:
    """Every stage with its status and duration, and the run's totals."""
    table = Table(title=Text(f"{run.pipeline_name}: {run.wall_time or 0:.2f}s"))
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
    if args.dry_run:
        console.print(stale_table(pipeline))
        return 0
    live = Live(console=console, refresh_per_second=8, transient=True)
    run = pipeline.prepare(num_cores=args.cores, raise_on_error=False, cache=args.cache)
    run.subscribe(lambda _: live.update(progress_table(run.snapshot())),
                  # what stages print, as they do:
                  on_output=lambda _, text: console.out(text, end="", highlight=False))
    with live:
        run.start(block=False).wait()
    final = run.snapshot()
    console.print(summary_table(final))
    from pydags.views.timeline import efficiency_summary

    console.print(efficiency_summary(final))
    for name in run.failed():
        console.print(f"[red]stage {escape(repr(name))} failed:[/]")
        console.print(Text(run.errors[name]), highlight=False)
    return 0 if run.ok else 1


def show_command(args: argparse.Namespace, console: Console) -> int:
    pipeline = find_pipeline(args.target)
    pipeline.visualize().savefig(args.output, dpi=110)
    console.print(f"{pipeline!r} drawn to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pydags", description="Run or draw a pydags pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a pipeline with live progress")
    run.add_argument("target", help="FILE.py or FILE.py:NAME")
    run.add_argument("--cores", type=int, default=1, help="stages at once (-1: every core)")
    run.add_argument("--cache", action="store_true",
                     help="reuse cached results of unchanged stages, and say why others ran")
    run.add_argument("--dry-run", action="store_true",
                     help="run nothing: say which stages --cache would run, and why")
    show = commands.add_parser("show", help="save a drawing of a pipeline")
    show.add_argument("target", help="FILE.py or FILE.py:NAME")
    show.add_argument("-o", "--output", default="dag.png", help="image file (default dag.png)")
    args = parser.parse_args(argv)
    console = Console()
    try:
        if args.command == "run":
            if args.cores == 0 or args.cores < -1:
                raise CommandError("--cores must be 1 or more, or -1 for every core")
            return run_command(args, console)
        return show_command(args, console)
    except CommandError as exc:
        print(f"pydags: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
