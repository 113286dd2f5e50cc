"""Read a TOML recipe: follow ``extends``, apply ``--set`` overrides, validate, report every error.

Every leaf value remembers the file it came from, so an error names the file where the wrong
value was written (or ``--set`` for an override), its dotted path, what was given and what was
expected. All errors are collected and raised together as one :class:`RecipeError`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from kaleido import registry
from kaleido.atomic import write_text
from kaleido.recipe.params import params_model
from kaleido.recipe.schema import (
    COMPONENT_SECTIONS,
    ComponentSection,
    EvalSettings,
    PretrainSettings,
    RecipeModel,
)
from kaleido.suggest import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OVERRIDE = "--set"


# Per section, the settings that change how a stage runs, not its result (left out of stage keys).
# (The aligner says so itself: its folder is keyed by the component's own ``key()``.)
RUNTIME_FIELDS: dict[str, frozenset[str]] = {
    "prepare": frozenset({"num_workers"}),
    "backbone": frozenset({"batch_size", "device"}),
    "model": frozenset({"packed"}),
    "pretrain": frozenset({"checkpoint_every", "keep_last", "log_every", "num_workers", "compile"}),
}


@dataclass(frozen=True)
class Problem:
    """One recipe error: where, what was given, what was expected."""

    file: str
    path: str
    given: Any
    expected: str
    unknown_key: bool = False  # ``path`` is no key of its table: ``expected`` says which keys are

    def __str__(self) -> str:
        if self.unknown_key:  # "got 3, expected no such key" read as if 3 were the problem
            return f"{self.file}: {self.path}: {self.expected}"
        given = "nothing" if self.given is _MISSING else repr(self.given)
        return f"{self.file}: {self.path or '(top)'}: got {given}, expected {self.expected}"


class RecipeError(ValueError):
    """Every problem found in a recipe, one per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _Missing:
    def __repr__(self) -> str:
        return "nothing"


_MISSING = _Missing()


