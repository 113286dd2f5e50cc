"""Every command's help text reaches the reader: rich markup eats an unescaped ``[word]``."""

from __future__ import annotations

import re

import typer
from typer.testing import CliRunner

from kaleido.cli import app

RICH_TAG = re.compile(r"(\\*)\[([a-z#/@][^[]*?)]")  # rich's markup tag; an odd number of \ escapes it


def _commands(cmd, path):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def test_no_help_string_holds_an_unescaped_rich_tag():
    eaten = []
    for path, cmd in _commands(typer.main.get_command(app), ["kaleido"]):
        texts = [cmd.help or "", cmd.short_help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        eaten += [f"{' '.join(path)}: {m.group(0)}" for text in texts for m in RICH_TAG.finditer(text)
                  if len(m.group(1)) % 2 == 0]
    assert eaten == []


def test_eval_help_shows_the_eval_section_name():
    """It read "keyed on its name and , as kaleido run names it"."""
    result = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "keyed on its name and [eval], as kaleido run names it" in " ".join(result.output.split())


def test_show_word_help_says_only_generated_words_have_a_heat_map():
    """`--word` read "add that word's attention heat map": a word of the description got an error."""
    result = CliRunner().invoke(app, ["show", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "only words the captioner generated for this image have one" in " ".join(result.output.split())


def test_every_command_help_is_plain_text_reflowed_for_the_terminal():
    """Typer printed a docstring's later paragraphs with their source line breaks (a line cut at
    "RANK / WORLD_SIZE", then "in the environment") and RST's ``double backticks`` as they are."""
    for path, cmd in _commands(typer.main.get_command(app), ["kaleido"]):
        for paragraph in (cmd.help or "").split("\n\n"):
            assert "``" not in paragraph, path
            assert all(line.startswith("- ") for line in paragraph.splitlines()[1:]), (path, paragraph)
    result = CliRunner().invoke(app, ["prepare", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "``" not in result.output
    assert ("write their own shard: run it under `torchrun --nproc-per-node N -m kaleido.cli prepare "
            "RECIPE`, or set RANK and WORLD_SIZE in the environment.") in " ".join(result.output.split())


def test_no_repeatable_option_shows_a_python_type_as_its_metavar():
    """`kaleido run --help` showed `--force <list[str]>`: the reader learns nothing of what to give."""
    shown = []
    for path, _cmd in _commands(typer.main.get_command(app), ["kaleido"]):
        result = CliRunner().invoke(app, [*path[1:], "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        shown += [f"{' '.join(path)}: {m}" for m in re.findall(r"<list\[\w+\]>", result.output)]
    assert shown == []
