"""The pre-training data path: determinism per (seed, epoch, index), workers, the recipe build."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from fakes import FakeStore

from kaleido import registry
from kaleido.maskers.agm import AGMMasker
from kaleido.models.tokenizer import load_tokenizer
from kaleido.training.dataset import PretrainDataset, encode_pairs

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def _dataset(tokenizer, store=None, seed=0) -> PretrainDataset:
    tasks = [registry.tasks.get(n)() for n in ALL]
    return PretrainDataset(store or FakeStore(n=16), tokenizer, AGMMasker(), tasks, seed=seed,
                           max_text_len=16)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_examples_depend_only_on_seed_epoch_and_index(tokenizer) -> None:
    ds = _dataset(tokenizer)
    forward = ds.collate([ds[i] for i in range(16)])
    backward = ds.collate([ds[i] for i in reversed(range(16))])
    reorder = torch.arange(15, -1, -1)
    assert torch.equal(forward["input_ids"], backward["input_ids"][reorder])
    assert torch.equal(forward["features"], backward["features"][reorder])
    assert _same(forward, ds.collate([ds[i] for i in range(16)]))
    ds.set_epoch(1)
    assert not torch.equal(forward["features"], ds.collate([ds[i] for i in range(16)])["features"])
    ds.set_epoch(0)
    assert _same(forward, ds.collate([ds[i] for i in range(16)]))
    other_seed = _dataset(tokenizer, seed=1)
    reseeded = other_seed.collate([other_seed[i] for i in range(16)])
    assert not torch.equal(forward["input_ids"], reseeded["input_ids"])


def test_batch_layout(tokenizer) -> None:
    ds = _dataset(tokenizer)
    batch = ds.collate([ds[i] for i in range(5)])
    width = int(batch["attention_mask"].sum(1).max())  # the text block ends with the longest text
    assert batch["input_ids"].shape == (5, width) and batch["input_ids"].dtype == torch.long
    assert width <= 16
    assert batch["features"].shape == (5, 55, 16) and batch["features"].dtype == torch.float32
    assert batch["positions"].shape == (5, 55, 5)
    assert batch["amlm/positions"].shape == batch["amlm/labels"].shape
    assert batch["g2cm/target"].shape == (5, 2, 16) and batch["b2cm/target"].shape == (5, 3, 16)
    assert torch.equal(batch["itm/label"].bool(), batch["matched"])
    for key in ("rr/label", "jps/label", "cp/label"):
        assert batch[key].shape == (5,)


def test_workers_give_the_same_batches(tokenizer) -> None:
    ds = _dataset(tokenizer)
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone[3].features, ds[3].features)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=ds.collate)
        return list(loader)

    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 4
    assert all(_same(a, b) for a, b in zip(single, multi, strict=True))


def test_encode_pairs_is_unmasked_and_untransformed(tokenizer) -> None:
    store = FakeStore(n=6)
    batch = encode_pairs(store, tokenizer, [0, 1, 2], [3, 1, 0], max_text_len=16)
    assert tokenizer.mask_token_id not in batch["input_ids"]
    for k, row in enumerate([3, 1, 0]):
        assert torch.equal(batch["features"][k], torch.from_numpy(store.features(row).astype(np.float32)))
    with pytest.raises(ValueError, match="as many text rows"):
        encode_pairs(store, tokenizer, [0, 1], [0], max_text_len=16)


def test_real_titles_and_products(tokenizer, myntra_dir) -> None:
    rows = [json.loads(line) for line in (myntra_dir / "pairs.jsonl").read_text().splitlines()[:40]]
    store = FakeStore(n=len(rows), texts=[r["text"] for r in rows],
                      product_ids=[str(r["product_id"]) for r in rows])
    ds = _dataset(tokenizer, store)
    for i in range(len(ds)):
        s = ds[i]
        ids = tokenizer(store.meta(s.text_row).text, add_special_tokens=False)["input_ids"][:14]
        assert s.n_tokens == len(ids) > 0
        if not s.matched:
            assert store.meta(s.text_row).product_id != store.meta(s.image_row).product_id


@pytest.mark.slow  # builds a BERT: transformers' import dominates
def test_build_pretraining_from_a_recipe(tokenizer) -> None:
    from kaleido.recipe.load import Recipe
    from kaleido.recipe.schema import ComponentSection, RecipeModel
    from kaleido.training.build import build_pretraining

    model = RecipeModel(data=ComponentSection(name="synthetic"), seed=5,
                        masker=ComponentSection(name="agm", token_rate=0.3),
                        model=ComponentSection(name="kaleido", init="scratch", hidden_size=32, num_layers=1,
                                               num_heads=2, intermediate_size=64, max_text_len=12),
                        tasks={"itm": {"weight": 2.0, "negative_ratio": 0.25}},
                        pretrain={"tasks": ["amlm", "itm", "b2cm"]})
    recipe = Recipe(model=model, data={}, source="test")
    objective, ds = build_pretraining(recipe, FakeStore(n=8))
    assert list(objective.heads) == ["amlm", "itm", "b2cm"]
    assert objective.weights == {"amlm": 1.0, "itm": 2.0, "b2cm": 1.0}
    assert objective.tasks["itm"].negative_ratio == 0.25 and ds.masker.token_rate == 0.3
    assert ds.seed == 5 and ds.max_text_len == 12 and objective.model.hidden_size == 32
    out = objective(ds.collate([ds[i] for i in range(4)]))
    assert set(out.losses) == {"amlm", "itm", "b2cm"} and torch.isfinite(out.loss)

    recipe.model.pretrain.tasks = ["amlm", "rr"]
    with pytest.raises(ValueError, match="task 'rr' needs the 1x1 Kaleido level"):
        build_pretraining(recipe, FakeStore(n=4, grids=(4,)))


def test_a_masker_plans_no_more_patches_than_the_tasks_hide(tokenizer) -> None:
    """CP camouflages one 3x3 patch: a masker quota of 2 there would leave the second planned patch
    visible (and AGM its aligned token too: neither side masked), so the plan is capped at one;
    G2CM greys every planned 4x4 patch, so its quota stands."""
    tasks = [registry.tasks.get(n)() for n in ("amlm", "cp", "g2cm")]
    masker = AGMMasker(patch_quotas={3: 2, 4: 3})
    ds = PretrainDataset(FakeStore(n=16), tokenizer, masker, tasks, seed=0, max_text_len=16)
    levels = ds.levels
    for i in range(16):
        sample = ds[i]
        assert len(sample.plan.patches_at(levels, 3)) == 1  # capped at CP's one
        assert len(sample.plan.patches_at(levels, 4)) == 3  # G2CM hides them all
        changed = np.flatnonzero(np.abs(sample.features - sample.original).sum(-1) > 0)
        assert set(changed.tolist()) <= set(sample.plan.patches.tolist())
    alone = masker.plan(10, levels, ds.grids, [], np.random.default_rng(0))  # used alone: nothing caps it
    assert len(alone.patches_at(levels, 3)) == 2


def test_a_batch_pads_its_text_to_its_longest_text_and_trains_the_same(tokenizer) -> None:
    """``collate`` pads each batch's text to its longest text, not ``max_text_len``: the text block
    is the fully padded one cut after its last attended column, every other field is the same, and
    the model's losses and gradients do not change (dropout off): the padding was masked out."""
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.objective import PretrainObjective

    store = FakeStore(n=8, texts=["red dress", "a black leather biker jacket with a silver zip"])
    tasks = {n: registry.tasks.get(n)() for n in ALL}
    longest = PretrainDataset(store, tokenizer, AGMMasker(), tasks, max_text_len=24)
    full = PretrainDataset(store, tokenizer, AGMMasker(), tasks, max_text_len=24, pad_text="max")
    cut = longest.collate([longest[i] for i in range(6)])
    padded = full.collate([full[i] for i in range(6)])
    width = int(padded["attention_mask"].sum(1).max())
    assert padded["input_ids"].shape[1] == 24 and cut["input_ids"].shape[1] == width < 24
    assert torch.equal(cut["input_ids"], padded["input_ids"][:, :width])
    assert not padded["attention_mask"][:, width:].any()
    assert all(torch.equal(cut[k], padded[k]) for k in padded if k not in ("input_ids", "attention_mask"))
    # one text only -> its own length; a fully padded batch of short texts is cut as far
    short = longest.collate([longest[0]])
    assert short["input_ids"].shape[1] == int(short["attention_mask"].sum())

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                    max_text_len=24, dropout=0.0).build(16, (1, 2, 3, 4, 5))
    objective = PretrainObjective(model, tasks).eval()

    def run(batch):
        objective.zero_grad(set_to_none=True)
        out = objective(batch)
        out.loss.backward()
        return out, {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}

    (a, grads_a), (b, grads_b) = run(cut), run(padded)
    for name in ALL:
        assert a.losses[name].item() == pytest.approx(b.losses[name].item(), rel=1e-5, abs=1e-6)
    for name, grad in grads_b.items():
        torch.testing.assert_close(grads_a[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="pad_text must be 'longest'"):
        PretrainDataset(store, tokenizer, AGMMasker(), tasks, pad_text="min")


def test_other_product_falls_back_to_an_exhaustive_draw_when_one_product_dominates(tokenizer) -> None:
    # 63 rows of one product and 1 of another: the 16 rejection draws from a row of the big
    # product mostly fail, and the fallback must still return the other product, never its own.
    store = FakeStore(n=64, product_ids=["big"] * 63 + ["small"])
    ds = _dataset(tokenizer, store=store)
    rng = np.random.default_rng(0)
    assert {ds.other_product(row, rng) for row in range(63) for _ in range(3)} == {63}
    assert all(ds.other_product(63, rng) < 63 for _ in range(50))