def _read_toml(path: Path, origin: str) -> dict:
    if not path.is_file():
        raise RecipeError([Problem(origin, "extends" if origin != str(path) else "", str(path),
                                   "an existing recipe file")])
    try:
        # utf-8-sig: a byte order mark (some Windows editors save "UTF-8 with BOM") is not TOML
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError([Problem(str(path), "", "unparsable TOML", f"valid TOML ({exc})")]) from None


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of nested tables; a section's ``name`` comes first (a
    component switch before its parameters); an empty table is a leaf."""
    if not isinstance(value, Mapping) or not value:
        yield prefix, value
        return
    for key, inner in sorted(value.items(), key=lambda kv: kv[0] != "name"):
        yield from leaves(inner, f"{prefix}.{key}" if prefix else str(key))


def _flatten_origins(data: dict, origin: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        out[dotted] = origin
        if isinstance(value, dict):
            out.update(_flatten_origins(value, origin, dotted + "."))
    return out


def _merge(base: dict, over: dict) -> dict:
    """Deep merge: tables merge key by key, any other value replaces. A component section that
    names another component merges the same way (confection's rule); the keys the new component
    does not take are then left out by :func:`_drop_foreign_keys`, with a note."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """The recipe and what it extends as ``(file, table)`` layers, the farthest base first."""
    path = path.resolve()
    if path in seen:
        raise RecipeError([Problem(str(seen[-1]), "extends", str(path), "no circular extends")])
    data = _read_toml(path, str(seen[-1]) if seen else str(path))
    parent = data.pop("extends", None)
    if parent is None:
        return [(str(path), data)]
    if not isinstance(parent, str):
        raise RecipeError([Problem(str(path), "extends", parent, "a path to another recipe")])
    return [*_load_chain(path.parent / parent, (*seen, path)), (str(path), data)]


def _default_name(section: str) -> str | None:
    default = RecipeModel.model_fields[section].default
    return default.name if isinstance(default, ComponentSection) else None


def _section_or_default(data: dict, section: str) -> Any:
    """A component section of raw recipe ``data``, or the schema's default section (a dict) where
    the recipe has none; None for a section with no default (``data``, ``model``)."""
    raw = data.get(section)
    if raw is None:
        default = RecipeModel.model_fields[section].default
        raw = default.model_dump() if isinstance(default, ComponentSection) else None
    return raw


def _component_names(data: dict) -> dict[str, Any]:
    """Each component section's ``name`` in ``data`` (its default where the section names none)."""
    names = {}
    for section in COMPONENT_SECTIONS:
        raw = data.get(section)
        default = _default_name(section)
        names[section] = raw.get("name", default) if isinstance(raw, dict) else default
    return names


def _takes(section: str, name: Any) -> set[str] | None:
    """The parameters component ``name`` of ``section`` takes; None when it cannot be looked up."""
    try:
        return set(params_model(registry.REGISTRIES[COMPONENT_SECTIONS[section]].get(name)).model_fields)
    except Exception:  # an unknown or broken component: reported by the schema
        return None


def _drop_foreign_keys(data: dict, origins: dict[str, str], written_for: dict[str, dict[str, Any]],
                       src: str) -> list[str]:
    """Leave out each component parameter that was written for another component than the one the
    section ends up naming and that this one does not take; one note each.

    A key was written for the component its section named in the layer that set it (a file of the
    ``extends`` chain, after merging it; for ``--set``, the files' component, whatever the order of
    the overrides). A key the final component does not take is an error as usual when it was
    written for that same component, or when the component it was written for does not take it
    either (a typo, not a leftover)."""
    notes = []
    for section in COMPONENT_SECTIONS:
        raw = data.get(section)
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            continue
        final = raw["name"]
        takes = _takes(section, final)
        if takes is None:
            continue
        for key in [k for k in raw if k != "name" and k not in takes]:
            dotted = f"{section}.{key}"
            origin = origins.get(dotted, src)
            writer = written_for.get(origin, {}).get(section, final)
            if writer == final:
                continue
            writer_takes = _takes(section, writer)
            if writer_takes is not None and key not in writer_takes:
                continue
            named_in = _origin(origins, f"{section}.name", src)
            notes.append(f"{origin}: {dotted} = {raw[key]!r}: a parameter of {section} {writer!r}, not of "
                         f"{final!r} (the {section}.name of {named_in}): left out")
            del raw[key]
            for stale in [k for k in origins if k == dotted or k.startswith(dotted + ".")]:
                del origins[stale]
    return notes


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str], origins: dict[str, str]) -> list[Problem]:
    problems = []
    for item in overrides:
        if "=" not in item:
            problems.append(Problem(OVERRIDE, item, item, "KEY=VALUE, e.g. masker.name=random"))
            continue
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        parts = dotted.split(".")
        node, blocked = data, ""
        for depth, part in enumerate(parts[:-1]):
            if part not in node:  # a table this override creates (e.g. an unknown section): its own
                origins[".".join(parts[: depth + 1])] = OVERRIDE
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # e.g. seed.x=1: seed is a number, not a table
                blocked = ".".join(parts[: depth + 1])
                break
        if blocked:
            problems.append(Problem(OVERRIDE, dotted, item, f"a field of a table ({blocked} is one value)"))
            continue
        value = _parse_value(text.strip())
        node[parts[-1]] = value
        origins[dotted] = OVERRIDE
    return problems


def _origin(origins: dict[str, str], dotted: str, default: str) -> str:
    parts = dotted.split(".")
    while parts:
        key = ".".join(parts)
        if key in origins:
            return origins[key]
        parts.pop()
    return default


def _lookup(data: dict, loc: tuple) -> Any:
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return _MISSING
    return node


