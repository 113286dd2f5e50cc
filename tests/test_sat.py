"""The Show-Attend-Tell captioner: attention, loss, decoding, and that it can learn."""

from __future__ import annotations

import pytest
import torch

from kaleido.aligners.captioner import Captioner, SoftAttention, caption_loss
from kaleido.aligners.vocab import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")


def test_attention_weights_sum_to_one_over_the_grid() -> None:
    torch.manual_seed(0)
    att = SoftAttention(feature_dim=8, hidden_dim=6, attention_dim=5)
    feats = torch.randn(3, 12, 8)
    context, alpha = att(feats, att.feature_proj(feats), torch.randn(3, 6))
    assert alpha.shape == (3, 12) and context.shape == (3, 8)
    assert torch.allclose(alpha.sum(1), torch.ones(3), atol=1e-6)
    assert (alpha > 0).all()
    # the context is the attention-weighted mean of the cells
    assert torch.allclose(context, torch.einsum("bn,bnf->bf", alpha, feats), atol=1e-6)


def test_teacher_forcing_shapes_and_every_step_attention_normalised() -> None:
    torch.manual_seed(0)
    model = Captioner(vocab_size=20, input_dim=7, feature_dim=8, embed_dim=6, hidden_dim=10, attention_dim=5)
    logits, alphas = model(torch.randn(2, 9, 7), torch.randint(0, 20, (2, 5)))
    assert logits.shape == (2, 5, 20) and alphas.shape == (2, 5, 9)
    assert torch.allclose(alphas.sum(-1), torch.ones(2, 5), atol=1e-6)


def test_doubly_stochastic_regulariser_is_zero_only_for_full_coverage() -> None:
    logits = torch.zeros(1, 3, 4)
    targets = torch.tensor([[2, 3, 0]])  # two real steps, one pad
    # two steps over two cells, each cell attended exactly once overall: no penalty
    even = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    total, ce = caption_loss(logits, even, targets, pad=0, alpha_c=1.0)
    assert torch.isclose(total, ce)
    # both steps on cell 0: coverage (2, 0) -> mean((1-2)^2, (1-0)^2) = 1
    peaked = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    total, ce = caption_loss(logits, peaked, targets, pad=0, alpha_c=0.5)
    assert torch.isclose(total - ce, torch.tensor(0.5))
    assert torch.isclose(ce, torch.log(torch.tensor(4.0)))  # uniform logits over 4 words


def _overfit(texts: list[str], steps: int = 60) -> tuple[Captioner, Vocab, torch.Tensor]:
    torch.manual_seed(0)
    vocab = Vocab.build(texts, min_count=1)
    caps = [vocab.encode(t, 10) for t in texts]
    seq = torch.zeros(len(caps), max(map(len, caps)), dtype=torch.long)
    for i, c in enumerate(caps):
        seq[i, : len(c)] = torch.tensor(c)
    grid = torch.randn(len(texts), 6, 16)
    model = Captioner(len(vocab), 16, feature_dim=32, embed_dim=16, hidden_dim=48, attention_dim=16,
                      dropout=0.0)
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        logits, alphas = model(grid, seq[:, :-1])
        loss, _ = caption_loss(logits, alphas, seq[:, 1:], vocab.pad, alpha_c=0.1)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return model.eval(), vocab, grid


def test_tiny_captioner_overfits_a_few_captions_greedy_and_beam() -> None:
    texts = ["red cotton shirt with pockets", "black leather boots", "blue striped dress with long sleeves",
             "white sneakers with laces"]
    model, vocab, grid = _overfit(texts)
    greedy = model.greedy(grid, vocab.start, vocab.end, max_len=10)
    assert [" ".join(vocab.decode(c.ids)) for c in greedy] == texts
    for cap in greedy:
        assert cap.alphas.shape == (len(cap.ids), 6)
        assert torch.allclose(cap.alphas.sum(-1), torch.ones(len(cap.ids)), atol=1e-5)
    for i, text in enumerate(texts):
        beam = model.beam(grid[i:i + 1], vocab.start, vocab.end, max_len=10, beam_size=3)
        assert " ".join(vocab.decode(beam.ids)) == text
        assert beam.alphas.shape == (len(beam.ids), 6)


def test_untrained_decoding_respects_max_len() -> None:
    torch.manual_seed(1)
    model = Captioner(30, 4, feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4).eval()
    greedy = model.greedy(torch.randn(3, 5, 4), start=1, end=2, max_len=4)
    for cap in greedy:
        assert len(cap.ids) <= 4 and 2 not in cap.ids and cap.alphas.shape[0] == len(cap.ids)
    # an untrained model rarely picks <end> (1 word in 30): the cap is what stops some caption
    assert max(len(cap.ids) for cap in greedy) == 4
    beam = model.beam(torch.randn(1, 5, 4), start=1, end=2, max_len=4, beam_size=2)
    assert len(beam.ids) == 4 and 2 not in beam.ids


