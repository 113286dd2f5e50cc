"""Each task's input transform and labels, checked against the store's own features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import FakeAlignments, FakeStore

from kaleido import registry
from kaleido.aligners.vocab import STOPWORDS
from kaleido.maskers.agm import AGMMasker
from kaleido.maskers.base import EVERYTHING, Hidden
from kaleido.maskers.random import RandomMasker
from kaleido.models.tokenizer import load_tokenizer
from kaleido.tasks.base import hidden_by
from kaleido.tasks.jps import PERMUTATIONS
from kaleido.training.dataset import PretrainDataset

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


def _dataset(tokenizer, names=ALL, store=None, masker=None, **params) -> PretrainDataset:
    tasks = [registry.tasks.get(n)(**params.get(n, {})) for n in names]
    return PretrainDataset(store or FakeStore(n=12), tokenizer, masker or RandomMasker(), tasks,
                           max_text_len=16)


def _original(store, row):
    return np.asarray(store.features(row), dtype=np.float32)


def test_jps_undoing_the_labelled_permutation_restores_the_order(tokenizer) -> None:
    ds = _dataset(tokenizer, ["jps"])
    seen = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            label = s.labels["jps"]["label"]
            seen.add(label)
            block = s.features[1:5]
            original = _original(ds.store, i)[1:5]
            perm = PERMUTATIONS[label]
            assert np.array_equal(block[np.argsort(perm)], original)
            assert np.array_equal(block, original[perm])
            if label != 0:  # not the identity: the shown order differs from the original
                assert not np.array_equal(block, original)
            assert np.array_equal(s.features[5:], _original(ds.store, i)[5:])
    assert len(seen) > 10


def test_cp_donor_is_another_product_at_the_labelled_position(tokenizer) -> None:
    store = FakeStore(n=12, poses=3)
    ds = _dataset(tokenizer, ["cp"], store=store)
    pids = store.product_ids()
    positions = set()
    for i in range(len(ds)):
        s = ds[i]
        label, donor = s.labels["cp"]["label"], s.labels["cp"]["donor"]
        positions.add(label)
        assert pids[donor] != pids[i]
        patch = 5 + label  # the 3x3 level starts after 1 + 4 patches
        assert np.array_equal(s.features[patch], _original(store, donor)[patch])
        assert not np.array_equal(s.features[patch], _original(store, i)[patch])
        keep = np.ones(len(s.features), bool)
        keep[patch] = False
        assert np.array_equal(s.features[keep], _original(store, i)[keep])
        # the camouflaged patch is the masker's 3x3 choice
        assert s.plan.patches[(s.plan.patches >= 5) & (s.plan.patches < 14)].tolist() == [patch]
    assert len(positions) > 3


def test_rr_labels_match_the_features_used(tokenizer) -> None:
    ds = _dataset(tokenizer, ["rr"])
    labels = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            r = s.labels["rr"]["label"]
            labels.append(r)
            rotated = ds.store.rotations(i)[r - 1].astype(np.float32)
            expected = _original(ds.store, i)[0] if r == 0 else rotated
            assert np.array_equal(s.features[0], expected)
            assert np.array_equal(s.features[1:], _original(ds.store, i)[1:])
    assert set(labels) == {0, 1, 2, 3}


def test_g2cm_greys_and_b2cm_blanks_exactly_the_masked_patches(tokenizer) -> None:
    ds = _dataset(tokenizer, ["g2cm", "b2cm"])
    for i in range(len(ds)):
        s = ds[i]
        original = _original(ds.store, i)
        grey_idx, blank_idx = s.labels["g2cm"]["index"], s.labels["b2cm"]["index"]
        planned = s.plan.patches
        assert grey_idx.tolist() == planned[(planned >= 14) & (planned < 30)].tolist()
        assert blank_idx.tolist() == planned[(planned >= 30) & (planned < 55)].tolist()
        assert len(grey_idx) == 2 and len(blank_idx) == 3
        assert np.all((blank_idx >= 30) & (blank_idx < 55))
        assert np.array_equal(s.features[grey_idx], ds.store.grey(i)[grey_idx - 14].astype(np.float32))
        assert np.all(s.features[blank_idx] == 0)
        untouched = np.setdiff1d(np.arange(55), np.concatenate([grey_idx, blank_idx]))
        assert np.array_equal(s.features[untouched], original[untouched])
        assert np.array_equal(s.labels["g2cm"]["target"], original[grey_idx])
        assert np.array_equal(s.labels["b2cm"]["target"], original[blank_idx])


def test_amlm_80_10_10_split(tokenizer) -> None:
    store = FakeStore(n=64, texts=["a long description of a black leather jacket with a zip and two pockets "
                                   "and a stand collar in soft lamb skin"])
    ds = _dataset(tokenizer, ["amlm"], store=store, masker=RandomMasker(token_rate=0.5, max_predictions=10))
    masked = random = kept = 0
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            pos, labels = s.labels["amlm"]["positions"], s.labels["amlm"]["labels"]
            assert np.array_equal(pos, s.plan.tokens + 1)
            shown = s.input_ids[pos]
            masked += int((shown == tokenizer.mask_token_id).sum())
            kept += int((shown == labels).sum())
            random += int(((shown != labels) & (shown != tokenizer.mask_token_id)).sum())
            untouched = np.setdiff1d(np.arange(1, s.n_tokens + 1), pos)
            assert tokenizer.mask_token_id not in s.input_ids[untouched]
    total = masked + random + kept
    assert total == 64 * 8 * 7  # 50% of the 14 text positions left by max_text_len=16
    assert abs(masked / total - 0.8) < 0.03
    assert abs(random / total - 0.1) < 0.03  # a random token equal to the original counts as kept
    assert abs(kept / total - 0.1) < 0.03


def test_amlm_random_tokens_are_never_special(tokenizer) -> None:
    # A random [PAD] would drop out of attention (the mask is ids != pad), a random [SEP] or [CLS]
    # would fake the sequence's structure: the 10% random tokens come from the rest of the vocabulary.
    amlm = {"mask_prob": 0.0, "random_prob": 1.0}
    ds = _dataset(tokenizer, ["amlm"], masker=RandomMasker(token_rate=0.5), amlm=amlm)
    special = set(tokenizer.all_special_ids)
    pool = set(ds.random_token_ids.tolist())
    assert not pool & special and len(pool) == len(tokenizer) - len(special)
    for i in range(len(ds)):
        s = ds[i]
        shown = s.input_ids[s.labels["amlm"]["positions"]]
        assert shown.size and set(shown.tolist()) <= pool


def test_itm_negatives_are_other_products_and_silence_reconstruction(tokenizer) -> None:
    store = FakeStore(n=24, poses=4)
    ds = _dataset(tokenizer, ALL, store=store)
    pids = store.product_ids()
    matched = 0
    n = 0
    for epoch in range(5):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            n += 1
            assert s.labels["itm"]["label"] == int(s.matched)
            assert i in (s.text_row, s.image_row)
            if s.matched:
                matched += 1
                assert np.all(s.labels["amlm"]["labels"] != -100)
                assert s.labels["g2cm"]["valid"].all() and s.labels["b2cm"]["valid"].all()
                continue
            assert pids[s.text_row] != pids[s.image_row]
            text = store.meta(s.text_row).text
            expected_ids = ds.tokenizer(text, add_special_tokens=False)["input_ids"][:14]
            assert s.n_tokens == len(expected_ids)
            # inputs are corrupted as for positives, but nothing is reconstructed across the mismatch
            assert s.plan.tokens.size > 0 and np.all(s.labels["amlm"]["labels"] == -100)
            assert not s.labels["g2cm"]["valid"].any() and not s.labels["b2cm"]["valid"].any()
            assert np.all(s.features[s.labels["b2cm"]["index"]] == 0)
    assert 0.35 < matched / n < 0.65


def test_image_tasks_of_a_negative_read_its_image_row(tokenizer) -> None:
    # A negative's text and image come from two rows: the rotated 1x1 feature must be the image
    # row's, and the camouflage donor another product than the image's (not than the text's).
    store = FakeStore(n=24, poses=3)
    ds = _dataset(tokenizer, ["itm", "rr", "cp"], store=store)
    pids = store.product_ids()
    negatives = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            negatives += not s.matched
            r, donor = s.labels["rr"]["label"], s.labels["cp"]["donor"]
            shown = store.rotations(s.image_row)[r - 1] if r else store.features(s.image_row)[0]
            assert np.array_equal(s.features[0], shown.astype(np.float32))
            assert pids[donor] != pids[s.image_row]
    assert negatives > 20


def test_itm_ratio_is_configurable(tokenizer) -> None:
    ds = _dataset(tokenizer, ["itm"], store=FakeStore(n=200), itm={"negative_ratio": 0.2})
    share = np.mean([ds[i].matched for i in range(len(ds))])
    assert 0.7 < share < 0.9


def test_a_task_without_its_level_fails_at_build(tokenizer) -> None:
    store = FakeStore(n=4, grids=(4,))
    with pytest.raises(ValueError, match=r"task 'rr' needs the 1x1 Kaleido level.*grids \(4,\)"):
        _dataset(tokenizer, ["amlm", "rr"], store=store)
    ds = _dataset(tokenizer, ["amlm", "itm", "g2cm"], store=store)  # the levels it has are fine
    assert ds[0].labels["g2cm"]["index"].size == 2


def test_agm_in_the_dataset_plans_what_its_tasks_hide(tokenizer) -> None:
    store = FakeStore(n=12)
    aligned = {i: [(0, 40), (1, 41), (2, 42)] for i in range(12)}  # 5x5 patches
    tasks = [registry.tasks.get("itm")(), registry.tasks.get("b2cm")()]
    ds = PretrainDataset(store, tokenizer, AGMMasker(), tasks, alignments=FakeAlignments(aligned),
                         max_text_len=16)
    assert ds.hidden == Hidden(tokens=False, grids=frozenset({5}))
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            # no AMLM: a token side would stay visible, so every pair blanks its patch
            assert s.plan.tokens.size == 0 and s.labels["b2cm"]["index"].tolist() == [40, 41, 42]
            assert np.all(s.features[[40, 41, 42]] == 0)


def test_a_negatives_plan_joins_the_text_rows_tokens_and_the_image_rows_patches(tokenizer) -> None:
    store = FakeStore(n=12)
    aligned = {i: [(i % 4, 30 + i), (4 + i % 3, 14 + i)] for i in range(12)}  # differ by row
    tasks = [registry.tasks.get(n)() for n in ("amlm", "itm", "g2cm", "b2cm")]
    calls: list[tuple[object, object]] = []

    class Spy(AGMMasker):
        def plan(self, n_tokens, levels, grids, alignments, rng, hidden=EVERYTHING):
            plan = super().plan(n_tokens, levels, grids, alignments, rng, hidden=hidden)
            calls.append((alignments, hidden, n_tokens, plan))
            return plan

    ds = PretrainDataset(store, tokenizer, Spy(), tasks, alignments=FakeAlignments(aligned), max_text_len=16)
    seen = {True: 0, False: 0}
    for i in range(len(ds)):
        calls.clear()
        s = ds[i]
        seen[s.matched] += 1
        assert all(hidden == Hidden(tokens=True, grids=frozenset({4, 5})) for _, hidden, _, _ in calls)
        if s.matched:
            assert [c[0] for c in calls] == [aligned[i]] and s.plan == calls[0][3]
            continue
        # each side planned as in a positive of its own row (its alignments, its text length)
        (text_pairs, _, text_len, text_plan), (image_pairs, _, image_len, image_plan) = calls
        assert text_pairs == aligned[s.text_row] and image_pairs == aligned[s.image_row]
        assert text_len == s.n_tokens
        image_ids = tokenizer(store.meta(s.image_row).text, add_special_tokens=False)["input_ids"]
        assert image_len == len(image_ids[:14])
        assert np.array_equal(s.plan.tokens, text_plan.tokens)
        assert np.array_equal(s.plan.patches, image_plan.patches)
    assert seen[True] and seen[False]


LONG_TEXTS = ["black leather biker jacket with a silver zip and two pockets for the city at night",
              "white cotton crew neck t-shirt with a small logo on the chest and short sleeves",
              "blue slim fit denim jeans with five pockets and a button fly in a dark wash",
              "red floral print midi dress with a v neck and a belt at the waist for summer"]


def _words(tokenizer, store, row: int) -> list[str]:
    ids = tokenizer(store.meta(row).text, add_special_tokens=False)["input_ids"]
    return tokenizer.convert_ids_to_tokens(ids)


def _content_alignments(store, tokenizer, per_row: int, seed: int = 0) -> dict[int, list[tuple[int, int]]]:
    """Per row, ``per_row`` content-word tokens aligned to random 3x3..5x5 patches (as SAT would)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(len(store)):
        words = _words(tokenizer, store, i)
        content = [t for t, w in enumerate(words) if w not in STOPWORDS]
        chosen = rng.choice(content, size=per_row, replace=False)
        out[i] = [(int(t), int(rng.integers(5, 55))) for t in chosen]
    return out


