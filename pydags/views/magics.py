"""``%%pydags`` builds (and runs) a pipeline from the functions of a cell; ``%pydags`` manages them.

Rules of the cell magic:
- every top-level function of the cell is a stage, except those whose name starts with ``_``;
- a parameter named like another stage of the cell receives that stage's result;
- any other parameter takes its default, else the user-namespace variable of that name
  (read when the pipeline is built); with neither, it is an error before anything runs;
- stage objects the cell binds at top level (made with ``@stage``/``.after()``) join too;
- a cell run again runs only the stages whose code or inputs changed (and those below
  them), reusing the others' results from the pipeline's store; ``--all`` runs them all.
"""

from __future__ import annotations

import ast
import graphlib
import math
import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from pydags.pipeline import Pipeline
from pydags.run import Run
from pydags.stage import Stage, StageFunction, stage


@magics_class
class PydagsMagics(Magics):
    """The ``%%pydags`` cell magic and the ``%pydags`` line magic."""

    @magic_arguments()
    @argument("name", nargs="?", help="variable the pipeline is bound to (cell magic)")
    @argument("--cores", type=int, default=1, help="stages at once (default 1; -1: all)")
    @argument("--no-run", action="store_true", help="build and draw, do not run")
    @argument("--all", action="store_true",
              help="run every stage (by default, stages whose code and inputs did not change "
                   "since their last run are reused)")
    @argument("--no-widget", action="store_true", help="run without the live widget")
    @argument("--timeout", type=float, help="seconds each stage may take")
    @argument("--retries", type=int, help="times a failing stage is retried")
    @line_cell_magic
    def pydags(self, line: str, cell: str | None = None) -> Any:
        """Build and run a pipeline from a cell, or manage pipelines.

        Cell: ``%%pydags NAME [--cores N] [--all] [--no-run] [--no-widget] [--timeout S]
        [--retries K]``: runs the stages whose code or inputs changed since their last run
        (all of them with ``--all``) and reuses the others' results.
        Line: ``%pydags`` lists pipelines; ``%pydags run NAME [--cores N]``,
        ``%pydags show NAME``, ``%pydags status NAME``.
        """
        if cell is None:
            return self._line(line)
        args = parse_argstring(self.pydags, line)
        if not args.name:
            raise UsageError("%%pydags needs a NAME for the pipeline, e.g. %%pydags flow")
        return self._cell(args, cell)

    # --- the cell magic --------------------------------------------------------
    def _cell(self, args: Any, cell: str) -> Any:
        ns = self.shell.user_ns
        name = args.name
        if not name.isidentifier():
            raise UsageError(f"%%pydags: {name!r} is not a valid Python name for the pipeline")
        if name in ns and not isinstance(ns[name], Pipeline):
            raise UsageError(f"%%pydags: {name!r} already holds a {type(ns[name]).__name__}; "
                             "choose another name so it is not overwritten")
        if args.cores == 0 or args.cores < -1:
            raise UsageError("%%pydags: --cores must be 1 or more, or -1 for every core")
        if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
            raise UsageError(f"%%pydags: --timeout must be seconds > 0, not {args.timeout:g}")
        if args.retries is not None and args.retries < 0:
            raise UsageError(f"%%pydags: --retries must be 0 or more, not {args.retries}")
        try:
            tree = ast.parse(cell)
        except SyntaxError as exc:
            raise UsageError(f"%%pydags: syntax error in the cell, line {exc.lineno}: "
                             f"{exc.msg}") from None
        functions = [node for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and not node.name.startswith("_")]
        assigned = _top_level_names(tree)
        if not functions and not _binds_stages(tree):
            raise UsageError("%%pydags: the cell defines no function; each top-level "
                             "function becomes a stage")
        if name in {f.name for f in functions}:
            raise UsageError(f"%%pydags: the pipeline name {name!r} is also a function name")
        _check_parameters(functions, assigned | set(ns))
        before = {key: id(value) for key, value in ns.items()}
        result = self.shell.run_cell(cell, store_history=False, silent=False)
        if not result.success:
            raise UsageError("%%pydags: the cell raised an error (shown above); "
                             "no pipeline was built")
        pipeline = self._build(name, functions, before, args)
        if not len(pipeline):
            raise UsageError("%%pydags: the cell defines no function; each top-level "
                             "function becomes a stage")
        ns[name] = pipeline
        if args.no_run:
            from IPython.display import display

            display(pipeline)
            return None
        return self._start(pipeline, args.cores, widget=not args.no_widget, cache=not args.all)

    def _build(self, name: str, functions: list[ast.FunctionDef], before: dict[str, int],
               args: Any) -> Pipeline:
        ns = self.shell.user_ns
        names = {f.name for f in functions}
        stages: dict[str, Stage] = {}
        for node in functions:  # definition order; dependencies are earlier or later
            stages[node.name] = _as_stage_function(ns[node.name])
        built: dict[str, Stage] = {}

        def make(fname: str) -> Stage:
            if fname in built:
                return built[fname]
            node = next(f for f in functions if f.name == fname)
            given = {}
            for param, has_default in _parameters(node):
                if param in names and param != fname:
                    given[param] = make(param)
                elif not has_default and param in ns:
                    given[param] = ns[param]
            built[fname] = stages[fname](**given)
            return built[fname]

        for fname in names:
            make(fname)
        extra = [value for key, value in ns.items()
                 if isinstance(value, Stage) and before.get(key) != id(value)]
        try:
            pipeline = Pipeline(name).add_stages(*[built[f.name] for f in functions], *extra)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"%%pydags: {exc}") from None
        for item in pipeline.stages:
            item.options(timeout=args.timeout, retries=args.retries)
        return pipeline

    # --- the line magic --------------------------------------------------------
    def _line(self, line: str) -> Any:
        words = shlex.split(line)
        if not words:
            return self._list()
        command, rest = words[0], words[1:]
        commands = {"run": self._run_command, "show": self._show_command,
                    "status": self._status_command}
        if command not in commands:
            raise UsageError(f"%pydags: unknown command {command!r}; use run, show or status "
                             "(or %%pydags NAME as a cell magic)")
        return commands[command](rest)

    def _pipeline(self, words: list[str], command: str) -> Pipeline:
        if not words:
            raise UsageError(f"%pydags {command} needs the NAME of a pipeline")
        value = self.shell.user_ns.get(words[0])
        if not isinstance(value, Pipeline):
            known = ", ".join(self._pipelines()) or "none yet"
            raise UsageError(f"%pydags {command}: no pipeline named {words[0]!r} "
                             f"(pipelines: {known})")
        return value

    def _run_command(self, words: list[str]) -> Any:
        pipeline = self._pipeline(words, "run")
        cores, rest = 1, words[1:]
        if rest:
            if rest[0] != "--cores" or len(rest) != 2 or not _is_int(rest[1]):
                raise UsageError("%pydags run NAME [--cores N]")
            cores = int(rest[1])
            if cores == 0 or cores < -1:
                raise UsageError("%pydags run: --cores must be 1 or more, or -1")
        return self._start(pipeline, cores, widget=True)

    def _show_command(self, words: list[str]) -> Any:
        from IPython.display import display

        display(self._pipeline(words, "show"))

    def _status_command(self, words: list[str]) -> None:
        pipeline = self._pipeline(words, "status")
        run = pipeline.last_run
        if run is None:
            print(f"{pipeline.name}: not run yet ({len(pipeline)} stages)")
            return
        print(f"{pipeline.name}: {run!r}")
        for record in run.stage_records.values():
            took = f"{record.duration:.2f}s" if record.duration is not None else "-"
            print(f"  {record.name:<24} {record.status.value:<10} {took}")

    def _pipelines(self) -> list[str]:
        return [k for k, v in self.shell.user_ns.items()
                if isinstance(v, Pipeline) and not k.startswith("_")]

    def _list(self) -> None:
        names = self._pipelines()
        if not names:
            print("No pipelines yet; build one with %%pydags NAME")
        for key in names:
            print(f"{key}: {self.shell.user_ns[key]!r}")

    def _start(self, pipeline: Pipeline, cores: int, widget: bool,
               cache: bool = False) -> Run | None:
        run = pipeline.start(num_cores=cores, show=widget, raise_on_error=False, cache=cache)
        failed = run.failed()
        if failed:
            for stage_name in failed:
                print(f"--- stage {stage_name!r} failed ---\n{run.errors[stage_name]}",
                      file=sys.stderr)
            raise UsageError(f"%%pydags: stage(s) {', '.join(failed)} failed; "
                             f"{pipeline.name}.last_run holds the partial result")
        return None