def test_backbone_feature_map_at_an_earlier_stride_and_own_size() -> None:
    """``feature_map(stride=16, image_size=S)`` is MobileNetV2's last stride-16 block on the image
    resized to S: a finer grid (S/16 cells a side) than the last map (S/32)."""
    import numpy as np

    from kaleido import registry

    net = registry.backbones.get("mobilenet_v2")(image_size=64, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert net.feature_map([image]).shape == (1, 1280, 2, 2)
    fine = net.feature_map([image], stride=16, image_size=96)
    assert fine.shape == (1, 96, 6, 6)
    source = net._source[0].eval()  # the unfused trunk: blocks 0..13 end at stride 16
    pixels = torch.nn.functional.interpolate(
        torch.as_tensor(image).permute(2, 0, 1)[None].float() / 255, size=(96, 96), mode="bilinear",
        antialias=True, align_corners=False)
    with torch.no_grad():
        ref = source[:14]((pixels - net.mean) / net.std)
    assert torch.nn.functional.cosine_similarity(fine.flatten(), ref.flatten(), dim=0) > 0.97
    with pytest.raises(ValueError, match="stride 64"):
        net.feature_map([image], stride=64)


def test_without_global_init_the_image_reaches_the_decoder_only_through_attention() -> None:
    torch.manual_seed(0)
    model = Captioner(vocab_size=9, input_dim=6, feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4,
                      global_init=False)
    a, b = torch.randn(2, 5, 6), torch.randn(2, 5, 6) * 3
    _, _, h_a, c_a = model._start(a)
    _, _, h_b, c_b = model._start(b)
    assert torch.equal(h_a, h_b) and torch.equal(c_a, c_b)
    model.global_init = True
    assert not torch.equal(model._start(a)[2], model._start(b)[2])


def test_word_query_lets_the_previous_word_steer_the_attention() -> None:
    """With ``word_query`` the same state attends differently after "red" than after "blue"
    (what finds the red part in "a red collar"); without it the previous word cannot matter."""
    torch.manual_seed(0)
    grid, h, c = torch.randn(1, 9, 7), torch.zeros(1, 10), torch.zeros(1, 10)
    for word_query, differ in ((True, True), (False, False)):
        model = Captioner(vocab_size=20, input_dim=7, feature_dim=8, embed_dim=6, hidden_dim=10,
                          attention_dim=5, word_query=word_query).eval()
        feats, proj, _, _ = model._start(grid)
        _, red, _, _ = model._step(feats, proj, torch.tensor([3]), h, c)
        _, blue, _, _ = model._step(feats, proj, torch.tensor([4]), h, c)
        assert torch.allclose(red.sum(), torch.tensor(1.0)) and (not torch.allclose(red, blue)) == differ


def test_deep_output_reads_the_attended_context_directly() -> None:
    """Xu et al.'s output layer: with the LSTM state and the word fixed, the word's logits still move
    with the attended cells (through ``out_z``); without it only through the LSTM."""
    torch.manual_seed(0)
    model = Captioner(vocab_size=20, input_dim=7, feature_dim=8, embed_dim=6, hidden_dim=10, attention_dim=5,
                      deep_output=True).eval()
    grid = torch.randn(1, 9, 7, requires_grad=True)
    feats, proj, h, c = model._start(grid)
    logits, _, _, _ = model._step(feats, proj, torch.tensor([3]), h, c)
    (g_total,) = torch.autograd.grad(logits[0, 5], grid, retain_graph=True)
    with torch.no_grad():
        model.out_z.weight.zero_()
        model.out_z.bias.zero_()
    logits, _, _, _ = model._step(feats, proj, torch.tensor([3]), h, c)
    (g_lstm,) = torch.autograd.grad(logits[0, 5], grid)
    assert not torch.allclose(g_total, g_lstm)
    assert not hasattr(Captioner(20, 7, deep_output=False), "out_z")


def test_backbone_stride_one_is_the_normalised_pixels() -> None:
    """``feature_map(stride=1)`` is the resized crop itself, ImageNet-normalised: the
    colour-preserving stream the aligner's ``low_level = 1`` pools next to the deep map."""
    import numpy as np

    from kaleido import registry

    net = registry.backbones.get("mobilenet_v2")(image_size=64, device="cpu")
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 15:] = (255, 0, 0)  # right half red
    pix = net.feature_map([image], stride=1, image_size=32)
    assert pix.shape == (1, 3, 32, 32)
    red = (torch.tensor([1.0, 0.0, 0.0]) - net.mean.flatten()) / net.std.flatten()
    black = -net.mean.flatten() / net.std.flatten()
    assert torch.allclose(pix[0, :, 5, 28], red, atol=1e-4)
    assert torch.allclose(pix[0, :, 5, 3], black, atol=1e-4)


