"""KaleidoModel: the single stream, its masks, its folder; the objective's heads and an overfit run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fakes import FakeStore
from torch.nn import functional as F

from kaleido import registry
from kaleido.maskers.random import RandomMasker
from kaleido.models.kaleido import Kaleido, KaleidoModel
from kaleido.training.dataset import PretrainDataset, encode_pairs
from kaleido.training.objective import PretrainObjective

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]
TINY = dict(init="scratch", hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_text_len=16)


def _tiny(dropout: float = 0.0, **kw) -> KaleidoModel:
    torch.manual_seed(0)
    return Kaleido(**{**TINY, "dropout": dropout, **kw}).build(16, (1, 2, 3, 4, 5))


def _objective(names=ALL) -> tuple[PretrainObjective, PretrainDataset]:
    model = _tiny()
    tasks = {n: registry.tasks.get(n)() for n in names}
    ds = PretrainDataset(FakeStore(n=8), model.tokenizer, RandomMasker(), tasks, max_text_len=16)
    return PretrainObjective(model, tasks), ds


def test_registered_factory_and_shapes() -> None:
    assert registry.models.get("kaleido") is Kaleido
    model = _tiny().eval()
    store = FakeStore(n=4)
    batch = encode_pairs(store, model.tokenizer, [0, 1, 2], [0, 3, 2], max_text_len=16)
    assert batch["input_ids"].shape == (3, 16) and batch["features"].shape == (3, 55, 16)
    assert torch.equal(batch["features"][1], torch.from_numpy(store.features(3).astype(np.float32)))
    sequence, pooled = model(batch)
    assert sequence.shape == (3, 16 + 55, 32) and pooled.shape == (3, 32)
    ids = batch["input_ids"][0]
    n = int(batch["attention_mask"][0].sum())
    assert ids[0] == model.tokenizer.cls_token_id and ids[n - 1] == model.tokenizer.sep_token_id
    assert model.tokenizer.decode(ids[1: n - 1]) == store.meta(0).text


def test_padding_is_masked_out_and_patches_are_attended() -> None:
    model = _tiny().eval()
    batch = encode_pairs(FakeStore(n=2), model.tokenizer, [0], [0], max_text_len=16)
    n = int(batch["attention_mask"][0].sum())
    assert n < 16
    with torch.no_grad():
        before, _ = model(batch)
        changed = {k: v.clone() for k, v in batch.items()}
        changed["input_ids"][0, n:] = 2000  # garbage in the padding
        after, _ = model(changed)
        assert torch.allclose(before[:, :n], after[:, :n], atol=1e-5)
        assert torch.allclose(before[:, 16:], after[:, 16:], atol=1e-5)
        changed = {k: v.clone() for k, v in batch.items()}
        changed["features"][0, 54] += 3.0  # one 5x5 patch: the text must see it
        after, _ = model(changed)
        assert not torch.allclose(before[:, :n], after[:, :n], atol=1e-4)


def test_each_level_has_its_own_projector() -> None:
    model = _tiny().eval()
    feats, pos = torch.randn(1, 55, 16), torch.rand(1, 55, 5)
    with torch.no_grad():
        before = model.visual(feats, pos)
        model.visual.project[2].weight.add_(1.0)  # the 3x3 level: patches 5..13
        after = model.visual(feats, pos)
    differs = (before - after).abs().amax(-1)[0] > 1e-6
    assert differs[5:14].all() and not differs[:5].any() and not differs[14:].any()


def test_visual_embedding_sums_its_level_projection_position_and_level_embedding_then_normalises() -> None:
    """SPEC section 9: per patch, its level's FC of the feature + one bias-free FC of the 5-d position
    + its level's type embedding, then LayerNorm; by hand, patch by patch."""
    from kaleido.models.embeddings import VisualEmbeddings

    torch.manual_seed(0)
    emb = VisualEmbeddings(6, 8, (1, 2, 3), dropout=0.0).eval()
    with torch.no_grad():  # weights large enough (and a LayerNorm far enough from 1 / 0) to show
        for p in (emb.position.weight, emb.level.weight, emb.norm.weight, emb.norm.bias):
            p.normal_()
    assert emb.position.bias is None
    feats, pos = torch.randn(2, 14, 6), torch.rand(2, 14, 5)
    levels = [0] + [1] * 4 + [2] * 9
    position, level = pos @ emb.position.weight.T, emb.level.weight
    parts = [emb.project[lv](feats[:, k]) + position[:, k] + level[lv] for k, lv in enumerate(levels)]
    summed = torch.stack(parts, dim=1)
    expected = F.layer_norm(summed, (8,), emb.norm.weight, emb.norm.bias, emb.norm.eps)
    with torch.no_grad():
        torch.testing.assert_close(emb(feats, pos), expected)