def _expected(err: dict) -> str:
    kind = err["type"]  # (an unknown key, "extra_forbidden", is worded by _pydantic_problems)
    if kind == "missing":
        return "a value (required)"
    msg = err["msg"]
    for prefix in ("Input should be ", "Value should be ", "Value error, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def _fields_at(loc: tuple) -> list[str] | None:
    """The keys a plain recipe table at ``loc`` takes (``()``: the top level), or None."""
    model: Any = RecipeModel
    for part in loc:
        field_info = model.model_fields.get(part) if isinstance(part, str) else None
        model = field_info.annotation if field_info is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or model is ComponentSection:
            return None
    return list(model.model_fields)


def _pydantic_problems(exc: ValidationError, data: dict, origins: dict[str, str], prefix: tuple,
                       default_file: str, allowed: list[str] | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(prefix) + tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc)
        expected = _expected(err)
        keys = allowed if allowed is not None else _fields_at(loc[:-1]) if not prefix else None
        unknown = err["type"] == "extra_forbidden"
        if unknown:
            expected = "no such key" if keys is None else (
                f"no such key{did_you_mean(str(loc[-1]), keys)}; allowed keys: {', '.join(keys) or '(none)'}")
        problems.append(Problem(_origin(origins, dotted, default_file), dotted, _lookup(data, loc), expected,
                                unknown_key=unknown))
    return problems


@dataclass
class Recipe:
    """A validated recipe: typed settings plus the resolved data it came from."""

    model: RecipeModel
    data: dict
    source: str
    origins: dict[str, str] = field(default_factory=dict)
    merge_notes: list[str] = field(default_factory=list)  # parameters left out by a component switch

    def __getattr__(self, item: str) -> Any:
        return getattr(self.model, item)

    def component(self, section: str) -> Any:
        """The registered class/function named by a component section."""
        return registry.REGISTRIES[COMPONENT_SECTIONS[section]].get(getattr(self.model, section).name)

    def params(self, section: str) -> dict:
        """The component's validated parameters, defaults filled in."""
        spec = getattr(self.model, section)
        return params_model(self.component(section))(**spec.params).model_dump()

    def build(self, section: str, **extra: Any) -> Any:
        """Instantiate a component section: ``recipe.build("masker")``."""
        spec = getattr(self.model, section)
        validated = params_model(self.component(section))(**spec.params)
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        kwargs.update(extra)
        return self.component(section)(**kwargs)

    def task_params(self, name: str) -> tuple[float, dict]:
        """(loss weight, validated parameters) of a pre-training task."""
        weight, raw = split_task_table(self.model.tasks.get(name, {}))
        weight = float(weight)
        validated = params_model(registry.tasks.get(name))(**raw)
        return weight, {k: getattr(validated, k) for k in type(validated).model_fields}

    def notes(self) -> list[str]:
        """What is valid but has no effect, one line each: a parameter left out because its section
        names another component than the one it was written for, and a ``[tasks.X]`` table for a
        task that ``pretrain.tasks`` does not run (legitimate in a recipe that drops a task its
        base tunes, a typo's likely sign otherwise)."""
        unused = [f"{_origin(self.origins, f'tasks.{name}', self.source)}: tasks.{name}: set, but {name!r} "
                  f"is not in pretrain.tasks ({', '.join(self.model.pretrain.tasks)}): not used"
                  for name in self.model.tasks if name not in self.model.pretrain.tasks]
        return [*self.merge_notes, *unused]

    def build_task(self, name: str) -> Any:
        return registry.tasks.get(name)(**self.task_params(name)[1])

    def section_values(self, *sections: str) -> dict[str, Any]:
        """The named sections' resolved values: what shaped a stage's output (:meth:`section_hash`
        hashes them; a checkpoint stores them to refuse another recipe's resume).

        A component section counts with its defaults filled in, so a component whose default
        changes (e.g. the synthetic data generator's ``version``) gets new keys, but without the
        parameters its optional ``inert_params(params)`` names (a ``crop`` backbone's ``roi``
        settings: what they are changes nothing it computes); ``tasks`` is each
        task ``pretrain.tasks`` runs, its weight and its parameters with their defaults. The fields
        of ``RUNTIME_FIELDS`` (how a stage runs, not what it computes) do not count: restarting a
        killed run with more loader workers or another logging interval resumes it."""
        dump = self.model.model_dump(mode="json")
        payload: dict[str, Any] = {}
        for s in sections:
            if s in COMPONENT_SECTIONS and dump.get(s):
                params = self.params(s)
                inert = getattr(self.component(s), "inert_params", None)
                dropped = inert(params) if inert is not None else set()
                value = {"name": dump[s]["name"], **{k: v for k, v in params.items() if k not in dropped}}
            elif s == "tasks":
                value = {}
                for name in self.model.pretrain.tasks:
                    weight, params = self.task_params(name)
                    value[name] = {"weight": weight, **params}
            else:
                value = dump.get(s)
            runtime = RUNTIME_FIELDS.get(s, frozenset())
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in runtime}
            payload[s] = value
        return payload

    def section_hash(self, *sections: str, upstream: str = "") -> str:
        """A short key of :meth:`section_values` (and of ``upstream``, the folder name of the stage
        output they build on)."""
        payload: dict[str, Any] = self.section_values(*sections)
        if upstream:
            payload = {"upstream": upstream, "sections": payload}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(_drop_none(self.model.model_dump(mode="json")))

    def dump(self, path: Path) -> None:
        """Write the fully resolved recipe next to an output (atomically)."""
        write_text(path, f"# resolved from {self.source}\n" + self.to_toml())


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _section_problems(
    section: str, raw: dict, data: dict, origins: dict[str, str], src: str
) -> list[Problem]:
    """Check one component section: a known name, and parameters that fit its signature."""
    reg = registry.REGISTRIES[COMPONENT_SECTIONS[section]]
    where = _origin(origins, f"{section}.name", src)
    try:
        schema = params_model(reg.get(raw["name"]))
    except registry.UnknownComponent as exc:
        return [Problem(where, f"{section}.name", raw["name"],
                        f"one of: {', '.join(exc.choices)}{did_you_mean(raw['name'], exc.choices)}")]
    except registry.PluginError as exc:
        return [Problem(where, f"{section}.name", raw["name"], f"an importable component ({exc})")]
    try:
        schema(**{k: v for k, v in raw.items() if k != "name"})
    except ValidationError as exc:
        return _pydantic_problems(exc, data, origins, (section,), src, allowed=list(schema.model_fields))
    return []


