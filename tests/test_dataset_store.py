"""The pre-training path on a real FeatureStore prepared from real photos (myntra-500)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kaleido import registry

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]


@pytest.mark.slow
def test_pretraining_step_on_a_store_of_real_photos(myntra_dir, tmp_path) -> None:
    from kaleido.features.prepare import prepare_rows
    from kaleido.features.store import FeatureStore
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.dataset import PretrainDataset
    from kaleido.training.objective import PretrainObjective

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = registry.datasets.get("jsonl")(train=str(myntra_dir / "pairs.jsonl"), test_fraction=0.1)
        reader = data.open("train")
        backbone = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=64, batch_size=6,
                                                          device="cpu")
        prepare_rows(reader, registry.sod.get("none")(), registry.patchers.get("kaleido")(), backbone,
                     tmp_path / "store", "k", batch_size=6, max_rows=6)
        store = FeatureStore(tmp_path / "store")
        assert len(store) == 6 and store.grids == (1, 2, 3, 4, 5)

        torch.manual_seed(0)
        model = Kaleido(init="scratch", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                        max_text_len=24).build(store.feature_dim, store.grids)
        tasks = {n: registry.tasks.get(n)() for n in ALL}
        ds = PretrainDataset(store, model.tokenizer, registry.maskers.get("agm")(), tasks, max_text_len=24)
        samples = [ds[i] for i in range(len(ds))]
        for s in samples:  # the real rotated / grey features of the store are what the tasks show
            r = s.labels["rr"]["label"]
            if r:
                assert np.array_equal(s.features[0], store.rotations(s.image_row)[r - 1].astype(np.float32))
            grey = s.labels["g2cm"]["index"]
            assert np.array_equal(s.features[grey], store.grey(s.image_row)[grey - 14].astype(np.float32))
        objective = PretrainObjective(model, tasks)
        out = objective(ds.collate(samples))
        assert torch.isfinite(out.loss) and set(out.losses) == set(ALL)
        out.loss.backward()
    finally:
        torch.set_num_threads(threads)