def test_itm_cannot_read_its_label_off_the_masking(tokenizer) -> None:
    # Negatives used to get uniform plans (no alignments) while positives masked aligned content
    # words and patches first: the [MASK] positions carried the label (here, positives vs
    # negatives: aligned-token share 0.59 vs 0.17, aligned-patch 0.25 vs 0.05, stopword 0.17 vs 0.34).
    store = FakeStore(n=48, texts=LONG_TEXTS)
    aligned = _content_alignments(store, tokenizer, per_row=3)
    ds = PretrainDataset(store, tokenizer, AGMMasker(), [registry.tasks.get(n)() for n in ALL],
                         alignments=FakeAlignments(aligned), max_text_len=32)
    words = {i: _words(tokenizer, store, i) for i in range(len(store))}
    count = {m: np.zeros(8) for m in (True, False)}  # samples, tokens, stopwords, aligned tokens,
    for epoch in range(8):                            # aligned patches, 3x3, 4x4, 5x5 patches
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            tokens, patches = s.plan.tokens.tolist(), s.plan.patches.tolist()
            aligned_tokens = {t for t, _ in aligned[s.text_row]}
            aligned_patches = {p for _, p in aligned[s.image_row]}
            count[s.matched] += [1, len(tokens), sum(words[s.text_row][t] in STOPWORDS for t in tokens),
                                 sum(t in aligned_tokens for t in tokens),
                                 sum(p in aligned_patches for p in patches),
                                 *(int((store.levels[patches] == lv).sum()) for lv in (3, 4, 5))]
    pos, neg = count[True], count[False]
    assert min(pos[0], neg[0]) > 150
    for k, tolerance in ((2, 0.06), (3, 0.1)):  # stopword and aligned-token shares of the masked tokens
        assert abs(pos[k] / pos[1] - neg[k] / neg[1]) < tolerance, (k, pos, neg)
    assert abs(pos[4] / pos[5:].sum() - neg[4] / neg[5:].sum()) < 0.08, (pos, neg)  # aligned-patch share
    assert abs(pos[1] / pos[0] - neg[1] / neg[0]) < 0.15  # tokens per sample
    assert np.array_equal(pos[5:] / pos[0], [1, 2, 3]) and np.array_equal(neg[5:] / neg[0], [1, 2, 3])