def test_save_load_round_trip_and_plain_bert_loads(tmp_path) -> None:
    from transformers import BertModel, BertTokenizerFast

    model = _tiny().eval()
    batch = encode_pairs(FakeStore(n=3), model.tokenizer, [0, 1], [1, 2], max_text_len=16)
    folder = model.save(tmp_path / "model")
    assert {"config.json", "model.safetensors", "visual.safetensors", "kaleido.json", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder cleaned up
    loaded = KaleidoModel.load(folder).eval()
    with torch.no_grad():
        assert torch.allclose(model(batch)[0], loaded(batch)[0], atol=1e-6)
    bert = BertModel.from_pretrained(str(folder), local_files_only=True)
    assert torch.equal(bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    assert torch.equal(bert.pooler.dense.weight, model.bert.pooler.dense.weight)
    assert len(BertTokenizerFast.from_pretrained(str(folder))) == model.vocab_size


def test_pretrained_init_keeps_the_minilm_weights() -> None:
    from transformers import BertModel

    from kaleido.weights import minilm_dir

    model = Kaleido(init="minilm", max_text_len=16).build(16, (1, 2, 3, 4, 5))
    reference = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True)
    assert model.hidden_size == 384
    layer, ref = model.bert.encoder.layer[3], reference.encoder.layer[3]
    assert torch.equal(layer.output.dense.weight, ref.output.dense.weight)


def test_keep_layers_drops_top_layers_of_a_pretrained_init(tmp_path) -> None:
    from transformers import BertModel

    from kaleido.weights import minilm_dir

    model = Kaleido(init="minilm", max_text_len=16, keep_layers=2).build(16, (1, 2))
    reference = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True)
    assert len(model.bert.encoder.layer) == 2
    kept, ref = model.bert.encoder.layer[1], reference.encoder.layer[1]
    assert torch.equal(kept.output.dense.weight, ref.output.dense.weight)
    model.save(tmp_path / "m")
    assert len(BertModel.from_pretrained(str(tmp_path / "m")).encoder.layer) == 2
    with pytest.raises(ValueError, match="keep_layers"):
        Kaleido(init="minilm", keep_layers=0)


def test_bad_model_parameters_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        Kaleido(init="scratch", hidden_size=30, num_heads=4)
    # a size set beside a pretrained init would be silently ignored: refused instead
    with pytest.raises(ValueError, match='hidden_size, num_layers apply to init = "scratch" only'):
        Kaleido(init="minilm", hidden_size=768, num_layers=12)
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        Kaleido(init="scratch", num_layers=0)
    assert Kaleido(init="scratch").build(16, (1,)).hidden_size == 384  # MiniLM's sizes by default
    with pytest.raises(ValueError, match="max_text_len"):
        Kaleido(**{**TINY, "max_text_len": 2}).build(16, (1,))


def test_objective_reports_every_task_and_weights_the_sum() -> None:
    objective, ds = _objective()
    objective.weights = {n: float(i + 1) for i, n in enumerate(ALL)}
    batch = ds.collate([ds[i] for i in range(len(ds))])
    out = objective(batch)
    assert set(out.losses) == set(ALL)
    assert set(out.metrics) == {f"{n}/acc" for n in ALL}
    expected = sum(objective.weights[n] * out.losses[n] for n in ALL)
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    assert objective.model.visual.project[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in objective.heads.parameters())


