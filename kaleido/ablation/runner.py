"""Run the base and every variant through `kaleido run`'s stage chain, then compare them.

Each variant is the base recipe plus its ``--set`` overrides, run under its own name (one run
folder per setting) and once per seed. The stage chain keys every stage by the sections that
shape it, so whatever the variants share (the feature store when only the masker or the tasks
change, the alignments, a finished run of the base) is computed once and reused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.progress import TimeElapsedColumn

from kaleido.ablation.table import Row, build_table, chance, scores, write_all
from kaleido.ablation.variants import Variant, VariantError
from kaleido.progress import bar

log = logging.getLogger(__name__)


@dataclass
class Planned:
    """A variant resolved against the base: the overrides it runs with and its seeds' recipes."""

    variant: Variant
    overrides: tuple[str, ...]
    recipes: list[Any]  # one resolved Recipe per seed


def _task_grids(names: Sequence[str]) -> dict[str, int | None]:
    from kaleido import registry

    return {n: getattr(registry.tasks.get(n), "grid", None) for n in names}


def _takes(section: str, key: str) -> list[str]:
    """The registered components of a section that take a parameter ``key``."""
    from kaleido import registry
    from kaleido.recipe.params import params_model
    from kaleido.recipe.schema import COMPONENT_SECTIONS

    names = []
    for name, component in registry.REGISTRIES[COMPONENT_SECTIONS[section]].items():
        if component is not None and key in params_model(component).model_fields:
            names.append(name)
    return sorted(names)