def split_task_table(table: dict) -> tuple[Any, dict]:
    """A ``[tasks.X]`` table as (its loss ``weight``, default 1.0; the task's own parameters): the
    weight is the objective's, never passed to the task."""
    params = dict(table)
    return params.pop("weight", 1.0), params


def _task_problems(
    task_list: Any, tables: Any, data: dict, origins: dict[str, str], src: str
) -> list[Problem]:
    problems: list[Problem] = []
    task_names = registry.tasks.names()
    for i, name in enumerate(task_list if isinstance(task_list, list) else []):
        if name not in task_names:
            problems.append(Problem(_origin(origins, "pretrain.tasks", src), f"pretrain.tasks[{i}]", name,
                                    f"one of: {', '.join(task_names)}{did_you_mean(name, task_names)}"))
    for name, raw in (tables if isinstance(tables, dict) else {}).items():
        if name not in task_names:
            problems.append(Problem(_origin(origins, f"tasks.{name}", src), f"tasks.{name}", name,
                                    f"a task table named after one of: {', '.join(task_names)}"
                                    f"{did_you_mean(name, task_names)}"))
            continue
        if not isinstance(raw, dict):
            continue
        weight, raw = split_task_table(raw)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            problems.append(Problem(_origin(origins, f"tasks.{name}.weight", src), f"tasks.{name}.weight",
                                    weight, "a non-negative number"))
        schema = params_model(registry.tasks.get(name))
        try:
            schema(**raw)
        except ValidationError as exc:
            problems += _pydantic_problems(exc, data, origins, ("tasks", name), src,
                                           allowed=["weight", *schema.model_fields])
    return problems


def _all_component_problems(data: dict, origins: dict[str, str], src: str) -> list[Problem]:
    """Component and task checks on the raw data, so they run even when plain sections fail."""
    problems: list[Problem] = []
    for section in COMPONENT_SECTIONS:
        raw = _section_or_default(data, section)
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            problems += _section_problems(section, raw, data, origins, src)
    pretrain = data.get("pretrain", {})
    task_list = pretrain.get("tasks", PretrainSettings().tasks) if isinstance(pretrain, dict) else []
    problems += _task_problems(task_list, data.get("tasks", {}), data, origins, src)
    return problems


def _set_rank(origins: dict[str, str], src: str, dotted: str) -> int:
    """How recently a field was set: by ``--set`` (0), in the recipe itself (1), in what it
    extends (2), nowhere (3: its default)."""
    origin = origins.get(dotted)
    return 0 if origin == OVERRIDE else 1 if origin == src else 2 if origin else 3


def _blame(origins: dict[str, str], src: str, *fields: str) -> str:
    """Of fields that only together are wrong, the one set last (the first on a tie)."""
    return min(fields, key=lambda f: _set_rank(origins, src, f))


def _valid(settings: type, raw: Any) -> Any:
    """``raw`` as the validated ``settings`` model, or None when it does not validate (its own
    problems are reported by the schema)."""
    try:
        return settings(**raw) if isinstance(raw, dict) else settings()
    except (ValidationError, TypeError):
        return None


def resolve_component(data: dict, section: str) -> tuple[Any, str, dict, BaseModel] | None:
    """A component section of raw recipe ``data`` (the schema's default section when it is not
    given): ``(component, name, given parameters, validated parameters)``, or None when it names
    no component, an unknown one, or invalid parameters (the schema reports those on their own)."""
    raw = _section_or_default(data, section)
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        return None
    given = {k: v for k, v in raw.items() if k != "name"}
    try:
        component = registry.REGISTRIES[COMPONENT_SECTIONS[section]].get(raw["name"])
        return component, raw["name"], given, params_model(component)(**given)
    except Exception:
        return None


