"""Registries: built-in lookup, unknown names, and plugins through real entry points."""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from kaleido import registry
from kaleido.maskers.random import RandomMasker


def _fake_distribution(root: Path, dist: str, module: str, source: str, entry_points: str) -> None:
    """A minimal installed distribution: a module and a .dist-info with entry_points.txt."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path, "kplug", "kplug",
        """
        class KplugHalfMasker:
            '''Masks half of everything (a test plugin).'''
            def __init__(self, rate: float = 0.5):
                self.rate = rate
        """,
        """
        [kaleido_maskers]
        kplug_half = kplug:KplugHalfMasker
        """,
    )
    _fake_distribution(
        tmp_path, "kbroken", "kbroken",
        "raise RuntimeError('this plugin is broken on purpose')\n",
        """
        [kaleido_maskers]
        kbroken_masker = kbroken:Masker
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # the registry warns once per broken plugin and remembers it: each test starts unwarned
    monkeypatch.setattr(registry.maskers, "_broken", {})
    importlib.invalidate_caches()
    yield tmp_path
    for name in ("kplug", "kbroken"):
        sys.modules.pop(name, None)


def test_builtin_lookup_and_unknown_name_lists_choices():
    assert {"random", "agm"} <= set(registry.maskers.names())
    with pytest.raises(registry.UnknownComponent) as info:
        registry.maskers.get("agmx")
    assert "agm" in info.value.choices and "random" in info.value.choices
    assert "agmx" in str(info.value) and str(info.value).endswith(" (did you mean 'agm'?)")


def test_every_kind_has_builtins():
    expected = {
        "patchers": {"kaleido", "fixed"},
        "sod": {"none", "background", "unet"},
        "backbones": {"mobilenet_v2", "resnet50"},
        "aligners": {"none", "sat"},
        "maskers": {"random", "agm"},
        "tasks": {"amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"},
        "models": {"kaleido"},
        "datasets": {"synthetic", "fashiongen", "jsonl"},
    }
    for kind, names in expected.items():
        assert names <= set(registry.REGISTRIES[kind].names()), kind


def test_plugin_registered_through_entry_point(plugin_path):
    assert "kplug_half" in registry.maskers.names()
    cls = registry.maskers.get("kplug_half")
    assert cls.__name__ == "KplugHalfMasker" and cls(rate=0.25).rate == 0.25


def test_broken_plugin_warns_and_only_its_lookup_fails(plugin_path):
    # listing names never imports plugins, so a broken one cannot break it
    assert "kbroken_masker" in registry.maskers.names()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = dict(registry.maskers.items())
    assert items["kbroken_masker"] is None and items["random"] is RandomMasker
    assert any("kbroken" in str(w.message) for w in caught)
    with pytest.raises(registry.PluginError, match="kbroken"):
        registry.maskers.get("kbroken_masker")
    assert registry.maskers.get("random") is RandomMasker  # the library still works


def test_plugin_usable_from_a_recipe(plugin_path, tmp_path):
    from kaleido.recipe import RecipeError, load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "synthetic"\n[masker]\nname = "kplug_half"\nrate = 0.3\n')
    loaded = load_recipe(recipe)
    assert loaded.build("masker").rate == 0.3
    recipe.write_text('[data]\nname = "synthetic"\n[masker]\nname = "kplug_half"\nrate = "high"\n')
    with pytest.raises(RecipeError, match=r"masker\.rate"):
        load_recipe(recipe)


def test_builtins_are_complete_for_a_second_thread_asking_during_the_import(monkeypatch):
    """Two threads loading recipes at once (bench/align_quality.py did): the one that asks while
    the other is still importing the built-in modules must wait for them, not see an empty list."""
    import threading
    import time

    kind = "test_slow_kind"
    reg = registry.Registry(kind)
    started = threading.Event()

    def slow_import(name: str):
        started.set()
        time.sleep(0.3)
        reg.register("slow")(object)

    monkeypatch.setitem(registry._BUILTIN_MODULES, kind, ("some.slow.module",))
    monkeypatch.setattr(registry.importlib, "import_module", slow_import)
    first = threading.Thread(target=reg.names)
    first.start()
    assert started.wait(5)
    assert reg.names() == ["slow"]  # asked while the first thread sleeps inside the import
    first.join()