def test_loss_scale_scales_each_tasks_loss_and_metrics_alike() -> None:
    """The trainer adds up micro-batches scaled by their share of the step's count: an unscaled
    metric would log as a sum of the micro-batches' accuracies (test_loss_normalisation checks only
    AMLM's, which is 0 for an untrained model, scaled or not)."""
    objective, ds = _objective()
    batch = ds.collate([ds[i] for i in range(len(ds))])
    scale = {n: torch.tensor(0.25 * (i + 1)) for i, n in enumerate(ALL)}
    with torch.no_grad():
        plain, scaled = objective(batch), objective(batch, loss_scale=scale)
    assert sum(plain.metrics[f"{n}/acc"].item() > 0 for n in ALL) >= 2
    for n in ALL:
        k, acc = scale[n].item(), f"{n}/acc"
        assert scaled.losses[n].item() == pytest.approx(k * plain.losses[n].item(), rel=1e-5)
        assert scaled.metrics[acc].item() == pytest.approx(k * plain.metrics[acc].item(), rel=1e-5)


def test_objective_save_load_and_evaluation_helpers(tmp_path) -> None:
    objective, ds = _objective()
    objective.weights["cp"] = 0.5
    objective.eval()
    batch = ds.collate([ds[i] for i in range(4)])
    folder = objective.save(tmp_path / "objective")
    loaded = PretrainObjective.load(folder).eval()
    assert loaded.weights["cp"] == 0.5
    with torch.no_grad():
        assert torch.allclose(objective(batch).loss, loaded(batch).loss, atol=1e-5)
        plain = encode_pairs(ds.store, objective.model.tokenizer, [0, 1], [0, 5], max_text_len=16)
        assert loaded.itm_logits(plain).shape == (2, 2)
        scores = loaded.match_scores(plain)
        assert scores.shape == (2,)  # the retrieval score is the log-odds of class 1, "match"
        logits = loaded.itm_logits(plain).float()
        torch.testing.assert_close(scores, logits[:, 1] - logits[:, 0])
        assert loaded.mlm_logits(plain).shape == (2, 16, objective.model.vocab_size)


@pytest.mark.slow
def test_tiny_model_overfits_one_batch_on_every_task() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only fight over the shared cores
    try:
        torch.manual_seed(0)
        objective, ds = _objective()
        batch = ds.collate([ds[i] for i in range(8)])
        optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
        with torch.no_grad():
            start = {k: v.item() for k, v in objective(batch).losses.items()}

        def done(out) -> bool:
            return all(out.losses[n].item() < 0.3 * start[n] for n in ALL) and all(
                out.metrics[f"{n}/acc"].item() == 1.0 for n in ["itm", "rr", "jps", "cp", "amlm"])

        for _ in range(300):
            out = objective(batch)
            if done(out):
                break
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        objective.eval()
        with torch.no_grad():
            end = objective(batch)
    finally:
        torch.set_num_threads(threads)
    for name in ALL:
        assert end.losses[name].item() < 0.3 * start[name], (name, start[name], end.losses[name].item())
    for name in ["itm", "rr", "jps", "cp", "amlm"]:
        assert end.metrics[f"{name}/acc"].item() == 1.0, name
    # the retrieval score points the right way: every matched pair above every mismatched one
    with torch.no_grad():
        scores = objective.match_scores(batch)
    matched = batch["itm/label"] == 1
    assert 0 < int(matched.sum()) < len(matched)
    assert scores[matched].min() > scores[~matched].max()


