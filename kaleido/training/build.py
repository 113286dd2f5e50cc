"""Build what stage 3 trains from a recipe and a feature store: ``(objective, dataset)``."""

from __future__ import annotations

from typing import Any

from kaleido.training.dataset import Alignments, PretrainDataset
from kaleido.training.objective import PretrainObjective


def build_pretraining(recipe: Any, store: Any, alignments: Alignments | None = None
                      ) -> tuple[PretrainObjective, PretrainDataset]:
    """The objective (model + the recipe's task heads, loss weights) and its dataset over ``store``.

    Tasks are bound to the store's grids first, so a task whose Kaleido level the store lacks
    fails in one line before any weights are loaded.
    """
    names = list(recipe.pretrain.tasks)
    if not names:
        raise ValueError("pretrain.tasks is empty: list at least one task")
    tasks = {name: recipe.build_task(name) for name in names}
    weights = {name: recipe.task_params(name)[0] for name in names}
    for task in tasks.values():
        task.bind(tuple(store.grids))
    masker = recipe.build("masker")
    factory = recipe.build("model")
    model = factory.build(int(store.feature_dim), tuple(store.grids))
    objective = PretrainObjective(model, tasks, weights)
    dataset = PretrainDataset(store, model.tokenizer, masker, tasks, alignments=alignments,
                              seed=recipe.seed, max_text_len=factory.max_text_len)
    return objective, dataset
