"""Variants of a base recipe: each is a list of ``--set`` overrides, so it differs only where it says.

A variant comes from one factor of the command line (``--masker random``, ``--tasks B+I~V``), or
from a recipe file whose own keys (not those it inherits) become the overrides, which is how
``--paper`` turns the shipped Table-4 column recipes into variants of any base. A variant whose
overrides are exactly a shipped column recipe's carries that column's label and the paper's
figures, however it was asked for (``--masker random`` is the "Random masking" column).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kaleido.recipe.load import leaves
from kaleido.recipe.schema import COMPONENT_SECTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The AKPM sub-tasks by their roman numeral in Table 4 (one per Kaleido level 1x1 .. 5x5).
ROMAN = {"I": "rr", "II": "jps", "III": "cp", "IV": "g2cm", "V": "b2cm"}
ROMAN_ORDER = ("I", "II", "III", "IV", "V")
BASE_TASKS = ("amlm", "itm")  # "B"
SHORTHAND = re.compile(r"[Bb](\+[IViv~-]+)*")

PLACEHOLDER = "/path/to/"  # full.toml's paths a user replaces with their own files


@dataclass(frozen=True)
class Column:
    """One column of the paper's Table 4 and the shipped recipe that reproduces it."""

    factor: str
    label: str
    recipe: str | None  # file stem under recipes/; None: the full recipe itself
    sum_r: float
    sum_cls: float
    sum_cap: float

    @property
    def paper(self) -> dict[str, float]:
        return {"sum_r": self.sum_r, "sum_cls": self.sum_cls, "sum_cap": self.sum_cap}


# SPEC section 8, Table 4, copied as printed (its B+I~V column gives SumR 319.02, the full model 319.52).
FULL_COLUMN = Column("base", "Kaleido + SOD, AGM, B+I~V (full)", None, 319.52, 318.14, 84.0)
PAPER_COLUMNS: tuple[Column, ...] = (
    Column("patcher", "Scale-fixed", "scale-fixed", 276.97, 313.43, 76.6),
    Column("patcher", "Kaleido (no SOD)", "kaleido-no-sod", 303.80, 314.96, 79.7),
    Column("masker", "Random masking", "random-masking", 299.50, 314.31, 78.6),
    Column("tasks", "B", "tasks-b", 295.70, 297.40, 77.9),
    Column("tasks", "B+I", "tasks-b-i", 297.18, 298.77, 79.0),
    Column("tasks", "B+I~II", "tasks-b-i-ii", 300.82, 307.54, 79.2),
    Column("tasks", "B+I~III", "tasks-b-i-iii", 312.65, 315.30, 81.6),
    Column("tasks", "B+I~IV", "tasks-b-i-iv", 316.10, 316.88, 83.4),
    Column("tasks", "B+V", "tasks-b-v", 287.70, 300.21, 78.6),
)


class VariantError(ValueError):
    """A variant value that cannot be turned into overrides (one line, naming the value)."""


