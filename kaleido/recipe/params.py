"""Derive a component's parameter schema from its signature, as confection/spaCy do.

A component is a class (or a factory function) whose keyword parameters carry type hints and
defaults. The recipe's keys for that component are validated against a pydantic model built
from that signature, so a plugin needs no schema of its own and unknown keys are rejected. A hint
may carry pydantic's constraints, ``rate: Annotated[float, Field(gt=0, le=1)] = 0.15``: a recipe
outside them is refused at its field, with the bound in the message.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model


def _signature_target(component: Any) -> Any:
    return component.__init__ if inspect.isclass(component) else component


@cache
def params_model(component: Any) -> type[BaseModel]:
    """A pydantic model with one field per keyword parameter of ``component``."""
    target = _signature_target(component)
    try:
        hints = typing.get_type_hints(target, include_extras=True)  # keeps Annotated constraints
    except Exception:  # unresolvable annotations: fall back to the raw ones
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(target).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(name, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, Mapping) and not isinstance(default, dict):
            default = dict(default)  # read-only mappings (MappingProxyType) cannot be copied by pydantic
        fields[name] = (annotation, default)
    model_name = f"{getattr(component, '__name__', 'Component')}Params"
    return create_model(model_name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
                        **fields)


def describe(component: Any) -> list[tuple[str, str, str]]:
    """(name, type, default) for each parameter: what `kaleido components` prints."""
    rows = []
    for name, field in params_model(component).model_fields.items():
        annotation = field.annotation
        type_name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        default = "required" if field.is_required() else repr(field.default)
        rows.append((name, type_name, default))
    return rows


def summary(component: Any) -> str:
    """The first line of the component's docstring."""
    doc = inspect.getdoc(component) or ""
    return doc.splitlines()[0] if doc else ""