def test_dense_slots_give_the_same_losses_metrics_and_gradients(monkeypatch) -> None:
    """On an accelerator the heads keep every padded slot with a 0/1 weight (no nonzero sync);
    the losses, accuracies and gradients must equal the CPU path's, which keeps only valid slots."""
    import kaleido.tasks.base as base

    objective, ds = _objective()
    objective.eval()  # no dropout: both passes see the same network
    batch = ds.collate([ds[i] for i in range(8)])
    assert (batch["amlm/labels"] == -100).any() and (~batch["g2cm/valid"]).any()  # padding exists

    def run():
        objective.zero_grad(set_to_none=True)
        out = objective(batch)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}
        return out, grads

    sparse, sparse_grads = run()
    monkeypatch.setattr(base, "dense_slots", lambda device: True)
    dense, dense_grads = run()
    for name in ("amlm", "g2cm", "b2cm"):
        assert dense.losses[name].item() == pytest.approx(sparse.losses[name].item(), rel=1e-5)
        assert dense.metrics[f"{name}/acc"].item() == pytest.approx(sparse.metrics[f"{name}/acc"].item())
    assert dense_grads.keys() == sparse_grads.keys()
    for name, grad in sparse_grads.items():
        torch.testing.assert_close(dense_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_encoding_gives_the_padded_results_and_gradients() -> None:
    """``packed``: only the real positions go through the encoder, in one sequence with attention
    kept within each sample; losses, gradients and the real positions' outputs equal the padded
    path's, and no position of one sample reaches another (changing sample 1 leaves sample 0)."""
    objective, ds = _objective()
    objective.eval()
    batch = ds.collate([ds[i] for i in range(8)])
    assert (batch["attention_mask"] == 0).any()  # padding to drop
    real = torch.cat([batch["attention_mask"].bool(), torch.ones(8, 55, dtype=torch.bool)], 1)

    def run():
        objective.zero_grad(set_to_none=True)
        out = objective(batch)
        out.loss.backward()
        with torch.no_grad():
            sequence, pooled = objective.model(batch)
        return out, {n: p.grad.clone() for n, p in objective.named_parameters() if p.grad is not None}, \
            sequence, pooled

    padded, padded_grads, padded_seq, padded_pool = run()
    objective.model.packed = True
    packed, packed_grads, packed_seq, packed_pool = run()
    assert objective.model.bert.config._attn_implementation == "kaleido_packed"
    for name in ALL:
        assert packed.losses[name].item() == pytest.approx(padded.losses[name].item(), rel=1e-4, abs=1e-6)
    torch.testing.assert_close(packed_seq[real], padded_seq[real], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed_pool, padded_pool, rtol=1e-4, atol=1e-5)
    assert not packed_seq[~real].any()  # zeros at the padding
    assert packed_grads.keys() == padded_grads.keys()
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
    other = {k: v.clone() for k, v in batch.items()}
    other["features"][1] += 1.0
    with torch.no_grad():
        moved, _ = objective.model(other)
    torch.testing.assert_close(moved[0], packed_seq[0])
    assert not torch.allclose(moved[1], packed_seq[1])
    objective.model.packed = False
    assert objective.model.bert.config._attn_implementation == "sdpa"


def test_mean_pooling_feeds_the_pooler_the_balanced_mean_and_survives_save_load(tmp_path) -> None:
    from kaleido.models.pooling import balanced_mean

    torch.manual_seed(0)
    model = Kaleido(**{**TINY, "dropout": 0.0, "pooling": "mean"}).build(16, (1, 2, 3, 4, 5)).eval()
    store = FakeStore(n=4)
    batch = encode_pairs(store, model.tokenizer, [0, 1, 2], [0, 3, 2], max_text_len=16)
    with torch.no_grad():
        sequence, pooled = model(batch)
        expected = model.bert.pooler.activation(model.bert.pooler.dense(
            balanced_mean(sequence, batch["attention_mask"])))
        cls_pooled = model.bert.pooler(sequence)
    torch.testing.assert_close(pooled, expected)
    assert not torch.allclose(pooled, cls_pooled)
    # the text padding does not enter the mean: extra pad positions leave it unchanged
    mask = batch["attention_mask"]
    text = (sequence[:, :16] * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(balanced_mean(sequence, mask), 0.5 * (text + sequence[:, 16:].mean(1)))
    loaded = KaleidoModel.load(model.save(tmp_path / "m")).eval()
    assert loaded.pooling == "mean"
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)[1], pooled)
    with pytest.raises(ValueError, match="pooling must be one of cls, mean, text"):
        Kaleido(pooling="max")


def test_text_pooling_reads_only_the_attended_text_positions() -> None:
    from kaleido.evaluation.pooling import pool
    from kaleido.models.pooling import summary

    torch.manual_seed(0)
    model = Kaleido(**{**TINY, "dropout": 0.0, "pooling": "text"}).build(16, (1, 2, 3, 4, 5)).eval()
    batch = encode_pairs(FakeStore(n=4), model.tokenizer, [0, 1, 2], [0, 3, 2], max_text_len=16)
    mask = batch["attention_mask"]
    with torch.no_grad():
        sequence, pooled = model(batch)
    by_hand = torch.stack([sequence[i, : int(mask[i].sum())].mean(0) for i in range(3)])
    torch.testing.assert_close(summary(sequence, mask, "text"), by_hand)
    torch.testing.assert_close(pooled, model.bert.pooler.activation(model.bert.pooler.dense(by_hand)))
    # the patches and the text padding do not enter it; the balanced mean does read the patches
    changed = sequence.clone()
    changed[:, 16:] += 5.0
    changed[0, int(mask[0].sum()):16] -= 3.0
    torch.testing.assert_close(summary(changed, mask, "text"), by_hand)
    assert not torch.allclose(summary(changed, mask, "mean"), summary(sequence, mask, "mean"))
    with torch.no_grad():  # eval's summary before the pooler
        torch.testing.assert_close(pool(model, batch, "text"), by_hand)
    torch.testing.assert_close(summary(sequence, mask, "cls"), sequence[:, 0])


