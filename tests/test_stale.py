"""``stale()`` says exactly which stages would run and why, before anything runs.

The oracle: a generated package of helper functions and module constants, a 30-stage DAG
whose stages call them at random depths, and random edits to the source. The generator
knows which stages each edit affects; ``stale()`` must name exactly those (and those below
them), no-op edits none, and ``start(cache=True)`` must run exactly what ``stale()`` named.
"""

from __future__ import annotations

import importlib
import random
import sys

import pytest

from pydags import StageStatus
from pydags.pipeline import Pipeline
from pydags.store import DiskStore

HELPERS, CONSTANTS, STAGES = 20, 10, 30


class Source:
    """The package as the generator knows it: what each helper and stage calls and reads."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.values = {c: rng.randint(0, 9) for c in range(CONSTANTS)}
        self.calls = {h: sorted(rng.sample(range(h + 1, HELPERS), min(HELPERS - h - 1,
                                                                       rng.randint(0, 2))))
                      for h in range(HELPERS)}
        self.reads = {h: rng.sample(range(CONSTANTS), rng.randint(0, 1)) for h in range(HELPERS)}
        self.bump = dict.fromkeys(range(HELPERS), 1)
        self.default = dict.fromkeys(range(HELPERS), 0)
        self.docstring = {h: "" for h in range(HELPERS)}
        self.comment = {h: "" for h in range(HELPERS)}
        self.spaced = dict.fromkeys(range(HELPERS), False)  # blank lines, parentheses
        self.order = list(range(HELPERS))  # where each helper sits in its file
        self.uses = {s: rng.sample(range(HELPERS), rng.randint(0, 2)) for s in range(STAGES)}
        self.upstream = {s: rng.sample(range(s), min(s, rng.randint(0, 2))) for s in range(STAGES)}
        self.argument = dict.fromkeys(range(STAGES), 1)

    def helpers_text(self) -> str:
        lines = ["from oracle_pkg import consts", ""]
        for h in self.order:
            body = " + ".join([f"x * {self.bump[h]}", "k",
                               *[f"consts.C{c}" for c in self.reads[h]],
                               *[f"h{j}(x)" for j in self.calls[h]]])
            if self.spaced[h]:
                body = f"(\n\n        {body.replace(' + ', '  +  ')}\n    )"
            lines += [f"def h{h}(x, k={self.default[h]}):",
                      *[f'    """{self.docstring[h]}"""'] * bool(self.docstring[h]),
                      *[f"    # {self.comment[h]}"] * bool(self.comment[h]),
                      f"    return {body}", "", ""]
        return "\n".join(lines)

    def write(self, folder) -> None:
        package = folder / "oracle_pkg"
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / "consts.py").write_text(
            "".join(f"C{c} = {v}\n" for c, v in self.values.items()))
        (package / "helpers.py").write_text(self.helpers_text())
        stages = ["from pydags import stage", "from oracle_pkg import helpers", "", ""]
        for s in range(STAGES):
            inputs = [f"u{u}" for u in self.upstream[s]]
            total = " + ".join(["a", *inputs, *[f"helpers.h{h}(a)" for h in self.uses[s]]])
            stages += ["@stage", f"def s{s}({', '.join(['a', *inputs])}):",
                       f"    return {total}", "", ""]
        (package / "stages.py").write_text("\n".join(stages))

    def reaching(self, helper: int) -> set[int]:
        """The stages whose code reaches ``helper``."""
        reach = {h: {h} for h in range(HELPERS)}
        for h in reversed(range(HELPERS)):
            for j in self.calls[h]:
                reach[h] |= reach[j]
        return {s for s in range(STAGES) if any(helper in reach[h] for h in self.uses[s])}

    def below(self, stages: set[int]) -> set[int]:
        found = set(stages)
        for s in range(STAGES):
            if any(u in found for u in self.upstream[s]):
                found.add(s)
        return found

    def edit(self) -> tuple[str, set[int]]:
        """Make one random edit; what it is, and the stages it affects."""
        rng, helper = self.rng, self.rng.randrange(HELPERS)
        kind = rng.choice(["body", "constant", "default", "argument", "dependency",
                           "comment", "docstring", "reformat", "move"])
        if kind == "body":
            self.bump[helper] += 1
        elif kind == "default":
            self.default[helper] += 1
        elif kind == "dependency":
            new = [j for j in range(helper + 1, HELPERS) if j not in self.calls[helper]]
            if not new:
                return "nothing", set()
            self.calls[helper] = sorted([*self.calls[helper], rng.choice(new)])
        elif kind == "constant":
            constant = rng.randrange(CONSTANTS)
            self.values[constant] += 1
            readers = [h for h in range(HELPERS) if constant in self.reads[h]]
            return kind, self.below(set().union(*map(self.reaching, readers)))
        elif kind == "argument":
            stage = rng.randrange(STAGES)
            self.argument[stage] += 1
            return kind, self.below({stage})
        else:  # edits that change nothing a stage computes
            if kind == "comment":
                self.comment[helper] = f"note {rng.random()}"
            elif kind == "docstring":
                self.docstring[helper] = f"Helper {rng.random()}." if rng.random() < 0.8 else ""
            elif kind == "reformat":
                self.spaced[helper] = not self.spaced[helper]
            else:
                self.order.remove(helper)
                self.order.append(helper)  # down its file
            return kind, set()
        return kind, self.below(self.reaching(helper))

    def pipeline(self, store) -> Pipeline:
        for name in [m for m in sys.modules if m.startswith("oracle_pkg")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        stages = importlib.import_module("oracle_pkg.stages")
        made: dict[int, object] = {}
        for s in range(STAGES):
            made[s] = getattr(stages, f"s{s}")(self.argument[s],
                                                *[made[u] for u in self.upstream[s]])
        return Pipeline("oracle", list(made.values()), store=store)


def test_stale_names_exactly_what_each_edit_affects_and_cache_runs_exactly_that(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a same-size edit within a second
    monkeypatch.syspath_prepend(str(tmp_path))
    source = Source(random.Random(25))
    source.write(tmp_path)
    store = DiskStore(tmp_path / "store")
    first = source.pipeline(store)
    assert set(first.stale().values()) == {"never run"}
    assert set(first.start(cache=True).status.values()) == {StageStatus.DONE}
    for step in range(200):
        kind, affected = source.edit()
        source.write(tmp_path)
        pipeline = source.pipeline(store)
        reasons = pipeline.stale()
        named = {int(name[1:]) for name, reason in reasons.items() if reason is not None}
        assert named == affected, (step, kind, reasons)
        run = pipeline.start(cache=True)
        ran = {int(n[1:]) for n, status in run.status.items() if status is StageStatus.DONE}
        assert ran == named, (step, kind)
        assert all(status is StageStatus.CACHED for n, status in run.status.items()
                   if int(n[1:]) not in ran)
    for name in [m for m in sys.modules if m.startswith("oracle_pkg")]:
        del sys.modules[name]


def test_each_reason_says_what_changed(tmp_path):
    from pydags import stage

    namespace: dict = {}
    code = """