def _as_stage_function(value: Any) -> StageFunction:
    if isinstance(value, StageFunction):
        return value
    return stage(value)


def _parameters(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    """Each parameter of a function and whether it has a default."""
    spec = node.args
    positional = [*spec.posonlyargs, *spec.args]
    first_default = len(positional) - len(spec.defaults)
    params = [(a.arg, i >= first_default) for i, a in enumerate(positional)]
    params += [(a.arg, d is not None) for a, d in zip(spec.kwonlyargs, spec.kw_defaults,
                                                       strict=True)]
    return params


def _check_parameters(functions: list[ast.FunctionDef], known: set[str]) -> None:
    names = {f.name for f in functions}
    takes = {f.name: [p for p, _ in _parameters(f) if p in names] for f in functions}
    for node in functions:
        if node.name in takes[node.name]:
            raise UsageError(f"%%pydags: stage {node.name!r} has a parameter named like itself; "
                             "a stage cannot take its own result: rename the parameter")
    cycle = _cycle(takes)
    if cycle:
        path = " -> ".join([*cycle, cycle[0]])
        raise UsageError(f"%%pydags: the stages' parameters form a cycle ({path}): each takes "
                         "the result of the next; rename one of these parameters")
    for node in functions:
        for param, has_default in _parameters(node):
            if param not in names and not has_default and param not in known:
                raise UsageError(
                    f"%%pydags: stage {node.name!r} has a parameter {param!r} that is neither "
                    f"another stage of the cell, nor has a default, nor is a variable of "
                    f"the notebook; give it a default or define {param} first")


def _cycle(takes: dict[str, list[str]]) -> list[str]:
    """Stages that take each other's results in a circle, or an empty list."""
    try:
        graphlib.TopologicalSorter(takes).prepare()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1][:-1]))
    return []


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
    return names


def _binds_stages(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.Assign) for node in tree.body)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()