def test_agm_in_the_dataset_gives_the_text_side_when_no_task_hides_the_patch(tokenizer) -> None:
    # B+I~II (the Table-4 column): no task hides a 3x3..5x5 patch, so every aligned pair must
    # mask its token; a coin for the patch side used to leave half the pairs wholly visible.
    store = FakeStore(n=12, texts=LONG_TEXTS)
    aligned = {i: [(0, 10), (3, 20), (6, 40)] for i in range(12)}  # 3x3, 4x4, 5x5 patches
    tasks = [registry.tasks.get(n)() for n in ("amlm", "itm", "rr", "jps")]
    ds = PretrainDataset(store, tokenizer, AGMMasker(token_rate=0.3), tasks,
                         alignments=FakeAlignments(aligned), max_text_len=32)
    matched = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            assert s.plan.patches.size == 0
            if s.matched:
                matched += 1
                assert {1, 4, 7} <= set(s.labels["amlm"]["positions"].tolist())  # +1: after [CLS]
    assert matched > 10


def test_hidden_by_the_tasks() -> None:
    def tasks(*names):
        return [registry.tasks.get(n)() for n in names]

    assert hidden_by(tasks(*ALL)) == Hidden(tokens=True, grids=frozenset({3, 4, 5}), limits=((3, 1),))
    assert hidden_by(tasks("amlm", "itm", "rr", "jps")) == Hidden(tokens=True, grids=frozenset())
    assert hidden_by(tasks("itm", "g2cm")) == Hidden(tokens=False, grids=frozenset({4}))


