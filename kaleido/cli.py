"""The `kaleido` command line (Typer + rich).

Each command group lives in its own module under ``kaleido/commands`` and adds itself to this
app through ``register(app)``; heavy imports (torch, h5py ...) happen inside the commands, so
``kaleido --help`` and ``kaleido check`` stay fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="kaleido",
    help="Kaleido-BERT: fashion vision-language pre-training, one TOML recipe at a time.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = (
    "kaleido.commands.recipes",  # components, check
    "kaleido.commands.data",  # data synth, data info
    "kaleido.commands.prepare",  # prepare, show, sod train
    "kaleido.commands.align",  # align
    "kaleido.commands.run",  # run, plot
    "kaleido.commands.evaluate",  # eval
    "kaleido.commands.ablate",  # ablate
)

for _module in COMMAND_MODULES:
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _exc:  # a command group not built yet in this checkout
        if _exc.name != _module:
            raise


def _help_from_docstrings(group: typer.Typer) -> None:
    """Each command's `--help` from its docstring, reflowed for the terminal (see ``help_text``)."""
    from kaleido.commands.common import help_text

    for info in group.registered_commands:
        if info.help is None and info.callback is not None:
            info.help = help_text(info.callback.__doc__)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _help_from_docstrings(sub.typer_instance)


_help_from_docstrings(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
