"""What the downstream heads read: the pooled [CLS] or the balanced mean of text and patches."""

import pytest
import torch

from kaleido.evaluation.pooling import check_pooling, pool


class FakeEncoder(torch.nn.Module):
    """Returns a known sequence: position t of row b holds the value 10 * b + t in every dim."""

    def forward(self, batch):
        b, t = batch["input_ids"].shape
        length = t + batch["features"].shape[1]
        seq = (10.0 * torch.arange(b)[:, None] + torch.arange(length)[None, :]).unsqueeze(-1).repeat(1, 1, 2)
        return seq, torch.full((b, 2), -1.0)


BATCH = {"input_ids": torch.zeros(2, 4, dtype=torch.long),
         "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]),
         "features": torch.zeros(2, 3, 5)}


def test_mean_pooling_weighs_text_and_patches_equally_and_skips_padding():
    out = pool(FakeEncoder(), BATCH, "mean")
    # row 0: text positions 0, 1, 2 (mean 1), patches 4, 5, 6 (mean 5) -> 3
    # row 1: text 10, 11 (mean 10.5; positions 12, 13 are padding), patches 14, 15, 16 (mean 15) -> 12.75
    torch.testing.assert_close(out, torch.tensor([[3.0, 3.0], [12.75, 12.75]]))


def test_cls_pooling_is_the_encoders_pooled_output():
    assert torch.equal(pool(FakeEncoder(), BATCH, "cls"), torch.full((2, 2), -1.0))


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling must be one of cls, mean, text; got 'max'"):
        check_pooling("max")