def test_low_level_hypercolumn_adds_the_early_map_pooled_to_the_attention_grid() -> None:
    """``low_level`` concatenates the early map, average-pooled per cell, to the deep grid: the
    feature grows by its channels (96 + 3 for pixels, 96 + 24 for stride 4), the grid stays the
    stride-16 one, a cell's extra channels are its mean normalised colour, and the captioner's
    attention over the wider cells still sums to one."""
    import numpy as np

    from kaleido import registry
    from kaleido.aligners.base import AlignSource

    net = registry.backbones.get("mobilenet_v2")(image_size=64, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    src = AlignSource("train", [], lambda i: image, lambda i: None, None, lambda t: [],
                      lambda ims, **kw: net.feature_map(list(ims), **kw), grid_key="x")
    make = registry.aligners.get("sat")
    deep = make(stride=16)._feature_map(src, [image])
    pixels = make(stride=16, low_level=1)._feature_map(src, [image])
    early = make(stride=16, low_level=4)._feature_map(src, [image])
    assert deep.shape == (1, 96, 4, 4) and pixels.shape == (1, 99, 4, 4) and early.shape == (1, 120, 4, 4)
    assert torch.allclose(pixels[:, :96], deep.float())
    full = net.feature_map([image], stride=1)  # 64 x 64: 16 x 16 pixels per cell
    assert torch.allclose(pixels[0, 96:, 1, 2], full[0, :, 16:32, 32:48].mean(dim=(1, 2)), atol=1e-4)
    with pytest.raises(ValueError, match="low_level"):
        make(low_level=-1)
    model = Captioner(vocab_size=9, input_dim=99, feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4)
    feats, proj, h, c = model._start(pixels.flatten(2).transpose(1, 2))
    _, alpha, _, _ = model._step(feats, proj, torch.tensor([3]), h, c)
    assert alpha.shape == (1, 16) and torch.allclose(alpha.sum(), torch.tensor(1.0))


def test_key_channels_score_cells_by_their_last_channels_only() -> None:
    """With ``key_channels`` (the SAT aligner's ``low_key``: the pixel stream) the attention map is
    a function of those raw channels alone; the deep channels still reach the context."""
    torch.manual_seed(0)
    model = Captioner(vocab_size=9, input_dim=7, feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4,
                      key_channels=3, global_init=False).eval()  # the query must not see the deep channels
    grid = torch.randn(1, 6, 7)
    other = grid.clone()
    other[..., :4] = torch.randn(1, 6, 4)  # the deep channels differ, the colour is the same
    recoloured = grid.clone()
    recoloured[..., 4:] = torch.randn(1, 6, 3)
    alphas, contexts = [], []
    for g in (grid, other, recoloured):
        feats, proj, h, c = model._start(g)
        context, alpha = model.attention(feats, proj, h, model.embed(torch.tensor([3])))
        alphas.append(alpha)
        contexts.append(context)
    assert torch.allclose(alphas[0], alphas[1]) and not torch.allclose(alphas[0], alphas[2])
    assert not torch.allclose(contexts[0], contexts[1])
    assert torch.allclose(alphas[0].sum(), torch.tensor(1.0))
    from kaleido import registry

    with pytest.raises(ValueError, match="low_key"):
        registry.aligners.get("sat")(low_key=True)


@pytest.mark.parametrize(("setting", "value"), [
    ("batch_size", 0), ("epochs", 0), ("epochs", -1), ("dropout", 2.0), ("lr", -1.0), ("lr", float("nan")),
    ("max_len", 0), ("min_count", 0), ("checkpoint_every", 0), ("max_vocab", 4), ("beam_size", 0),
    ("hidden_dim", 0), ("alpha_c", -1.0), ("threads", -1), ("levels", [0, 3])])
def test_sat_refuses_settings_it_cannot_train_or_decode_with_naming_the_parameter(setting, value) -> None:
    """0 epochs aligned with an untrained captioner, a batch of 0 divided by zero, a max_len of 0
    failed later as 'no training row has a description word': each is refused when it is built."""
    from kaleido.aligners.sat import SATAligner

    with pytest.raises(ValueError, match=rf"^sat: {setting} ") as info:
        SATAligner(**{setting: value})
    assert str(value) in str(info.value)
    SATAligner(epochs=1, batch_size=1, max_len=1, dropout=0.0, clip_grad_norm=0.0, threads=0)  # the edges


def test_kaleido_check_reports_sat_settings_at_their_field(tiny_recipe, tmp_path) -> None:
    from kaleido.recipe import load_recipe
    from kaleido.recipe.construct import construction_problems

    recipe = load_recipe(tiny_recipe(tmp_path), ["aligner.epochs=0"])
    problems = [p for p in construction_problems(recipe) if p.path.startswith("aligner")]
    assert [(p.file, p.path, p.given) for p in problems] == [("--set", "aligner.epochs", 0)]


def test_kaleido_align_prints_a_report_without_cross_entropies(tiny_recipe, tmp_path, monkeypatch) -> None:
    """A fit report with no training step has no cross-entropy: '-', not a TypeError traceback."""
    from typer.testing import CliRunner

    from kaleido.aligners import align as stage
    from kaleido.cli import app

    report = {"path": str(tmp_path / "a"), "fit": {"train_rows": 3, "vocab": 9, "steps": 0, "first_ce": None,
                                                   "final_ce": None},
              "splits": {"train": {"rows": 3, "aligned_rows": 0, "pairs": 0, "quality": None}}}
    monkeypatch.setattr(stage, "align", lambda recipe, progress=True: report)
    result = CliRunner().invoke(app, ["align", str(tiny_recipe(tmp_path)), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "cross-entropy - -> -" in result.output