def _applicable(base: Any, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """Drop a component parameter the base's component does not take but another component of
    its section does (a column recipe written for another component, e.g. ``aligner.levels`` on a
    base without an aligner), and say so; a parameter no component takes is a typo: an error,
    never a variant that silently equals the base. A ``seed`` is the ablation's (``--seeds``)."""
    from kaleido.recipe.params import params_model
    from kaleido.recipe.schema import COMPONENT_SECTIONS

    switched = {o.split("=", 1)[0].split(".")[0] for o in overrides if o.split("=", 1)[0].endswith(".name")}
    kept, notes = [], []
    for item in overrides:
        dotted = item.split("=", 1)[0].strip()
        parts = dotted.split(".")
        if dotted == "seed":
            notes.append(f"{item} left out: every setting runs with the base's seeds (--seeds)")
            continue
        own = len(parts) >= 2 and parts[0] in COMPONENT_SECTIONS and parts[0] not in switched
        if own and parts[1] != "name":
            fields = params_model(base.component(parts[0])).model_fields
            if parts[1] not in fields:
                component = getattr(base.model, parts[0]).name
                others = _takes(parts[0], parts[1])
                if not others:
                    raise VariantError(f"{dotted}: no {parts[0]} component takes {parts[1]!r} (the base's "
                                       f"{component!r} takes: {', '.join(fields) or 'nothing'})")
                notes.append(f"{dotted} left out: the base's {parts[0]} {component!r} has no such parameter "
                             f"({', '.join(others)} {'takes' if len(others) == 1 else 'take'} it)")
                continue
        kept.append(item)
    return kept, notes


def plan_variant(base_path: Path, base_overrides: Sequence[str], variant: Variant, name: str,
                 seeds: Sequence[int]) -> Planned:
    """Validate a variant against the base before anything runs; a task whose Kaleido level the
    variant's patch layout lacks is dropped, with a note (the scale-fixed grid has none of them)."""
    from kaleido.recipe import RecipeError, load_recipe

    base = load_recipe(base_path, list(base_overrides))
    try:
        overrides, notes = _applicable(base, variant.overrides)
    except VariantError as exc:
        raise VariantError(f"variant {variant.label!r}: {exc}") from None
    try:
        first = load_recipe(base_path, [*base_overrides, *overrides])
        grids = tuple(first.build("patcher").grids)
        first.build("masker")  # cheap: catches values the schema lets through (a rate of 7)
    except (RecipeError, ValueError) as exc:
        raise VariantError(f"variant {variant.label!r}: {exc}") from None
    tasks = list(first.pretrain.tasks)
    missing = [t for t, g in _task_grids(tasks).items() if g is not None and g not in grids]
    if missing:
        kept = [t for t in tasks if t not in missing]
        if not kept:
            raise VariantError(f"variant {variant.label!r}: no task fits the patch grids {grids}")
        overrides.append("pretrain.tasks=[" + ", ".join(f'"{t}"' for t in kept) + "]")
        notes.append(f"tasks {', '.join(missing)} dropped: the patch grids {grids} lack their Kaleido level")
    recipes = [load_recipe(base_path, [*base_overrides, *overrides, f'name="{name}"', f"seed={seed}"])
               for seed in seeds]
    return Planned(replace(variant, notes=(*variant.notes, *notes)), tuple(overrides), recipes)


def _default_runner(recipe: Any, launch: Any, echo: Callable[[str], None]) -> Path:
    from kaleido.training.pipeline import eval_dir, run_stages

    run_stages(recipe, launch=launch, progress=False, echo=echo)
    return eval_dir(recipe) / "results.json"


def run_ablation(base_path: Path, variants: Sequence[Variant], *, base_overrides: Sequence[str] = (),
                 base_variant: Variant | None = None, seeds: int = 1, launch: Any = None,
                 out_dir: Path | None = None, progress: bool = True, title: str | None = None,
                 runner: Callable[[Any, Any, Callable[[str], None]], Path] = _default_runner,
                 echo: Callable[[str], None] = print) -> tuple[dict, dict[str, Path]]:
    """Run the base and each variant ``seeds`` times; write ``ablation.{md,json,png}`` into ``out_dir``
    (default ``<output_dir>/ablate-<base name>``). Returns the table and the written paths.

    A run that fails is reported and left out of its row (its cells show "-"); the others go on.
    """
    from kaleido.recipe import load_recipe
    from kaleido.training.pipeline import Launch, eval_dir

    launch = launch or Launch()
    if seeds < 1:
        raise VariantError(f"--seeds must be >= 1, got {seeds}")
    base_recipe = load_recipe(base_path, list(base_overrides))
    seed_list = [base_recipe.seed + i for i in range(seeds)]
    base_variant = base_variant or Variant("base", base_recipe.name)
    planned = [plan_variant(base_path, base_overrides, base_variant, base_recipe.name, seed_list)]
    names = {base_recipe.name}
    for v in variants:
        name = f"{base_recipe.name}-{v.slug}"
        if name in names:
            raise VariantError(f"variant {v.label!r} is asked for twice")
        names.add(name)
        planned.append(plan_variant(base_path, base_overrides, v, name, seed_list))
    if out_dir is None:
        out_dir = Path(base_recipe.output_dir) / f"ablate-{base_recipe.name}"

    jobs = [(p, i) for p in planned for i in range(len(seed_list))]
    done: dict[str, tuple[dict | None, str]] = {}  # eval key -> (results, run dir)
    outcome: dict[tuple[int, int], tuple[dict | None, str, str | None]] = {}
    failures = 0
    with bar("ablate", len(jobs), progress, columns=(TimeElapsedColumn(),)) as pbar:
        for n, (p, i) in enumerate(jobs):
            recipe = p.recipes[i]
            head = f"[{n + 1}/{len(jobs)}] {p.variant.label} (seed {seed_list[i]})"

            def say(line: str, head: str = head) -> None:
                if pbar.enabled:
                    pbar.update(description=f"ablate {head}: {line}")
                else:
                    echo(f"{head}: {line}")

            key = eval_dir(recipe).name
            if key in done:  # the same recipe under another label: one run serves both
                results, where = done[key]
                outcome[(id(p), i)] = (results, where, None)
                say(f"same recipe as {where}, reused")
            else:
                start = time.perf_counter()
                try:
                    path = runner(recipe, launch, say)
                    results = json.loads(Path(path).read_text(encoding="utf-8"))
                    outcome[(id(p), i)] = (results, str(Path(path).parent), None)
                    done[key] = (results, str(Path(path).parent))
                    say(f"finished in {time.perf_counter() - start:.0f} s")
                except Exception as exc:  # one failed setting must not lose the others
                    failures += 1
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    message = f"seed {seed_list[i]} failed: {type(exc).__name__}: {first}"
                    log.error("%s: %s", p.variant.label, message)
                    echo(f"{head}: {message}")
                    outcome[(id(p), i)] = (None, "", message)
            pbar.advance()

    rows = []
    for p in planned:
        runs, dirs, notes = [], [], list(p.variant.notes)
        for i in range(len(seed_list)):
            results, where, error = outcome[(id(p), i)]
            runs.append(scores(results) if results is not None else {"sum_r": None, "sum_cls": None,
                                                                     "sum_cap": None})
            dirs.append(where)
            if error:
                notes.append(error)
        rows.append(Row(p.variant.factor, p.variant.label, seed_list, runs, p.variant.paper, tuple(notes),
                        tuple(dirs), p.overrides))
    base_results = outcome[(id(planned[0]), 0)][0]
    table = build_table(rows[0], rows[1:], chance(base_results) if base_results is not None else None)
    table["failures"] = failures
    table["base_recipe"] = str(base_path)
    paths = write_all(table, out_dir, title or f"Ablation of {base_recipe.name}")
    return table, paths
