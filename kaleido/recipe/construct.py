"""Build every component of a valid recipe once, as `kaleido check` does, to catch what only a
constructor knows.

Types and ranges in a signature are checked when the recipe loads; rules that tie parameters
together or read files (``keep_layers >= 1``, ``low_key`` needs ``low_level = 1``, a ``unet``
saliency model needs its weights, a size the UNet can halve, a model ``init`` folder) live in
the component's constructor. Building each section here turns such a refusal into the same
file / field / expected line as any other recipe error, before a long run starts (spaCy's
``debug config`` resolves its config for the same reason); a dataset's split files
(``data.train``, ``data.test``), which only a stage opens, are checked here as well. Components
are built on the CPU: a recipe for a GPU node is checked on a login node too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from kaleido import registry
from kaleido.data.sources import SPLITS
from kaleido.recipe.load import OVERRIDE, Problem, Recipe, _origin, resolve_component, split_task_table
from kaleido.recipe.params import params_model
from kaleido.recipe.schema import COMPONENT_SECTIONS, PretrainSettings, RecipeModel


def construction_problems(recipe: Recipe) -> list[Problem]:
    """One :class:`Problem` per component section (or pre-training task) whose constructor refuses
    the recipe's parameters; nothing is kept."""
    return build_problems(recipe.data, recipe.origins, recipe.source)


def build_problems(data: dict, origins: dict[str, str], source: str,
                   failed: Iterable[str] = ()) -> list[Problem]:
    """The construction problems of a recipe's resolved ``data`` that need not be valid as a whole:
    every component section, and every task (run, or with a ``[tasks.X]`` table), is built unless
    a problem of ``failed`` (dotted paths the schema already refused) lies in its own section, so
    that one ``kaleido check`` reports the schema's problems and the constructors' together."""
    broken = {_owner(path) for path in failed}
    problems = []
    for section in COMPONENT_SECTIONS:
        resolved = None if section in broken else resolve_component(data, section)
        if resolved is None:
            continue
        component, name, given, validated = resolved
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        if "device" in kwargs:
            kwargs["device"] = "cpu"
        try:
            component(**kwargs)
        except Exception as exc:  # any refusal is reported the same way: what the component said
            problems.append(_problem(origins, source, section, name, given, exc))
        else:
            if section == "data":
                stages = data.get("stages", RecipeModel.model_fields["stages"].default)
                splits = SPLITS if isinstance(stages, list) and "eval" in stages else ("train",)
                problems += _data_file_problems(kwargs, origins, source, splits)
    pretrain = data.get("pretrain")
    listed = pretrain.get("tasks", PretrainSettings().tasks) if isinstance(pretrain, dict) else []
    tables = data.get("tasks") if isinstance(data.get("tasks"), dict) else {}
    known = registry.tasks.names()
    for task in dict.fromkeys([*(listed if isinstance(listed, list) else []), *tables]):
        if not isinstance(task, str) or task not in known or f"tasks.{task}" in broken:
            continue
        table = tables.get(task, {})
        given = split_task_table(table)[1] if isinstance(table, dict) else {}
        try:
            validated = params_model(registry.tasks.get(task))(**given)
        except Exception:
            continue
        try:
            registry.tasks.get(task)(**{k: getattr(validated, k) for k in type(validated).model_fields})
        except Exception as exc:
            problems.append(_problem(origins, source, f"tasks.{task}", task, given, exc))
    return problems


def _owner(path: str) -> str:
    """The section (or ``tasks.X`` table) a problem's dotted path lies in (a task's ``weight`` is
    the loss's, not the task's: it never keeps the task from being built)."""
    parts = path.split(".")
    if parts[0] == "tasks":
        return "" if parts[2:] == ["weight"] else ".".join(parts[:2])
    return parts[0].split("[")[0]


def _data_file_problems(params: dict, origins: dict[str, str], source: str,
                        splits: tuple[str, ...]) -> list[Problem]:
    """A dataset parameter named after a split the stages read (``train``, and ``test`` when
    ``eval`` runs: ``pipeline.splits_needed``) is that split's file (``fashiongen``, ``jsonl``),
    which ``open(split)`` reads only when a stage starts: it must be a file now."""
    problems = []
    for split in splits:
        value = params.get(split)
        if isinstance(value, str) and not Path(value).expanduser().is_file():
            field = f"data.{split}"
            problems.append(Problem(_origin(origins, field, source), field, value,
                                    f"an existing {split} data file (nothing at {Path(value).expanduser()})"))
    return problems


def _problem(origins: dict[str, str], source: str, section: str, name: str, given: dict,
             exc: Exception) -> Problem:
    """The refusal, at a field its message names (as a whole word) among those the recipe set: the
    one set last (a ``--set``, then the recipe file itself, then what it extends), then the one
    the message names first. A rule that ties two fields then points at the one just changed."""
    message = _one_line(exc)
    named = {key: m.start() for key in given if (m := re.search(rf"\b{re.escape(key)}\b", message))}

    def rank(key: str) -> tuple[int, int]:
        origin = _origin(origins, f"{section}.{key}", source)
        return (0 if origin == OVERRIDE else 1 if origin == source else 2, named[key])

    field = min(named, key=rank) if named else None
    path = f"{section}.{field}" if field else section
    value = given[field] if field else name
    where = _origin(origins, path if field else f"{section}.name", source)
    kind = "task" if section.startswith("tasks.") else section
    return Problem(where, path, value, f"a value the {name!r} {kind} accepts ({message})")


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ValueError | TypeError | OSError | registry.PluginError) \
        else f"{type(exc).__name__}: {text}"
