"""ITM fine-tuning's negatives: same sub-category when asked, never the same product; seeded."""

import numpy as np
import pytest

from kaleido.evaluation.itm_finetune import negative_sampler

# 3 sub-categories; product "c1" is alone in its sub-category "caps" (2 poses)
PIDS = ["a1", "a1", "a2", "a3", "a3", "b1", "b2", "b2", "c1", "c1"]
SUBS = ["boots", "boots", "boots", "boots", "boots", "bags", "bags", "bags", "caps", "caps"]


def _draws(hard, n=400, seed=0):
    draw = negative_sampler(PIDS, SUBS, hard)
    rng = np.random.default_rng(seed)
    return [(row, draw(row, rng)) for row in range(len(PIDS)) for _ in range(n // len(PIDS))]


def test_hard_negatives_stay_in_the_sub_category_and_never_the_same_product():
    pairs = _draws(1.0)
    assert all(PIDS[neg] != PIDS[row] for row, neg in pairs)
    assert all(SUBS[neg] == SUBS[row] for row, neg in pairs if SUBS[row] != "caps")
    # every other product of the sub-category is reachable (not one fixed pick)
    assert {PIDS[neg] for row, neg in pairs if row == 0} == {"a2", "a3"}
    # a product alone in its sub-category falls back to any other product
    assert {SUBS[neg] for row, neg in pairs if SUBS[row] == "caps"} <= {"boots", "bags"}


def test_easy_negatives_come_from_anywhere_but_the_product():
    pairs = _draws(0.0)
    assert all(PIDS[neg] != PIDS[row] for row, neg in pairs)
    assert {SUBS[neg] for row, neg in pairs if SUBS[row] == "boots"} == {"boots", "bags", "caps"}


def test_a_mixed_share_draws_about_that_share_from_the_sub_category():
    pairs = [(r, n) for r, n in _draws(0.5, n=4000) if SUBS[r] == "boots"]
    same = np.mean([SUBS[n] == "boots" for _, n in pairs])
    # hard half: always boots; easy half: boots with prob (5 - own poses) / (10 - own poses) ~ 0.36
    assert 0.6 < same < 0.75


def test_the_same_seed_draws_the_same_negatives():
    assert _draws(0.5, seed=3) == _draws(0.5, seed=3) != _draws(0.5, seed=4)


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="hard negative share"):
        negative_sampler(PIDS, SUBS, 1.5)
    with pytest.raises(ValueError, match="at least two products"):
        negative_sampler(["p", "p"], ["s", "s"])


def _tiny_objective():
    import torch

    from kaleido.models.kaleido import Kaleido
    from kaleido.tasks.itm import ITMTask
    from kaleido.training.objective import PretrainObjective

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_text_len=8).build(3, (1, 2))
    return PretrainObjective(model, {"itm": ITMTask()}).eval()


def _batch():
    import torch

    ids = torch.tensor([[101, 7, 8, 102, 0, 0, 0, 0], [101, 9, 102, 0, 0, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "features": torch.randn(2, 5, 3),
            "positions": torch.rand(2, 5, 5)}


def test_cls_scorer_starts_as_the_pretrained_itm_and_leaves_it_untouched():
    import torch

    from kaleido.evaluation.itm_finetune import match_scorer

    objective, batch = _tiny_objective(), _batch()
    scorer = match_scorer(objective, "cls", seed=0).eval()
    with torch.inference_mode():
        torch.testing.assert_close(scorer.match_scores(batch), objective.match_scores(batch))
    # a copy: training the scorer cannot change the pre-trained objective
    assert scorer.model is not objective.model
    assert scorer.head.weight.data_ptr() != objective.heads["itm"].classifier.weight.data_ptr()


def test_mean_scorer_reads_the_masked_mean_with_a_fresh_head():
    import torch

    from kaleido.evaluation.itm_finetune import match_scorer
    from kaleido.evaluation.pooling import pool

    objective, batch = _tiny_objective(), _batch()
    scorer = match_scorer(objective, "mean", seed=0).eval()
    head = scorer.head
    assert float(head.bias.detach().abs().sum()) == 0.0 and float(head.weight.detach().std()) < 0.05
    with torch.inference_mode():
        logits = scorer.head(pool(scorer.model, batch, "mean"))
        expected = logits[:, 1] - logits[:, 0]
        torch.testing.assert_close(scorer.match_scores(batch), expected)