@dataclass(frozen=True)
class Variant:
    """A named set of ``--set`` overrides of the base recipe."""

    factor: str  # "base", one of FACTORS, or "recipe"
    label: str
    overrides: tuple[str, ...] = ()
    paper: dict[str, float] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def slug(self) -> str:
        """A folder-safe name: ``tasks-b-i-v``, ``masker-random``."""
        text = f"{self.factor}-{self.label}".lower()
        return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def toml_value(value: Any) -> str:
    """A value as TOML inline text, the way ``--set key=VALUE`` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise VariantError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")


def parse_tasks(spec: str) -> list[str]:
    """``B`` / ``B+I`` / ``B+I~IV`` / ``B+V`` / ``B+II+IV`` (Table 4's shorthands) or ``amlm,itm,rr``."""
    text = spec.strip().replace(" ", "")
    if not SHORTHAND.fullmatch(text):
        names = [t.strip() for t in text.split(",") if t.strip()]
        if not names:
            raise VariantError(f"--tasks {spec!r}: no task named")
        return names
    parts = text.split("+")
    chosen: list[str] = []
    for part in parts[1:]:
        bounds = re.split(r"[~-]", part.upper())
        if len(bounds) > 2 or any(b not in ROMAN for b in bounds):
            raise VariantError(f"--tasks {spec!r}: {part!r} is not I..V or a range like I~IV")
        lo, hi = ROMAN_ORDER.index(bounds[0]), ROMAN_ORDER.index(bounds[-1])
        if lo > hi:
            raise VariantError(f"--tasks {spec!r}: the range {part!r} runs backwards")
        chosen += [r for r in ROMAN_ORDER[lo:hi + 1] if r not in chosen]
    ordered = [r for r in ROMAN_ORDER if r in chosen]
    return [*BASE_TASKS, *(ROMAN[r] for r in ordered)]


def component_variant(factor: str, value: str) -> Variant:
    """``--masker random`` or ``--masker "agm token_rate=0.2"``: a component and its parameters."""
    if factor not in COMPONENT_SECTIONS:
        raise VariantError(f"--{factor} is not a component section")
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise VariantError(f"--{factor} {value!r}: {exc}") from None
    if not words or "=" in words[0]:
        raise VariantError(f"--{factor} {value!r}: start with the component name, e.g. --{factor} random")
    overrides = [f"{factor}.name={toml_value(words[0])}"]
    for word in words[1:]:
        if "=" not in word:
            raise VariantError(f"--{factor} {value!r}: {word!r} is not key=value")
        key, text = word.split("=", 1)
        overrides.append(f"{factor}.{key.strip()}={text.strip()}")
    return Variant(factor, value.strip(), tuple(overrides))


def tasks_variant(spec: str) -> Variant:
    return Variant("tasks", spec.strip(), (f"pretrain.tasks={toml_value(parse_tasks(spec))}",))


def file_overrides(path: Path) -> list[str]:
    """A recipe file's own keys (``extends`` and ``name`` left out) as ``--set`` overrides, one per
    leaf, so a nested table merges into the base's as ``extends`` merges it."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VariantError(f"{path}: not a readable recipe ({exc})") from None
    data.pop("extends", None)
    data.pop("name", None)
    return [f"{key}={toml_value(value)}" for key, value in leaves(data)]


def column_for(overrides: Sequence[str], recipes_dir: Path) -> Column | None:
    """The Table-4 column whose shipped recipe changes exactly these settings, if any."""
    wanted = set(overrides)
    for col in PAPER_COLUMNS:
        path = Path(recipes_dir) / f"{col.recipe}.toml"
        if path.is_file() and set(file_overrides(path)) == wanted:
            return col
    return None


def with_column(variant: Variant, recipes_dir: Path) -> Variant:
    """The variant under its Table-4 column's label and figures when it is one (else unchanged)."""
    col = column_for(variant.overrides, recipes_dir)
    if col is None:
        return variant
    return replace(variant, factor=col.factor, label=col.label, paper=col.paper)


def recipe_variant(path: Path, label: str | None = None, factor: str = "recipe",
                   paper: dict[str, float] | None = None) -> Variant:
    path = Path(path)
    return Variant(factor, label or path.stem, tuple(file_overrides(path)), paper)


def file_variant(path: Path, recipes_dir: Path) -> Variant:
    """``--variant FILE``: a file that changes what a shipped Table-4 column recipe changes keeps
    that column's label and figures (by its content, not its name)."""
    return with_column(recipe_variant(path), recipes_dir)


def base_variant(recipe: Any, recipes_dir: Path) -> Variant:
    """The base row of ``--paper``: the full model's label and figures when the base is
    ``full.toml`` as shipped (its ``/path/to`` placeholders replaced, the run's place and launch
    aside), else the base's own name, with a note of what differs."""
    from kaleido.recipe import load_recipe

    full = load_recipe(Path(recipes_dir) / "full.toml")
    sections = [f for f in type(recipe.model).model_fields if f not in ("name", "output_dir", "launch")]
    ours = dict(leaves(recipe.section_values(*sections)))
    theirs = dict(leaves(full.section_values(*sections)))
    differs = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k)
                     and not str(theirs.get(k, "")).startswith(PLACEHOLDER))
    if not differs:
        return Variant("base", FULL_COLUMN.label, (), FULL_COLUMN.paper)
    shown = ", ".join(differs[:4]) + (f" and {len(differs) - 4} more" if len(differs) > 4 else "")
    verb = "differs" if len(differs) == 1 else "differ"
    return Variant("base", recipe.name, notes=(f"not full.toml as shipped ({shown} {verb}): the paper's "
                                               f"full-model figures are not shown for it",))


def paper_variants(recipes_dir: Path) -> list[Variant]:
    """Every Table-4 column but the full one, from the shipped column recipes."""
    out = []
    for col in PAPER_COLUMNS:
        path = Path(recipes_dir) / f"{col.recipe}.toml"
        if not path.is_file():
            raise VariantError(f"--paper: {path} is missing (the Table-4 column {col.label!r})")
        out.append(recipe_variant(path, col.label, col.factor, col.paper))
    return out


def default_recipes_dir() -> Path:
    """The repository's ``recipes/`` folder (beside the package in a checkout or editable install)."""
    import kaleido

    return Path(kaleido.__file__).resolve().parents[1] / "recipes"
