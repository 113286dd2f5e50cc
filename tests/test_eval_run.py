"""End to end: stores on disk, a tiny pre-trained objective, ``evaluate`` writes results.json/.md."""

import json
import logging

import numpy as np
import pytest

from kaleido.data.rows import RowMeta
from kaleido.evaluation.candidates import CandidateLists
from kaleido.evaluation.intervals import share_interval
from kaleido.features.store import FeatureStore, ShardWriter, shard_name
from kaleido.recipe.load import Recipe
from kaleido.recipe.schema import ComponentSection, EvalSettings, RecipeModel

GRIDS = (1, 2)
DIM = 8
CATS = {"tops": ["shirts", "sweaters"], "shoes": ["boots", "sneakers"]}
COLOURS = ["red", "blue", "black", "white"]


def _write_store(folder, n_products, seed):
    """Features carry the sub-category (a direction) and the colour (another), plus noise."""
    rng = np.random.default_rng(seed)
    subs = [(c, s) for c, ss in CATS.items() for s in ss]
    rows, metas = [], []
    for p in range(n_products):
        (cat, sub), colour = subs[p % len(subs)], COLOURS[(p // len(subs)) % len(COLOURS)]
        for pose in range(2):
            f = rng.normal(scale=0.3, size=(5, DIM))
            f[:, subs.index((cat, sub))] += 3.0
            f[:, 4 + COLOURS.index(colour)] += 3.0
            rows.append(f)
            metas.append(RowMeta(index=len(metas), text=f"{colour} {sub}", category=cat, subcategory=sub,
                                 product_id=f"{seed}-{p}", pose=str(pose)))
    n = len(rows)
    spec = {"grids": list(GRIDS), "patches": 5, "feature_dim": DIM, "grey": 1, "dtype": "float16"}
    writer = ShardWriter(folder / shard_name(0, 1), "k", spec, capacity=n)
    pos = np.tile(np.linspace(0, 1, 25, dtype=np.float32).reshape(5, 5), (n, 1, 1))
    writer.commit({"features": np.stack(rows), "rotations": np.zeros((n, 3, DIM)),
                   "grey": np.zeros((n, 1, DIM)), "positions": pos, "boxes": np.zeros((n, 5, 4)),
                   "source": np.arange(n),
                   "fallback": np.zeros(n)}, metas, n)
    writer.finish()
    return FeatureStore(folder)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    import torch

    from kaleido.models.kaleido import Kaleido
    from kaleido.tasks.amlm import AMLMTask
    from kaleido.tasks.itm import ITMTask
    from kaleido.training.objective import PretrainObjective

    root = tmp_path_factory.mktemp("eval")
    _write_store(root / "stores" / "train", 32, seed=1)
    _write_store(root / "stores" / "test", 16, seed=2)
    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                    max_text_len=12).build(DIM, GRIDS)
    objective = PretrainObjective(model, {"itm": ITMTask(), "amlm": AMLMTask()})
    objective.save(root / "pretrain" / "model")
    return root


def _recipe(root, **eval_settings):
    model = RecipeModel(name="tiny", output_dir=str(root / "out"), data=ComponentSection(name="synthetic"),
                        eval=EvalSettings(**eval_settings))
    return Recipe(model=model, data={}, source="test")


@pytest.mark.slow
def test_evaluate_writes_results_and_learns_categories(pretrained):
    from kaleido.evaluation.run import evaluate

    recipe = _recipe(pretrained, tasks=["itr", "tir", "cr", "sub"], queries=12, negatives=5, batch_size=16,
                     cls_epochs=15, finetune_lr=2e-3, finetune_itm=True, finetune_epochs=1)
    out = pretrained / "out" / "eval"
    res = evaluate(recipe, pretrained / "pretrain", out, progress=False, stores=pretrained / "stores")
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["cr"] == res["cr"] and (out / "results.md").is_file()
    lists = CandidateLists.load(out / "candidates.json")
    assert len(lists.lists) == 12 and all(len(c) == 6 for c in lists.lists)
    r = res["retrieval"]
    assert set(r["scorers"]) == {"pre-trained ITM", "fine-tuned ITM"}
    assert r["chance"]["itr"]["R@1"] == pytest.approx(100 / 6)
    for s in r["scorers"].values():
        assert s["pairs"] == 12 * 11 and s["rows_read"] <= 12 * 6
        assert all(0 <= s[t][k] <= 100 for t in ("itr", "tir") for k in ("R@1", "R@5", "R@10"))
        assert s["itr"]["R@10"] == 100.0  # 6 candidates: always within the top 10
    # the features carry the category: a fine-tuned head must beat the majority baseline clearly
    assert res["cr"]["acc"] >= 90.0 > res["cr"]["chance"]["acc"]
    assert res["sub"]["acc"] > res["sub"]["chance"]["acc"] + 20
    assert res["sum_cls"]["ours"] == pytest.approx(res["cr"]["acc"] + 100 * res["cr"]["macro_f1"]
                                                   + res["sub"]["acc"] + 100 * res["sub"]["macro_f1"])
    md = (out / "results.md").read_text()
    assert "| CR ACC |" in md and "paper: Kaleido-BERT" in md


def test_lists_shorter_than_asked_are_said_in_the_results(pretrained, caplog):
    """16 test products cannot give 1 + 30 candidates: the lists hold 16, chance follows them, and
    the results say so (they did only by a mean list size in results.md)."""
    from kaleido.evaluation.run import evaluate

    with caplog.at_level("WARNING", logger="kaleido.evaluation.run"):
        res = evaluate(_recipe(pretrained, tasks=["itr"], queries=4, negatives=30, batch_size=64),
                       pretrained / "pretrain", pretrained / "out" / "short", progress=False,
                       stores=pretrained / "stores")
    assert res["retrieval"]["mean_list_size"] == 16 and res["retrieval"]["chance"]["itr"]["R@1"] == 100 / 16
    for scorer in res["retrieval"]["scorers"].values():  # each R@K within its interval over the 4 queries
        for t in ("itr", "tir"):
            for k, interval in scorer[f"{t}_ci"].items():
                assert interval == share_interval(round(scorer[t][k] * 4 / 100), 4)
    note = ("retrieval: 4 of 4 lists are shorter than the 31 candidates asked for (mean 16.0): the test "
            "split has only 16 products; chance is computed from the real sizes")
    assert res["notes"] == [note] and [r.getMessage() for r in caplog.records] == [note]
    assert note in (pretrained / "out" / "short" / "results.md").read_text()


@pytest.mark.slow
def test_separate_recognition_fine_tunes_one_encoder_copy_per_task(pretrained):
    """The paper's two tasks: with joint_recognition off, CR is exactly a CR-only run (SUB's loss
    never touches its encoder); jointly, CR and SUB share one fine-tuning and so differ from it."""
    from kaleido.evaluation.run import evaluate

    base = dict(batch_size=16, cls_epochs=1, finetune_lr=2e-3)

    def run(name, **settings):
        return evaluate(_recipe(pretrained, **base, **settings), pretrained / "pretrain",
                        pretrained / "out" / name, progress=False, stores=pretrained / "stores")

    alone = run("cr-alone", tasks=["cr"])
    separate = run("separate", tasks=["cr", "sub"], joint_recognition=False)
    joint = run("joint", tasks=["cr", "sub"])
    assert separate["cr"]["finetune"]["loss_last"] == alone["cr"]["finetune"]["loss_last"]
    assert separate["cr"]["finetune"]["jointly_with"] == [] == separate["sub"]["finetune"]["jointly_with"]
    assert separate["sub"]["finetune"]["loss_last"] != separate["cr"]["finetune"]["loss_last"]
    assert joint["cr"]["finetune"] == {**joint["sub"]["finetune"], "jointly_with": ["sub"]}
    assert joint["cr"]["finetune"]["loss_last"] != alone["cr"]["finetune"]["loss_last"]
    assert "sum_cls" in separate and "sum_cls" not in alone


@pytest.mark.slow
def test_evaluate_captioning_learns_the_colour_words(pretrained):
    from kaleido.evaluation.run import evaluate

    recipe = _recipe(pretrained, tasks=["fc"], batch_size=16, caption_epochs=30, finetune_lr=5e-3,
                     caption_tokens=4, caption_samples=16)
    res = evaluate(recipe, pretrained / "pretrain", pretrained / "out" / "fc", progress=False,
                   stores=pretrained / "stores")
    fc = res["fc"]
    assert fc["samples"] == 16 and set(fc["ours"]) == {"BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "sum_cap"}
    # generated from the patches alone, the captions must beat one constant caption for all images
    assert fc["ours"]["sum_cap"] > fc["baseline"]["sum_cap"]


@pytest.mark.slow
def test_probe_then_fine_tune_on_the_balanced_mean_learns_categories_in_one_epoch(pretrained):
    from kaleido.evaluation.run import evaluate

    settings = dict(tasks=["itr", "tir", "cr", "sub"], queries=8, negatives=5, batch_size=16, cls_epochs=1,
                    finetune_lr=1e-4, head_lr=1e-2, pooling="mean", probe_steps=200, finetune_itm=True,
                    finetune_epochs=1, itm_hard_negatives=0.5, task_lr={"itm": 5e-4},
                    task_head_lr={"itm": 1e-3})
    res = evaluate(_recipe(pretrained, **settings), pretrained / "pretrain", pretrained / "out" / "probe",
                   progress=False, stores=pretrained / "stores")
    assert res["info"]["pooling"] == "mean" and res["info"]["head_lr"] == {"itm": 1e-3, "cls": 1e-2}
    assert res["info"]["finetune_lr"] == {"itm": 5e-4, "cls": 1e-4, "fc": 1e-4}
    ft = res["cr"]["finetune"]
    assert ft["steps"] == 4 and ft["probe_steps"] == 200 and ft["probe_loss_last"] < ft["probe_loss_first"]
    assert res["cr"]["acc"] >= 90.0 and res["sub"]["acc"] >= 90.0
    assert res["retrieval"]["itm_finetune"]["probe_steps"] == 200
    assert set(res["retrieval"]["scorers"]) == {"pre-trained ITM", "fine-tuned ITM"}


def test_the_pretrained_cls_itm_head_trains_with_the_encoder_and_is_not_probed(pretrained, caplog):
    from kaleido.evaluation.itm_finetune import finetune_itm
    from kaleido.features.store import FeatureStore
    from kaleido.training.dataset import encode_pairs
    from kaleido.training.objective import PretrainObjective

    objective = PretrainObjective.load(pretrained / "pretrain" / "model")
    store = FeatureStore(pretrained / "stores" / "train")
    meta = store.meta(np.arange(len(store)))
    tok = objective.model.tokenizer

    def encode(st, t, i):
        return encode_pairs(st, tok, t, i, objective.model.max_text_len)

    rows = np.arange(len(store))
    pids, subs = [m.product_id for m in meta], [m.subcategory for m in meta]
    args = (objective, store, encode, rows, pids, subs, 32, 0.5, 1e-4, 0)
    with caplog.at_level(logging.INFO, logger="kaleido.evaluation.itm_finetune"):
        _, cls = finetune_itm(*args, head_lr=1e-2, probe_steps=20, pooling="cls")
    assert any("head_lr and probe_steps" in r.getMessage() for r in caplog.records)  # said, not silent
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kaleido.evaluation.itm_finetune"):
        _, mean = finetune_itm(*args, head_lr=1e-2, probe_steps=20, pooling="mean")
    assert not any("head_lr and probe_steps" in r.getMessage() for r in caplog.records)
    assert "probe_steps" not in cls and cls["steps"] == 1
    assert mean["probe_steps"] == 20 and mean["probe_loss_last"] < mean["probe_loss_first"]


def test_evaluation_runs_the_model_packed_when_the_recipe_says_so(pretrained, monkeypatch):
    """``[model] packed`` is how to run a model, not part of its folder: the evaluation applies it,
    and the scores are the padded run's (same weights, eval mode)."""
    import torch

    import kaleido.evaluation.scoring as scoring
    import kaleido.models.kaleido as kaleido_model
    from kaleido.evaluation.run import evaluate

    calls = []
    real = kaleido_model.packing
    monkeypatch.setattr(kaleido_model, "packing", lambda mask: calls.append(mask.shape) or real(mask))
    raw = []  # each run's match scores, per list: (ITR's, TIR's)
    real_scores = scoring.score_lists

    def recording(*args, **kwargs):
        itr, tir, stats = real_scores(*args, **kwargs)
        raw.append((itr, tir))
        return itr, tir, stats

    monkeypatch.setattr(scoring, "score_lists", recording)
    settings = dict(tasks=["itr", "tir"], queries=6, negatives=5, batch_size=16, finetune_itm=False)
    scores = []
    for packed in (False, True):
        recipe = _recipe(pretrained, **settings)
        recipe.model.model = ComponentSection(name="kaleido", packed=packed)
        before = len(calls)
        res = evaluate(recipe, pretrained / "pretrain", pretrained / "out" / f"eval-{packed}", progress=False,
                       stores=pretrained / "stores")
        assert (len(calls) > before) == packed
        scores.append(res["retrieval"]["scorers"]["pre-trained ITM"])
    assert scores[0]["itr"] == scores[1]["itr"] and scores[0]["tir"] == scores[1]["tir"]
    (padded_itr, padded_tir), (packed_itr, packed_tir) = raw  # one scorer (no fine-tuning) per run
    assert len(padded_itr) == len(packed_itr) == 6
    for a, b in zip([*padded_itr, *padded_tir], [*packed_itr, *packed_tir], strict=True):
        torch.testing.assert_close(torch.from_numpy(b), torch.from_numpy(a), rtol=1e-5, atol=1e-5)


def test_results_report_the_lr_the_cls_itm_head_trained_at(pretrained, monkeypatch):
    """On ``[CLS]`` the pre-trained ITM head trains with the encoder at its lr: results.json says
    that lr, not the fresh-head ``head_lr`` / ``task_head_lr`` it did not use (CR / SUB's do); the
    optimiser the fine-tuning builds has its groups at that lr."""
    import torch

    from kaleido.evaluation.run import evaluate

    made = []

    class Recording(torch.optim.AdamW):  # records each group's lr before any scheduler changes it
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            made.append([(g.get("name"), g["lr"], [tuple(p.shape) for p in g["params"]])
                         for g in self.param_groups])

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    settings = dict(tasks=["itr", "tir"], queries=4, negatives=3, batch_size=32, finetune_itm=True,
                    finetune_epochs=0.5, pooling="cls", finetune_lr=1e-4, task_lr={"itm": 5e-4},
                    head_lr=1e-2, task_head_lr={"itm": 1e-3})
    res = evaluate(_recipe(pretrained, **settings), pretrained / "pretrain", pretrained / "out" / "cls-lr",
                   progress=False, stores=pretrained / "stores")
    assert res["info"]["itm_pooling"] == "cls"
    assert res["info"]["head_lr"] == {"itm": 5e-4, "cls": 1e-2}
    (groups,) = made  # one fine-tuning (ITM's), no probe
    assert [(name, lr) for name, lr, _ in groups] == [("encoder", 5e-4), ("head", 5e-4)]
    assert groups[1][2] == [(2, 32), (2,)]  # the ITM classifier over the 32-d [CLS]


def test_retrieval_ranks_the_test_lists_by_the_scorer_each_direction_its_own(pretrained, monkeypatch):
    """An oracle that knows the test split's products (from a pair's text and image features, as
    the batch carries them) ranks every positive first; its reverse ranks them last; and a scorer
    that favours some texts puts each direction's R@1 where a hand count over the lists does."""
    import torch

    from kaleido.evaluation.run import evaluate
    from kaleido.training.dataset import encode_pairs
    from kaleido.training.objective import PretrainObjective

    test = FeatureStore(pretrained / "stores" / "test")
    tok = PretrainObjective.load(pretrained / "pretrain" / "model").model.tokenizer
    pid = [m.product_id for m in test.meta(np.arange(len(test)))]
    text_of, image_of = {}, {}

    def words(ids):
        return tuple(int(t) for t in ids if t != tok.pad_token_id)

    for r in range(len(test)):
        b = encode_pairs(test, tok, [r], [r], 12)
        text_of[words(b["input_ids"][0])] = pid[r]
        image_of[b["features"][0].numpy().tobytes()] = pid[r]
    favoured = {p for p in pid if int(p.split("-")[1]) % 2 == 0}  # the texts of even products

    def score(text_pid, image_pid, mode):
        same = text_pid is not None and text_pid == image_pid
        if mode == "oracle":
            return 1.0 if same else 0.0
        if mode == "reversed":
            return 0.0 if same else 1.0
        return 1.0 if same else (2.0 if text_pid in favoured else 0.0)  # "biased"

    def oracle(mode):
        def match(self, batch):
            texts = [text_of.get(words(ids)) for ids in batch["input_ids"]]
            images = [image_of.get(f.numpy().tobytes()) for f in batch["features"]]
            return torch.tensor([score(t, i, mode) for t, i in zip(texts, images, strict=True)])
        return match

    settings = dict(tasks=["itr", "tir"], queries=12, negatives=5, batch_size=16, finetune_itm=False)
    results = {}
    for mode in ("oracle", "reversed", "biased"):
        monkeypatch.setattr(PretrainObjective, "match_scores", oracle(mode))
        res = evaluate(_recipe(pretrained, **settings), pretrained / "pretrain", pretrained / "out" / mode,
                       progress=False, stores=pretrained / "stores")
        results[mode] = res["retrieval"]["scorers"]["pre-trained ITM"]
    assert results["oracle"]["itr"]["R@1"] == results["oracle"]["tir"]["R@1"] == 100.0
    assert results["reversed"]["itr"]["R@1"] == results["reversed"]["tir"]["R@1"] == 0.0
    # by hand: ITR ranks the list's texts against the query's image, TIR its images against the query's text
    lists = CandidateLists.load(pretrained / "out" / "biased" / "candidates.json").lists
    itr = 100 * np.mean([all(score(pid[n], pid[q], "biased") < score(pid[q], pid[q], "biased") for n in negs)
                         for q, *negs in lists])
    tir = 100 * np.mean([all(score(pid[q], pid[n], "biased") < score(pid[q], pid[q], "biased") for n in negs)
                         for q, *negs in lists])
    assert itr != tir  # the directions differ, so swapping them shows
    assert results["biased"]["itr"]["R@1"] == pytest.approx(itr)
    assert results["biased"]["tir"]["R@1"] == pytest.approx(tir)


def test_itm_negatives_unlike_the_lists_are_said(pretrained, caplog):
    """Each test sub-category holds 4 products: 3 of a query's 5 negatives share its sub-category,
    2 fall back to its category. ITM fine-tuning on only same-sub-category negatives (the default
    1.0) trains on other pairs than the lists rank: the results say so (and the log, at INFO: advice
    on a setting, not a fault), with both shares; a share near the lists' says nothing."""
    from kaleido.evaluation.run import evaluate

    def run(hard, name):
        caplog.clear()
        with caplog.at_level("INFO", logger="kaleido.evaluation.run"):
            return evaluate(_recipe(pretrained, tasks=["itr"], queries=4, negatives=5, batch_size=64,
                                    finetune_itm=True, finetune_epochs=0.1, itm_hard_negatives=hard),
                            pretrained / "pretrain", pretrained / "out" / name, progress=False,
                            stores=pretrained / "stores")

    res = run(1.0, "hard")
    assert res["retrieval"]["sampling"]["same_subcategory_share"] == pytest.approx(0.6)
    note = ("retrieval: 60% of the lists' negatives share the query's sub-category, but ITM fine-tuning "
            "asks for 100% of its negatives from the same sub-category (eval.itm_hard_negatives = 1); "
            "a share near the lists' trains as they test (docs/EVALUATION.md)")
    assert res["notes"] == [note] and note in [r.getMessage() for r in caplog.records]
    assert note in (pretrained / "out" / "hard" / "results.md").read_text()
    assert run(0.5, "near")["notes"] == []
    assert not any("sub-category" in r.getMessage() for r in caplog.records)