@pytest.mark.parametrize("takes_scale", [True, False])
def test_flash_varlen_applies_the_scaling_whether_or_not_torch_takes_scale(monkeypatch, takes_scale) -> None:
    """The GPU path calls torch's ``varlen_attn``, whose signature differs between releases (the
    GPU machines' torch may lack ``scale``): with a stand-in of each signature (per-sample SDPA,
    as FlashAttention computes), a non-default scaling gives the reference attention either way."""
    from kaleido.models import packed as packed_mod

    def reference(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
        bounds = cu_q.tolist()
        return torch.cat([F.scaled_dot_product_attention(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1),
                                                         v[a:b].transpose(0, 1), scale=scale).transpose(0, 1)
                          for a, b in zip(bounds, bounds[1:], strict=False)])

    def without_scale(q, k, v, cu_q, cu_k, max_q, max_k):
        return reference(q, k, v, cu_q, cu_k, max_q, max_k)

    fake = reference if takes_scale else without_scale
    monkeypatch.setattr(packed_mod, "_varlen_attn", lambda: (fake, takes_scale))
    torch.manual_seed(0)
    q, k, v = (torch.randn(7, 2, 4) for _ in range(3))
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    for scaling in (0.5, 0.9):  # 1/sqrt(4) = 0.5 is the default; 0.9 is not
        out = packed_mod.flash_varlen(q, k, v, cu, 4, scaling)
        torch.testing.assert_close(out, reference(q, k, v, cu, cu, 4, 4, scale=scaling))


def test_compiling_the_packed_objective_traces_the_whole_step_without_graph_breaks() -> None:
    """The packed encoder's real-position count depends on the data; compiled as the trainer and
    the GPU benchmark do (``compile_module``), dynamo must capture it instead of breaking the graph
    at every layer (26 breaks on this objective with torch.compile's defaults), and give the same
    loss as the uncompiled step."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from kaleido.training.compile import compile_module

    objective, ds = _objective()
    objective.eval()
    objective.model.packed = True
    batch = ds.collate([ds[i] for i in range(8)])
    assert (batch["attention_mask"] == 0).any()
    torch._dynamo.reset()
    counters.clear()
    try:
        compiled = compile_module(objective, backend="eager")  # dynamo's tracing only: fast
        loss = compiled(batch).loss
        assert not counters["graph_break"], dict(counters["graph_break"])
        torch.testing.assert_close(loss, objective(batch).loss)
    finally:
        objective.model.packed = False
        torch._dynamo.reset()


def test_the_packed_step_finds_its_real_positions_once_and_indexes_by_them(monkeypatch) -> None:
    """Packing, unpacking and the padded-attention fallback share one index of the real
    positions (one ``nonzero`` per step), never a boolean mask: every boolean indexing is a
    data-dependent size of its own once compiled, and torch 2.11's inductor could not reconcile
    two of them in the backward graph on an H100 ("can not broadcast [u6, 768] to [u0, 768]").
    Run as on an accelerator (dense masked slots), forward and backward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import kaleido.tasks.base as base

    index_ops = {torch.ops.aten.index, torch.ops.aten.index_put, torch.ops.aten.index_put_}

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.masked: list[str] = []
            self.nonzero = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in index_ops and any(
                    t is not None and t.dtype == torch.bool for t in args[1]):
                self.masked.append(str(func))
            self.nonzero += func.overloadpacket is torch.ops.aten.nonzero
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(base, "dense_slots", lambda device: True)
    objective, ds = _objective()
    objective.model.packed = True
    batch = ds.collate([ds[i] for i in range(8)])
    assert (batch["attention_mask"] == 0).any()
    try:
        with Count() as count:
            objective(batch).loss.backward()
    finally:
        objective.model.packed = False
    assert count.masked == []
    assert count.nonzero == 1