from pydags import stage

SCALE = {scale}

def helper(x):
    return x * SCALE

@stage
def load():
    return [1, 2, 3]

@stage
def clean(rows, threshold=0.5):
    return [helper(r) for r in rows if r > threshold]

@stage
def total(rows):
    return sum(rows)
"""

    def build(scale=1, threshold=0.5):
        exec(code.format(scale=scale), namespace)
        return Pipeline("reasons", store=DiskStore(tmp_path)).add_stages(
            namespace["total"](namespace["clean"](namespace["load"](), threshold=threshold)))

    assert build().stale() == dict.fromkeys(["load", "clean", "total"], "never run")
    build().start(cache=True)
    assert set(build().stale().values()) == {None}
    assert build(threshold=0.7).stale() == {
        "load": None, "clean": "argument `threshold` changed: 0.5 → 0.7",
        "total": "upstream `clean` will run"}
    assert build(scale=3).stale()["clean"] == "global `SCALE` changed: 1 → 3"
    store = DiskStore(tmp_path)
    fingerprint = [k for k in store.keys("pydags-cache/reasons/load/") if not k.endswith("last")]
    store.delete(fingerprint[0])
    assert build().stale()["load"] == "its stored result is gone"

    @stage
    def square(x):
        return x * x

    mapped = Pipeline("items", [square.map([1, 2, 3])], store=DiskStore(tmp_path))
    mapped.start(cache=True)
    grown = Pipeline("items", [square.map([1, 2, 3, 4])], store=DiskStore(tmp_path))
    assert grown.stale()["square"] == (
        "argument `x` changed: [1, 2, 3] → [1, 2, 3, 4] (3 of 4 items known)")


@pytest.mark.parametrize("cores", [1, 2])
def test_an_edited_stage_module_is_fingerprinted_as_it_will_run(tmp_path, monkeypatch, cores):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / f"edited_{cores}.py"
    module.write_text("from pydags import stage\n\n@stage\ndef answer():\n    return 1\n")
    imported = importlib.import_module(f"edited_{cores}")
    store = DiskStore(tmp_path / "store")
    assert Pipeline("edited", [imported.answer()], store=store).start(
        cache=True, num_cores=cores).results["answer"] == 1
    module.write_text("from pydags import stage\n\n@stage\ndef answer():\n    return 22\n")
    again = Pipeline("edited", [imported.answer()], store=store)  # the old import's stage
    assert again.stale()["answer"] == f"its code changed: `answer` (edited_{cores}.py:3)"
    assert again.start(cache=True, num_cores=cores).results["answer"] == 22


def test_the_view_and_the_drawing_show_stale_and_fresh_stages_before_a_run(tmp_path):
    from matplotlib.colors import to_hex

    from pydags import stage
    from pydags.status import FRESH, STALE

    @stage
    def first():
        return 1

    @stage
    def second(x, scale=1):
        return x * scale

    store = DiskStore(tmp_path)
    Pipeline("view", [second(first())], store=store).start(cache=True)
    changed = Pipeline("view", [second(first(), scale=2)], store=store)
    view = changed.widget()
    assert view.stages == {
        "first": {"status": "fresh", "cache": "result known: it would be cached"},
        "second": {"status": "stale", "cache": "argument `scale` changed: 1 → 2"}}
    assert {"stale", "fresh"} <= set(view.looks)
    figure = changed.visualize(stale=True)
    fills = {patch.get_gid(): to_hex(patch.get_facecolor()) for patch in figure.axes[0].patches
             if patch.get_gid()}
    assert fills == {"first": FRESH.fill, "second": STALE.fill}
    view.close()


def test_a_drawing_whose_store_cannot_be_read_says_so_and_draws_plain(tmp_path):
    from pydags import stage
    from pydags.store import RedisStore

    @stage
    def lone():
        return 1

    unreachable = Pipeline("nowhere", [lone()], store=RedisStore("redis://127.0.0.1:1/0"))
    with pytest.warns(UserWarning, match="which stages are stale is not shown: ConnectionError"):
        view = unreachable.widget()
    assert view.stages == {"lone": {"status": "pending"}}
    view.close()