def test_hidden_by_caps_a_grid_only_when_every_task_hiding_it_is_capped() -> None:
    # Two (plugin) tasks on one grid: the masker may plan what the more permissive one hides.
    from kaleido.tasks.base import Task

    def hiding(grid, cap):
        attrs = {"name": "t", "grid": grid, "hides_patches": True, "hides_at_most": cap}
        return type(f"T{grid}{cap}", (Task,), attrs)()

    cp = registry.tasks.get("cp")()
    assert hidden_by([cp, hiding(3, None)]).limits == ()
    assert hidden_by([cp, hiding(3, 2)]).limits == ((3, 2),)
    assert hidden_by([hiding(3, 2), cp, hiding(4, 1)]).limits == ((3, 2), (4, 1))


def test_a_task_reading_the_planned_patches_must_declare_that_it_hides_them() -> None:
    """The masker plans patches only for tasks that declare ``hides_patches``; a (plugin) task
    reading them undeclared would silently always get none: it is told so instead."""
    from kaleido.maskers.base import MaskPlan
    from kaleido.tasks.base import Task

    class Undeclared(Task):
        name, grid = "undeclared", 3

    task = Undeclared()
    task.bind((1, 2, 3))
    sample = type("S", (), {"plan": MaskPlan(np.array([], dtype=np.int64), np.array([6], dtype=np.int64))})()
    with pytest.raises(TypeError, match="does not declare hides_patches"):
        task.planned(sample)
    cp = registry.tasks.get("cp")()
    cp.bind((1, 2, 3))
    assert cp.planned(sample).tolist() == [6]