def _component_value(data: dict, section: str, key: str) -> Any:
    """A component section's validated parameter ``key`` (its default filled in), or None."""
    resolved = resolve_component(data, section)
    return None if resolved is None else getattr(resolved[3], key, None)


def _divisors(n: int, shown: int = 10) -> str:
    found = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(map(str, found[:shown])) + (", ..." if len(found) > shown else "")


def _joint_problems(data: dict, origins: dict[str, str], src: str) -> list[Problem]:
    """Rules that tie fields of several sections (or several fields) together, each reported at
    the field set last, naming the other and what would fit; only a valid section is compared."""
    problems = []
    pretrain = _valid(PretrainSettings, data.get("pretrain"))
    if pretrain is not None and pretrain.batch_size % pretrain.grad_accum:
        batch, accum = pretrain.batch_size, pretrain.grad_accum
        field = _blame(origins, src, "pretrain.grad_accum", "pretrain.batch_size")
        why = ("each optimiser step's global batch is cut into grad_accum equal micro-batches (on one "
               "rank; the trainer also divides by the ranks)")
        if field == "pretrain.grad_accum":
            expected = f"a divisor of pretrain.batch_size = {batch} ({_divisors(batch)}): {why}"
        else:
            near = " or ".join(str(m) for m in (batch - batch % accum, batch - batch % accum + accum) if m)
            expected = f"a multiple of pretrain.grad_accum = {accum} (e.g. {near}): {why}"
        given = batch if field == "pretrain.batch_size" else accum
        problems.append(Problem(_origin(origins, field, src), field, given, expected))
    settings = _valid(EvalSettings, data.get("eval"))
    text_len = _component_value(data, "model", "max_text_len")
    if settings is not None and "fc" in settings.tasks and isinstance(text_len, int) \
            and 3 <= text_len < settings.caption_tokens + 1:  # (below 3 the model itself refuses it)
        tokens = settings.caption_tokens
        field = _blame(origins, src, "eval.caption_tokens", "model.max_text_len")
        why = "fc captions are [CLS] + caption_tokens slots of the model's text positions"
        if field == "eval.caption_tokens":
            expected = (f"at most {text_len - 1} for model.max_text_len = {text_len} ({why}; or raise "
                        f"model.max_text_len to {tokens + 1}, or leave fc out of eval.tasks)")
        else:
            expected = (f"at least {tokens + 1} for eval.caption_tokens = {tokens} ({why}; or set "
                        f"eval.caption_tokens <= {text_len - 1}, or leave fc out of eval.tasks)")
        problems.append(Problem(_origin(origins, field, src), field,
                                tokens if field.startswith("eval") else text_len, expected))
    return problems


def load_recipe(path: str | Path, overrides: list[str] | None = None, build: bool = False) -> Recipe:
    """Load, merge, override and validate a recipe; raise :class:`RecipeError` with every problem.

    ``build``: also build each component (and task) once on the CPU, as `kaleido check` does, to
    catch what only a constructor knows (:mod:`kaleido.recipe.construct`); every section whose own
    fields validated is built, so its problems come in the same list as the schema's."""
    path = Path(path)
    data: dict = {}
    origins: dict[str, str] = {}
    written_for: dict[str, dict[str, Any]] = {}  # per layer: the component each section names
    for origin, layer in _load_chain(path):
        data = _merge(data, layer)
        origins.update(_flatten_origins(layer, origin))
        written_for[origin] = _component_names(data)
    written_for[OVERRIDE] = _component_names(data)
    problems = apply_overrides(data, list(overrides or []), origins)
    for section in COMPONENT_SECTIONS:  # a section naming no component merges into its default one
        if isinstance(data.get(section), dict) and "name" not in data[section] and _default_name(section):
            data[section] = {"name": _default_name(section), **data[section]}
    src = str(path.resolve())
    notes = _drop_foreign_keys(data, origins, written_for, src)
    model = None
    try:
        model = RecipeModel(**data)
    except ValidationError as exc:
        problems += _pydantic_problems(exc, data, origins, (), src)
    problems += _all_component_problems(data, origins, src)
    failed = [p.path for p in problems]
    problems += _joint_problems(data, origins, src)
    if build:
        from kaleido.recipe.construct import build_problems

        problems += build_problems(data, origins, src, failed)
    if problems or model is None:
        raise RecipeError(problems)
    return Recipe(model=model, data=data, source=src, origins=origins, merge_notes=notes)
