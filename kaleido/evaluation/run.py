"""Stage 4 entry point: ``evaluate(recipe, pretrain_dir, out_dir)`` runs the asked downstream tasks.

Reads the test and train feature stores of the recipe, the pre-trained objective from
``pretrain_dir`` (the folder ``PretrainObjective.save`` wrote, or a pretrain folder holding it
under ``model/``), and writes ``results.json``, ``results.md`` and ``candidates.json`` into
``out_dir``. The candidate lists are also kept under ``<output_dir>/cache/`` keyed by the test
rows' products and the sampling settings, so every run over the same test rows ranks the same lists.
A task that was asked for but could not be measured (captioning without Java) is named with its
reason in ``results.json``'s ``incomplete`` list: ``kaleido run`` evaluates such a folder again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kaleido.atomic import write_json, write_text
from kaleido.evaluation import caption_metrics, classification, retrieval
from kaleido.evaluation.candidates import CandidateLists, build_candidates
from kaleido.evaluation.report import render
from kaleido.progress import Bar, bars

log = logging.getLogger(__name__)


def find_objective(pretrain_dir: str | Path) -> Path:
    """The folder holding ``objective.json``: ``pretrain_dir`` itself or its ``model/``."""
    base = Path(pretrain_dir)
    for folder in (base, base / "model"):
        if (folder / "objective.json").is_file():
            return folder
    raise FileNotFoundError(
        f"no pre-trained objective in {base} or {base / 'model'} (run the pretrain stage)"
    )


class _Metas:
    """Category, sub-category, product and text of every row of a store, read once."""

    def __init__(self, store: Any) -> None:
        metas = store.meta(np.arange(len(store))) if len(store) else []
        self.text = [m.text for m in metas]
        self.category = [m.category for m in metas]
        self.subcategory = [m.subcategory for m in metas]
        self.product_id = [m.product_id for m in metas]

    def key(self) -> str:
        payload = json.dumps([self.product_id, self.category, self.subcategory])
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _candidates(recipe: Any, metas: _Metas, settings: Any) -> CandidateLists:
    name = f"candidates-{metas.key()}-s{settings.seed}-q{settings.queries}-n{settings.negatives}.json"
    cached = Path(recipe.output_dir) / "cache" / name
    if cached.is_file():
        return CandidateLists.load(cached)
    lists = build_candidates(
        metas.product_id,
        metas.category,
        metas.subcategory,
        settings.queries,
        settings.negatives,
        settings.seed,
    )
    lists.save(cached)
    return lists


def _negatives_note(lists_share: float, asked: float) -> str | None:
    """Said when ITM fine-tuning's share of same-sub-category negatives is far from the lists'."""
    if abs(asked - lists_share) <= 0.25:
        return None
    return (f"retrieval: {100 * lists_share:.0f}% of the lists' negatives share the query's sub-category, "
            f"but ITM fine-tuning asks for {100 * asked:.0f}% of its negatives from the same sub-category "
            f"(eval.itm_hard_negatives = {asked:g}); a share near the lists' trains as they test "
            "(docs/EVALUATION.md)")


def _train_rows(n: int, cap: int | None, seed: int) -> np.ndarray:
    rows = np.arange(n)
    if cap is not None and cap < n:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    return rows


def evaluate(recipe: Any, pretrain_dir: str | Path, out_dir: str | Path, progress: bool = True,
             stores: str | Path | None = None) -> dict:
    """Run ``recipe.eval.tasks`` and write ``results.json`` + ``results.md`` into ``out_dir``;
    ``stores`` overrides the folder holding the ``train`` and ``test`` stores (default: the recipe's)."""
    from kaleido.evaluation.scoring import score_lists
    from kaleido.features.store import FeatureStore
    from kaleido.training.dataset import encode_pairs, trim_text_padding
    from kaleido.training.objective import PretrainObjective

    settings = recipe.eval
    tasks = list(dict.fromkeys(settings.tasks))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)

    objective = PretrainObjective.load(find_objective(pretrain_dir))
    objective.eval()
    model = objective.model
    model.packed = bool(recipe.params("model").get("packed", False))  # how to run it, not saved with it
    tokenizer = model.tokenizer
    text_len = model.max_text_len

    def encode(store: Any, texts: np.ndarray, images: np.ndarray) -> dict:
        return encode_pairs(store, tokenizer, texts, images, text_len)

    def encode_trimmed(store: Any, texts: np.ndarray, images: np.ndarray) -> dict:
        """For the tasks that read a pooled summary (not captioning, whose slots fill the text block)."""
        return trim_text_padding(encode(store, texts, images))

    if stores is None:
        from kaleido.features.prepare import store_dir

        stores = store_dir(recipe)
    stores = Path(stores)
    test = FeatureStore(stores / "test")
    test_meta = _Metas(test)
    needs_train = any(t in tasks for t in ("cr", "sub", "fc")) or settings.finetune_itm
    train = FeatureStore(stores / "train") if needs_train else None
    train_meta = _Metas(train) if train is not None else None
    train_rows = (
        _train_rows(len(train), settings.max_train_rows, settings.seed) if train is not None else None
    )
    # texts and labels of the rows used to fine-tune, read once; features stay memory-mapped
    train_view = None
    if train is not None:
        from kaleido.evaluation.cached_store import CachedStore

        train_view = CachedStore(train, train_rows, features=False)

    task_lr = {t: settings.encoder_lr(t) for t in ("itm", "cls", "fc")}
    head_lr = {t: settings.fresh_head_lr(t) for t in ("itm", "cls")}
    itm_pooling = settings.itm_pooling or settings.pooling
    used_head_lr = {t: task_lr[t] if v is None else v for t, v in head_lr.items()}
    if itm_pooling == "cls":  # finetune_itm trains the pre-trained [CLS] head with the encoder, at its lr
        used_head_lr["itm"] = task_lr["itm"]
    results: dict[str, Any] = {
        "info": {
            "recipe": recipe.name,
            "pretrained": str(find_objective(pretrain_dir)),
            "test_rows": len(test),
            "train_rows_used": 0 if train_rows is None else len(train_rows),
            "tasks": ", ".join(tasks),
            "pooling": settings.pooling,
            "itm_pooling": itm_pooling,
            "finetune_lr": task_lr,
            "head_lr": used_head_lr,
        },
        "notes": [],
        "incomplete": [],  # {"task", "reason"} of each asked-for task that was not measured
    }

    with bars(enabled=progress) as display:
        lines: dict[str, Bar] = {}

        def tick(name: str, done: int, total: int, loss: float | None = None) -> None:
            if name not in lines:
                lines[name] = display.add(name, total)
            lines[name].update(done, total, info="" if loss is None else f"loss {loss:.3f}")

        if "itr" in tasks or "tir" in tasks:
            lists = _candidates(recipe, test_meta, settings)
            lists.save(out_dir / "candidates.json")
            sizes = [len(lst) for lst in lists.lists]
            chance = {"itr": retrieval.chance_recall(sizes), "tir": retrieval.chance_recall(sizes)}
            chance["sum_r"] = retrieval.sum_r(chance["itr"], chance["tir"])
            if short := lists.counts.get("short_lists", 0):
                note = (f"retrieval: {short} of {len(sizes)} lists are shorter than the "
                        f"{settings.negatives + 1} candidates asked for (mean {np.mean(sizes):.1f}): "
                        f"the test split has only {len(set(test_meta.product_id))} products; "
                        "chance is computed from the real sizes")
                results["notes"].append(note)
                log.warning("%s", note)
            hard_share = lists.same_subcategory_share()
            if settings.finetune_itm and (note := _negatives_note(hard_share, settings.itm_hard_negatives)):
                results["notes"].append(note)  # advice on a setting, not a fault of the data: INFO
                log.info("%s", note)
            results["retrieval"] = {
                "queries": len(lists.lists),
                "mean_list_size": float(np.mean(sizes)),
                "sampling": {**lists.counts, "same_subcategory_share": hard_share},
                "lists_sha": lists.fingerprint(),  # did two runs rank the same lists?
                "chance": chance,
                "scorers": {},
            }
            scorers: list[tuple[str, Any]] = [("pre-trained ITM", objective)]
            if settings.finetune_itm:
                from kaleido.evaluation.itm_finetune import finetune_itm

                tuned, summary = finetune_itm(
                    objective,
                    train_view,
                    encode_trimmed,
                    train_rows,
                    [train_meta.product_id[r] for r in train_rows],
                    [train_meta.subcategory[r] for r in train_rows],
                    settings.batch_size,
                    settings.finetune_epochs,
                    task_lr["itm"],
                    settings.seed,
                    tick,
                    head_lr=head_lr["itm"],
                    hard=settings.itm_hard_negatives,
                    pooling=itm_pooling,
                    probe_steps=settings.probe_steps,
                )
                tuned.eval()
                results["retrieval"]["itm_finetune"] = summary
                scorers.append(("fine-tuned ITM", tuned))
            for name, scorer in scorers:
                t0 = time.perf_counter()
                itr_s, tir_s, stats = score_lists(
                    lists.lists,
                    test,
                    encode_trimmed,
                    scorer.match_scores,
                    settings.batch_size,
                    progress=lambda d, t, n=name: tick(f"rank ({n})", d, t),
                )
                itr_ranks, tir_ranks = retrieval.positive_ranks(itr_s), retrieval.positive_ranks(tir_s)
                itr, tir = retrieval.recall_at(itr_ranks), retrieval.recall_at(tir_ranks)
                entry = {
                    "itr": itr,
                    "tir": tir,
                    "itr_ci": retrieval.recall_interval(itr_ranks),  # 95%, over the queries
                    "tir_ci": retrieval.recall_interval(tir_ranks),
                    "itr_ranks": itr_ranks.tolist(),  # per query: ablations pair runs query by query
                    "tir_ranks": tir_ranks.tolist(),
                    "sum_r": retrieval.sum_r(itr, tir),
                    "pairs_per_s": stats["pairs"] / max(1e-9, time.perf_counter() - t0),
                    **stats,
                }
                results["retrieval"]["scorers"][name] = entry

        if "cr" in tasks or "sub" in tasks:
            from kaleido.evaluation.recognition import predict_recognition, train_recognition

            keys = [k for k in ("cr", "sub") if k in tasks]
            source = {"cr": train_meta.category, "sub": train_meta.subcategory}
            truth = {"cr": test_meta.category, "sub": test_meta.subcategory}
            # jointly: one encoder copy for both heads (a CPU budget); else one copy per task
            groups = [keys] if settings.joint_recognition else [[k] for k in keys]
            for group in groups:
                encoder, heads, spaces, summary = train_recognition(
                    model,
                    train_view,
                    encode_trimmed,
                    {k: [source[k][r] for r in train_rows] for k in group},
                    train_rows,
                    settings.batch_size,
                    settings.cls_epochs,
                    task_lr["cls"],
                    settings.seed,
                    tick,
                    head_lr=head_lr["cls"],
                    pooling=settings.pooling,
                    probe_steps=settings.probe_steps,
                    name="+".join(group),
                )
                pred = predict_recognition(
                    encoder, heads, spaces, test, encode_trimmed, np.arange(len(test)), settings.batch_size,
                    pooling=settings.pooling,
                )
                for k in group:
                    metrics = classification.classification_metrics(truth[k], pred[k])
                    unseen = sum(1 for y in truth[k] if y not in spaces[k].ids)
                    results[k] = {
                        **metrics,
                        "acc_ci": classification.accuracy_interval(truth[k], pred[k]),  # 95%
                        "classes": len(spaces[k]),
                        "test_labels_unseen_in_train": unseen,
                        "chance": classification.chance_classification(truth[k]),
                        "finetune": {**summary, "jointly_with": [g for g in group if g != k]},
                    }
                del encoder, heads
            if len(keys) == 2:
                results["sum_cls"] = {
                    "ours": classification.sum_cls(results["cr"], results["sub"]),
                    "chance": classification.sum_cls(results["cr"]["chance"], results["sub"]["chance"]),
                }

        if "fc" in tasks:
            from kaleido.evaluation.captioning import constant_caption, generate, train_captioner
            from kaleido.tasks.amlm import MLMHead

            if "amlm" in objective.heads:
                mlm_head = objective.heads["amlm"]
            else:
                mlm_head = MLMHead(model.hidden_size, model.vocab_size)
                results["notes"].append(
                    "the pre-trained objective had no AMLM head: captioning starts a fresh one"
                )
            encoder, head, summary = train_captioner(
                model,
                mlm_head,
                tokenizer,
                train_view,
                encode,
                train_rows,
                [train_meta.text[r] for r in train_rows],
                settings.caption_tokens,
                settings.batch_size,
                settings.caption_epochs,
                task_lr["fc"],
                settings.seed,
                tick,
                closed_vocab=settings.caption_closed_vocab,
                refine=settings.caption_refine > 0,
            )
            rows = np.random.default_rng(settings.seed).permutation(len(test))[: settings.caption_samples]
            rows = np.sort(rows)
            generated = generate(
                encoder, head, tokenizer, test, encode, rows, settings.caption_tokens, settings.batch_size,
                progress=lambda d, t: tick("fc captions", d, t), refine=settings.caption_refine,
            )
            # references: every text of the image's product (its poses share one description)
            refs_of: dict[str, list[str]] = {}
            for r, pid in enumerate(test_meta.product_id):
                refs_of.setdefault(pid, [])
                if test_meta.text[r] not in refs_of[pid]:
                    refs_of[pid].append(test_meta.text[r])
            refs = {str(r): refs_of[test_meta.product_id[r]] for r in rows}
            baseline = constant_caption([train_meta.text[r] for r in train_rows])
            try:
                scores = caption_metrics.caption_scores_many(
                    refs,
                    {
                        "ours": {str(r): g for r, g in zip(rows, generated, strict=True)},
                        "baseline": {str(r): baseline for r in rows},
                    },
                    progress=lambda d, t: tick("fc metrics", d, t),
                )
                for v in scores.values():
                    v["sum_cap"] = caption_metrics.sum_cap(v)
                results["fc"] = {
                    "samples": len(rows),
                    "ours": scores["ours"],
                    "baseline": scores["baseline"],
                    "baseline_caption": baseline,
                    "finetune": summary,
                    "examples": [
                        {"reference": refs[str(r)][0], "generated": g}
                        for r, g in list(zip(rows, generated, strict=True))[:5]
                    ],
                }
            except caption_metrics.JavaMissing as exc:
                results["notes"].append(f"fc not measured: {exc}")
                results["incomplete"].append({"task": "fc", "reason": str(exc)})
                log.warning("fc not measured (the results are marked incomplete): %s", exc)

    results["info"]["seconds"] = round(time.perf_counter() - start, 1)
    write_json(out_dir / "results.json", results)
    write_text(out_dir / "results.md", render(results))
    return results