def test_amlm_and_itm_heads_start_from_the_init_checkpoints_own_heads(tmp_path) -> None:
    """BertModel drops a BERT checkpoint's ``cls.*`` heads; the authors restored cls/predictions
    (MLM) and cls/seq_relationship (NSP) from BERT-base, so AMLM and ITM continue them: NSP's
    "B follows A" (class 0) is ITM's "the text describes the image" (class 1)."""
    import shutil

    from transformers import BertConfig, BertForPreTraining

    from kaleido.weights import minilm_dir

    folder = tmp_path / "bert"
    torch.manual_seed(3)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)
    BertForPreTraining(config).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, folder / name)
    reference = BertForPreTraining.from_pretrained(str(folder)).cls
    model = Kaleido(init=str(folder), max_text_len=16).build(16, (1, 2, 3, 4, 5))
    objective = PretrainObjective(model, {n: registry.tasks.get(n)() for n in ("amlm", "itm")})
    mlm, itm = objective.heads["amlm"], objective.heads["itm"]
    transform = reference.predictions.transform
    torch.testing.assert_close(mlm.dense.weight, transform.dense.weight)
    torch.testing.assert_close(mlm.norm.bias, transform.LayerNorm.bias)
    torch.testing.assert_close(mlm.bias, reference.predictions.bias)
    torch.testing.assert_close(itm.classifier.weight, reference.seq_relationship.weight.flip(0))
    torch.testing.assert_close(itm.classifier.bias, reference.seq_relationship.bias.flip(0))
    hidden = torch.randn(3, 32)
    with torch.no_grad():  # the whole heads, not only their weights: dense, GELU, LayerNorm, tied decoder
        torch.testing.assert_close(mlm.logits(hidden, model), reference.predictions(hidden))
        torch.testing.assert_close(itm.logits(hidden).flip(-1), reference.seq_relationship(hidden))
    # the published bert-base-uncased files keep LayerNorm's old names, gamma / beta
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    norm = "cls.predictions.transform.LayerNorm"
    for new, old in (("weight", "gamma"), ("bias", "beta")):
        state[f"{norm}.{old}"] = torch.rand_like(state.pop(f"{norm}.{new}")) + 0.5  # not the init's 1 / 0
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    legacy = Kaleido(init=str(folder), max_text_len=16).build(16, (1, 2, 3, 4, 5))
    mlm = PretrainObjective(legacy, {"amlm": registry.tasks.get("amlm")()}).heads["amlm"]
    torch.testing.assert_close(mlm.norm.weight, state[f"{norm}.gamma"])
    torch.testing.assert_close(mlm.norm.bias, state[f"{norm}.beta"])
    torch.testing.assert_close(mlm.dense.weight, transform.dense.weight)
    # the offline MiniLM is a bare encoder: fresh heads, no error
    assert Kaleido(init="minilm", keep_layers=1, max_text_len=16).build(16, (1,)).pretrained_heads == {}


@pytest.mark.parametrize("init", ["scratch", "minilm"])
def test_attention_dropout_is_its_own_setting(init: str) -> None:
    """``attention_dropout`` sets the attention probabilities' dropout alone (0 lets the packed
    encoding take FlashAttention on a GPU); unset it follows ``dropout``, as in BERT."""
    sizes = {k: v for k, v in TINY.items() if k != "init"} if init == "scratch" else {"max_text_len": 16}
    if init != "scratch":
        sizes["keep_layers"] = 1
    split = Kaleido(init=init, dropout=0.1, attention_dropout=0.0, **sizes).build(16, (1, 2))
    same = Kaleido(init=init, dropout=0.1, **sizes).build(16, (1, 2))
    for model, attention in ((split, 0.0), (same, 0.1)):
        layer = model.bert.encoder.layer[0]
        assert layer.attention.self.dropout.p == attention
        assert layer.output.dropout.p == 0.1 and model.bert.embeddings.dropout.p == 0.1
        assert model.bert.config.attention_probs_dropout_prob == attention
    with pytest.raises(ValueError, match="attention_dropout must lie in"):
        Kaleido(init=init, attention_dropout=1.5, **sizes)