@pytest.mark.parametrize("name", ["rr", "jps", "cp"])
def test_image_tasks_move_features_and_keep_the_patch_positions(tokenizer, name) -> None:
    """RR, JPS and CP change what a patch shows, never where it is: the positions stay the row's."""
    ds = _dataset(tokenizer, [name])
    changed = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            assert np.array_equal(s.positions, np.asarray(ds.store.positions(i), dtype=np.float32))
            changed += not np.array_equal(s.features, _original(ds.store, i))
    assert changed > len(ds)  # the features did move


def test_itm_negatives_replace_the_text_or_the_image_about_equally(tokenizer) -> None:
    ds = _dataset(tokenizer, ["itm"], store=FakeStore(n=200))
    other_text = other_image = 0
    for i in range(len(ds)):
        s = ds[i]
        if s.matched:
            assert (s.text_row, s.image_row) == (i, i)
            continue
        assert (s.text_row == i) != (s.image_row == i)  # exactly one side replaced
        other_text += s.text_row != i
        other_image += s.image_row != i
    negatives = other_text + other_image
    assert negatives > 60
    assert 0.35 < other_text / negatives < 0.65 and 0.35 < other_image / negatives < 0.65


def _patch_labels(start: int, n: int) -> dict:
    return {"index": start + np.arange(n), "target": np.ones((n, 3)), "valid": np.ones(n, bool)}


def test_collate_pads_shorter_label_lists_as_unlabelled() -> None:
    # AGM may hide fewer patches (or tokens) than its quota when their partners are hidden: the
    # padded slots must be neither losses nor items (the trainer divides by loss_items).
    model = type("M", (), {"hidden_size": 4, "feature_dim": 3, "vocab_size": 10})()
    for name in ("g2cm", "b2cm"):
        task = registry.tasks.get(name)()
        task.bind((1, 2, 3, 4, 5))
        batch = task.collate([_patch_labels(task.start, n) for n in (2, 1, 0)])
        assert batch[f"{name}/valid"].tolist() == [[True, True], [True, False], [False, False]]
        assert int(task.build_head(model).loss_items(batch)) == 3
    amlm = registry.tasks.get("amlm")()
    batch = amlm.collate([{"positions": np.arange(1, n + 1), "labels": np.full(n, 7)} for n in (3, 1)])
    assert batch["amlm/labels"].tolist() == [[7, 7, 7], [7, -100, -100]]
    assert int(amlm.build_head(model).loss_items(batch)) == 4


