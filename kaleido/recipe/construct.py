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
from pathlib import Path

from kaleido import registry
from kaleido.data.sources import SPLITS
from kaleido.recipe.load import OVERRIDE, Problem, Recipe, _origin
from kaleido.recipe.schema import COMPONENT_SECTIONS


def construction_problems(recipe: Recipe) -> list[Problem]:
    """One :class:`Problem` per component section (or pre-training task) whose constructor refuses
    the recipe's parameters; nothing is kept."""
    problems = []
    for section in COMPONENT_SECTIONS:
        spec = getattr(recipe.model, section)
        on_cpu = {"device": "cpu"} if "device" in recipe.params(section) else {}
        try:
            recipe.build(section, **on_cpu)
        except Exception as exc:  # any refusal is reported the same way: what the component said
            problems.append(_problem(recipe, section, spec.name, spec.params, exc))
        else:
            if section == "data":
                problems += _data_file_problems(recipe)
    for task in recipe.pretrain.tasks:
        try:
            recipe.build_task(task)
        except Exception as exc:
            problems.append(_problem(recipe, f"tasks.{task}", task, recipe.model.tasks.get(task, {}), exc))
    return problems


def _data_file_problems(recipe: Recipe) -> list[Problem]:
    """A dataset parameter named after a split (``train``, ``test``: ``fashiongen``, ``jsonl``) is
    that split's file, which ``open(split)`` reads only when a stage starts: it must exist now."""
    params = recipe.params("data")
    problems = []
    for split in SPLITS:
        value = params.get(split)
        if isinstance(value, str) and not Path(value).expanduser().exists():
            field = f"data.{split}"
            problems.append(Problem(_origin(recipe.origins, field, recipe.source), field, value,
                                    f"an existing {split} data file (nothing at {Path(value).expanduser()})"))
    return problems


def _problem(recipe: Recipe, section: str, name: str, given: dict, exc: Exception) -> Problem:
    """The refusal, at a field its message names (as a whole word) among those the recipe set: the
    one set last (a ``--set``, then the recipe file itself, then what it extends), then the one
    the message names first. A rule that ties two fields then points at the one just changed."""
    message = _one_line(exc)
    named = {key: m.start() for key in given if (m := re.search(rf"\b{re.escape(key)}\b", message))}

    def rank(key: str) -> tuple[int, int]:
        origin = _origin(recipe.origins, f"{section}.{key}", recipe.source)
        return (0 if origin == OVERRIDE else 1 if origin == recipe.source else 2, named[key])

    field = min(named, key=rank) if named else None
    path = f"{section}.{field}" if field else section
    value = given[field] if field else name
    where = _origin(recipe.origins, path if field else f"{section}.name", recipe.source)
    return Problem(where, path, value, f"a value the {name!r} {section.split('.')[0]} accepts ({message})")


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, ValueError | TypeError | OSError | registry.PluginError) \
        else f"{type(exc).__name__}: {text}"