def test_accuracy_counts_only_the_rows_weighted_1() -> None:
    # The dense-slot path (accelerators) passes padded slots with weight 0; an untrained model's
    # accuracy is 0 either way, so the dense-vs-sparse comparison cannot see this.
    from kaleido.tasks.base import accuracy

    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 1, -100])
    assert accuracy(logits, labels).item() == 0.5
    assert accuracy(logits, labels, torch.tensor([1.0, 1.0, 0.0, 0.0])).item() == 1.0
    assert accuracy(logits, labels, torch.tensor([0.0, 1.0, 1.0, 0.0])).item() == 0.5
    assert accuracy(logits, labels, torch.zeros(4)).item() == 0.0


def _head_batch(examples: int, text_len: int, **labels) -> dict:
    """What a head reads of a batch: the text block's width, and its task's labels."""
    return {"input_ids": torch.zeros(examples, text_len, dtype=torch.long), **labels}


# (first patch, patches) of each AKPM classifier's level in the 55-patch layout: 1x1, then 2x2, then 3x3
LEVEL_ROWS = {"rr": (0, 1), "jps": (1, 4), "cp": (5, 9)}


@pytest.mark.parametrize("name", list(LEVEL_ROWS))
def test_level_classifier_reads_its_levels_patch_rows(name) -> None:
    """The head's logits are its linear layer over the level's hidden states (after the text block):
    changing any other row, text or patch, changes nothing; changing one of the level's does."""
    torch.manual_seed(0)
    task = registry.tasks.get(name)()
    task.bind((1, 2, 3, 4, 5))
    start, count = LEVEL_ROWS[name]
    assert (task.start, task.count) == (start, count)
    model = type("M", (), {"hidden_size": 4})()
    head = task.build_head(model)
    assert (head.start, head.count) == (start, count)
    text_len = 6
    sequence = torch.randn(2, text_len + 55, 4)
    rows = slice(text_len + start, text_len + start + count)
    logits = head.logits(sequence, text_len)
    torch.testing.assert_close(logits, head.classifier(sequence[:, rows].flatten(1)))
    others = sequence.clone()
    keep = torch.ones(text_len + 55, dtype=torch.bool)
    keep[rows] = False
    others[:, keep] = torch.randn_like(others[:, keep])
    torch.testing.assert_close(head.logits(others, text_len), logits)
    mine = sequence.clone()
    mine[:, rows.start] += 1.0
    assert not torch.allclose(head.logits(mine, text_len), logits)
    labels = torch.tensor([0, 1])
    loss, _ = head(sequence, None, _head_batch(2, text_len, **{f"{name}/label": labels}), None)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


@pytest.mark.parametrize("name", ["g2cm", "b2cm"])
def test_feature_regression_loss_is_kl_of_target_to_prediction_over_the_masked_patches(name) -> None:
    """SPEC section 6: KL(softmax(target) || softmax(prediction)) per masked patch, averaged; the
    hidden states read are the masked patches' rows after the text block, no other."""
    torch.manual_seed(0)
    task = registry.tasks.get(name)()
    task.bind((1, 2, 3, 4, 5))
    head = task.build_head(type("M", (), {"hidden_size": 4, "feature_dim": 3})())
    text_len = 6
    patches = torch.tensor([[task.start + 1, task.start + 3]])  # one example, 2 masked patches
    target = torch.tensor([[[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]])
    sequence = torch.randn(1, text_len + 55, 4)
    labels = {"index": patches, "valid": torch.ones(1, 2, dtype=torch.bool), "target": target}
    batch = _head_batch(1, text_len, **{f"{name}/{k}": v for k, v in labels.items()})
    loss, _ = head(sequence, None, batch, None)
    prediction = head.decoder(sequence[0, text_len + patches[0]])
    t = target[0]
    by_hand = (t.softmax(-1) * (t.log_softmax(-1) - prediction.log_softmax(-1))).sum(-1).mean()
    reverse = (prediction.softmax(-1) * (prediction.log_softmax(-1) - t.log_softmax(-1))).sum(-1).mean()
    assert not torch.allclose(by_hand, reverse)  # the direction shows
    torch.testing.assert_close(loss, by_hand)
    others = sequence.clone()
    keep = torch.ones(text_len + 55, dtype=torch.bool)
    keep[text_len + patches[0]] = False
    others[:, keep] = torch.randn_like(others[:, keep])
    torch.testing.assert_close(head(others, None, batch, None)[0], loss)
