"""Pre-training throughput and model FLOPs utilisation (MFU) of the BERT-base recipe on one device.

Run on a CUDA machine:  python bench/gpu_train.py                      (bf16 autocast, batch 96)
Run here (CPU, tiny):   python bench/gpu_train.py --device cpu --tiny

The model is the full Kaleido-BERT objective (the ``kaleido`` model with ``init = "scratch"``,
hidden 768, 12 layers, 12 heads, FFN 3072, 64 text positions + 55 Kaleido patches of 2048-d
features = 119 positions, and all seven task heads), trained with AdamW on batches built by the
real :class:`PretrainDataset` (random masker, ITM negatives, every AKPM transform) over an
in-memory store of random features. Random weights: no download, no weights package needed.
A few batches are collated once and moved to the device, so the figure is the model step alone.

FLOPs per sample of one training step (forward + backward = 3 x forward, matmuls only):

    encoder     6 * L * (4 H^2 + 2 H I) * S          S = the sample's text tokens + P patches
    attention   12 * L * S^2 * H                      QK^T and AV, forward 4 S^2 H per layer
    image side  6 * P * (D * H + 5 * H)               per-level patch FC (D -> H) + 5-d position FC
    pooler+ITM  6 * (H^2 + 2 H)
    RR/JPS/CP   6 * (1*H*4 + 4*H*24 + 9*H*9)          linear over the flattened level
    AMLM        6 * m_tok * (H^2 + H * V)             per masked token (dense + tied decoder)
    G2CM/B2CM   6 * m_patch * H * D                   per masked patch

``m_tok`` and ``m_patch`` are counted from the batches actually fed. ``S`` counts a sample's real
positions only: its text up to ``[SEP]`` (the bench's texts are 14-17 tokens) and its 55 patches,
so MFU is model FLOPs utilisation in the usual sense (padding is work the device does for
nothing). ``mfu_padded`` counts every position the device computes, T + P with T the batch's text
width, as torch's flop counter sees them. The dataset pads each batch's text to its longest
(``--text-padding longest``, the default since session 7, as ``kaleido run`` trains); ``max``
pads it to the 64 positions of ``max_text_len`` (41% of the 119 positions padding), the layout
every figure recorded before then was measured on.

``--loop trainer`` measures the product instead of the bare step: kaleido's own ``Trainer`` (the
loop ``kaleido run`` uses: data loader workers building every batch, fused AdamW, clipping, the
per-step loss all-reduce, logging) over the same random store, with ``pretrain.compile`` when
``--compile`` is given (the default compile mode; ``--compile-mode`` applies to the bare step);
samples/s is read from its log after the first window, and its FLOPs use the masked counts of
batches built the same way.

MFU = FLOPs per step / step time / peak; the peak is the device's dense bf16 figure (H100 SXM: 989 TFLOP/s) or
``--peak-tflops``. ``--check-flops`` also counts the FLOPs of one step with
``torch.utils.flop_counter`` (eager attention) to confirm the formula.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from kaleido.training.optim import fused

TASKS = ("amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm")
GRIDS = (1, 2, 3, 4, 5)
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
TEXTS = ["black leather biker jacket with silver zip and two zipped chest pockets",
         "white cotton crew neck t-shirt with a small embroidered logo on the chest",
         "blue slim fit denim jeans with five pockets and a button fly",
         "red floral print midi dress with short sleeves and a tie belt"]


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    text: int
    feature_dim: int
    vocab: int

    @property
    def patches(self) -> int:
        return sum(g * g for g in GRIDS)

    @property
    def positions(self) -> int:
        return self.text + self.patches


BASE = dict(hidden=768, layers=12, heads=12, ffn=3072, text=64, feature_dim=2048)
TINY = dict(hidden=64, layers=2, heads=4, ffn=128, text=32, feature_dim=32)
# the quickstart's model on random weights: MiniLM's first 3 layers, 48 text positions, MobileNetV2's
# 1280-d features (for CPU comparisons of the step at the shape the first command trains)
QUICKSTART = dict(hidden=384, layers=3, heads=12, ffn=1536, text=48, feature_dim=1280)
SHAPES = {"base": BASE, "tiny": TINY, "quickstart": QUICKSTART}


class RandomStore:
    """An in-memory store with the FeatureStore API: random features, real Kaleido positions."""

    def __init__(self, n: int, feature_dim: int, seed: int = 0) -> None:
        from kaleido.data.rows import RowMeta
        from kaleido.tasks.base import patch_layout

        rng = np.random.default_rng(seed)
        self.grids, self.feature_dim = GRIDS, feature_dim
        self.levels = patch_layout(GRIDS)
        p = len(self.levels)
        self._f = rng.normal(size=(n, p, feature_dim)).astype(np.float16)
        self._rot = rng.normal(size=(n, 3, feature_dim)).astype(np.float16)
        self._grey = rng.normal(size=(n, 16, feature_dim)).astype(np.float16)
        boxes = np.concatenate([[(c / g, r / g, (c + 1) / g, (r + 1) / g) for r in range(g) for c in range(g)]
                                for g in GRIDS])
        pos = np.stack([boxes[:, 0], boxes[:, 2], boxes[:, 1], boxes[:, 3],
                        (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])], axis=1)
        self._pos = pos.astype(np.float32)
        self._meta = [RowMeta(i, TEXTS[i % len(TEXTS)], "c", "s", f"p{i // 2}", str(i % 2)) for i in range(n)]

    def __len__(self) -> int:
        return len(self._meta)

    def features(self, i: int) -> np.ndarray:
        return self._f[i]

    def rotations(self, i: int) -> np.ndarray:
        return self._rot[i]

    def grey(self, i: int) -> np.ndarray:
        return self._grey[i]

    def positions(self, i: int) -> np.ndarray:
        return self._pos

    def meta(self, i: int):
        return self._meta[i]

    def product_ids(self) -> np.ndarray:
        return np.array([m.product_id for m in self._meta])


def build(shape: dict, batch: int, n_batches: int, seed: int = 0, pad_text: str = "longest",
          attention_dropout: float | None = None):
    """(objective, list of collated batches, Shape) for the given sizes; random weights;
    ``attention_dropout``: the model's own parameter (default: its hidden dropout, 0.1)."""
    from kaleido import registry
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.dataset import PretrainDataset
    from kaleido.training.objective import PretrainObjective

    torch.manual_seed(seed)
    factory = Kaleido(init="scratch", hidden_size=shape["hidden"], num_layers=shape["layers"],
                      num_heads=shape["heads"], intermediate_size=shape["ffn"], max_text_len=shape["text"],
                      dropout=0.1, attention_dropout=attention_dropout)
    model = factory.build(shape["feature_dim"], GRIDS)
    tasks = {name: registry.tasks.get(name)() for name in TASKS}
    objective = PretrainObjective(model, tasks)
    store = RandomStore(max(2 * batch, 8), shape["feature_dim"], seed)
    data = PretrainDataset(store, model.tokenizer, registry.maskers.get("random")(), tasks, seed=seed,
                           max_text_len=shape["text"], pad_text=pad_text)
    order = np.random.default_rng(seed).permutation(len(store))
    batches = [data.collate([data[int(order[(k * batch + j) % len(store)])] for j in range(batch)])
               for k in range(n_batches)]
    dims = Shape(vocab=model.vocab_size, **shape)
    return objective, batches, dims


def real_positions(batch: dict[str, torch.Tensor], patches: int) -> list[int]:
    """Per sample: its text positions that are not padding, plus the patches."""
    return [int(n) + patches for n in batch["attention_mask"].sum(1).tolist()]


def computed_positions(batch: dict[str, torch.Tensor], patches: int) -> list[int]:
    """Per sample: the positions the padded encoder computes, the batch's text width plus the patches."""
    b, t = batch["input_ids"].shape
    return [t + patches] * b


def masked_counts(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(masked tokens with a label, masked patches with a target) in one batch."""
    tokens = int((batch["amlm/labels"] != -100).sum())
    patches = int(batch["g2cm/valid"].sum()) + int(batch["b2cm/valid"].sum())
    return tokens, patches


def step_flops(d: Shape, batch_size: int, m_tok: int, m_patch: int,
               lengths: Sequence[int] | None = None) -> dict[str, float]:
    """Training FLOPs of one step by part (see the module docstring), for the whole batch.

    ``lengths``: the positions each sample really has (its text without padding + the patches);
    without it every sample counts all ``d.positions``, padding included (what the device computes)."""
    h, p = d.hidden, d.patches
    s = np.full(batch_size, d.positions, dtype=np.float64) if lengths is None else np.asarray(lengths, float)
    out = {
        "encoder": float(6 * d.layers * (4 * h * h + 2 * h * d.ffn) * s.sum()),
        "attention": float(12 * d.layers * h * (s * s).sum()),
    }
    per_sample = {
        "image_projection": 6 * p * (d.feature_dim * h + 5 * h),
        "pooler_itm": 6 * (h * h + 2 * h),
        "level_heads": 6 * (h * 4 + 4 * h * 24 + 9 * h * 9),
    }
    out.update({k: float(v * batch_size) for k, v in per_sample.items()})
    out["amlm"] = float(6 * m_tok * (h * h + h * d.vocab))
    out["reconstruction"] = float(6 * m_patch * h * d.feature_dim)
    out["total"] = sum(out.values())
    return out


def counted_flops(objective: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward as torch's flop counter sees them (eager attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    config = objective.model.bert.config
    old = config._attn_implementation
    # the counter does not see fused CPU attention kernels; eager is also the padded (unpacked) step
    # that the formula's padded count describes
    config._attn_implementation = "eager"
    try:
        with FlopCounterMode(display=False) as counter:
            objective(batch).loss.backward()
    finally:
        config._attn_implementation = old
    objective.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given is not None:
        return given, "--peak-tflops"
    if device.type != "cuda":
        return None, "unknown (CPU)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"{name} dense bf16"
    return None, f"unknown for {name}: pass --peak-tflops"


@dataclass
class Result:
    device: str
    shape: dict
    batch: int
    steps: int
    precision: str
    step_s: float
    samples_per_s: float
    tflops_per_s: float  # model FLOPs (real positions) per second
    flops_per_step: float  # model FLOPs: the text's padding not counted
    flops_by_part: dict
    peak_tflops: float | None
    peak_source: str
    mfu: float | None  # model FLOPs utilisation: the figure
    padded_flops_per_step: float = 0.0  # every position the padded encoder computes
    padding_share: float = 0.0  # share of the computed positions that are text padding
    mfu_padded: float | None = None  # the same time with the padding counted
    counted_flops_per_step: float | None = None  # torch's counter: compares with padded_flops_per_step
    text_padding: str = "longest"  # each batch's text padded to its longest, or to max_text_len


def run(device: str = "cuda", tiny: bool = False, batch: int | None = None, steps: int = 20, warmup: int = 5,
        precision: str = "bf16", peak: float | None = None, check_flops: bool = False,
        compile_model: bool = False, loop: str = "step", workers: int = 6, compile_mode: str = "default",
        profile: bool = False, attention: str = "sdpa", attention_dropout: float | None = None,
        text_padding: str = "longest", shape_name: str | None = None) -> Result:
    from kaleido.training.compile import compile_module

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; use --device cpu --tiny to try the script on CPU")
    shape = SHAPES[shape_name or ("tiny" if tiny else "base")]
    batch = batch or (8 if shape is TINY else 96)
    if attention == "packed" and attention_dropout is None:
        attention_dropout = 0.0  # FlashAttention varlen has no dropout
    objective, batches, dims = build(shape, batch, n_batches=4, pad_text=text_padding,
                                     attention_dropout=attention_dropout)
    configure_attention(objective, attention)
    counted = counted_flops(objective, batches[0]) if check_flops else None
    if loop == "trainer":
        if precision == "bf16-weights":
            raise SystemExit("error: --precision bf16-weights is a bare-step option; the Trainer takes "
                             "bf16 or fp32")
        step_s = trainer_step_s(objective, shape, batch, steps, warmup, precision, compile_model, workers,
                                dev, text_padding)
        return _result(dev, dims, batch, steps, precision, step_s, batches, peak, counted, text_padding)
    objective.to(dev).train()
    batches = [{k: v.to(dev, non_blocking=True) for k, v in b.items()} for b in batches]
    optimizer: torch.optim.Optimizer | MasterAdamW
    if precision == "bf16-weights":  # the model itself in bf16, fp32 master weights in the optimiser
        objective.to(torch.bfloat16)
        batches = [{k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in b.items()}
                   for b in batches]
        optimizer = MasterAdamW(objective.parameters(), lr=1e-4, weight_decay=1e-4)
    else:
        optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4, weight_decay=1e-4,
                                      fused=fused(objective.parameters()))
    step_fn = compile_module(objective, mode=compile_mode) if compile_model else objective
    dtype = torch.bfloat16 if precision == "bf16" else None

    def one(b: dict[str, torch.Tensor]) -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = step_fn(b).loss
        loss.backward()
        if isinstance(optimizer, MasterAdamW):
            optimizer.step(clip=1.0)
        else:
            torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if compile_model:  # every batch shape compiled before the clock starts
        warmup = max(warmup, 2 * len(batches))
    for k in range(warmup):
        one(batches[k % len(batches)])
    sync()
    start = time.perf_counter()
    for k in range(steps):
        one(batches[k % len(batches)])
    sync()
    step_s = (time.perf_counter() - start) / steps
    if profile:  # a diagnostic after the timing: its failure must not lose the measurement
        try:
            print_profile(one, batches, dev)
        except Exception as error:  # noqa: BLE001
            print(f"profile failed ({type(error).__name__}: {error}); the timing above stands")
    return _result(dev, dims, batch, steps, precision, step_s, batches, peak, counted, text_padding)


def configure_attention(objective, attention: str) -> None:
    """The attention variant measured: ``sdpa`` (as built), ``sdpa-no-cudnn`` (SDPA then picks the
    memory-efficient kernel for the padding mask; a process-wide switch), ``eager`` (plain matmuls
    + softmax, which torch.compile fuses), ``packed`` (the model's padding-free encoding: only the
    real positions, FlashAttention varlen on CUDA, which has no dropout: :func:`run` builds it with
    attention dropout 0 unless given)."""
    if attention == "sdpa-no-cudnn":
        torch.backends.cuda.enable_cudnn_sdp(False)
    elif attention == "eager":
        objective.model.bert.config._attn_implementation = "eager"
    elif attention == "packed":
        objective.model.packed = True
    elif attention != "sdpa":
        raise ValueError(f"unknown attention {attention!r}")


class MasterAdamW:
    """AdamW over fp32 master copies of a bf16 model's weights (mixed precision without autocast).

    The model computes in bf16 throughout (no per-op casts, half the activation traffic of
    autocast, whose LayerNorms and residual sums run in fp32); each step copies the bf16
    gradients into the fp32 masters, clips them there, steps, and copies the weights back.
    """

    def __init__(self, params, **kwargs) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.master = [p.detach().float() for p in self.params]
        self.grads = [torch.empty_like(m) for m in self.master]  # fp32 gradients, reused every step
        self.optimizer = torch.optim.AdamW(self.master, fused=fused(self.master), **kwargs)

    @torch.no_grad()
    def step(self, clip: float | None = None) -> None:
        # one grouped copy (bf16 -> fp32) instead of a cast and an allocation per parameter
        have = [k for k, p in enumerate(self.params) if p.grad is not None]
        torch._foreach_copy_([self.grads[k] for k in have], [self.params[k].grad for k in have])
        for k, m in enumerate(self.master):
            m.grad = self.grads[k] if self.params[k].grad is not None else None
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.master, clip)
        self.optimizer.step()
        torch._foreach_copy_(self.params, self.master)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None
        for m in self.master:
            m.grad = None


def print_profile(one, batches: list, dev: torch.device, steps: int = 3) -> None:
    """The kernels that take the device's (or, on a CPU, the CPU's) time over a few more steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for k in range(steps):
            one(batches[k % len(batches)])
        if dev.type == "cuda":
            torch.cuda.synchronize()
    averages = prof.key_averages()
    sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    print(averages.table(sort_by=sort, row_limit=14, max_name_column_width=60))
    print(f"profile: the table's totals cover {steps} steps")


def trainer_step_s(objective, shape: dict, batch: int, steps: int, warmup: int, precision: str,
                   compile_model: bool, workers: int, dev: torch.device, text_padding: str) -> float:
    """Seconds per optimiser step of kaleido's Trainer, after ``warmup`` steps (one log window)."""
    import tempfile

    from kaleido import registry
    from kaleido.recipe.schema import PretrainSettings
    from kaleido.training.dataset import PretrainDataset
    from kaleido.training.distributed import DistInfo
    from kaleido.training.logs import read_log
    from kaleido.training.trainer import Trainer

    tasks = {name: registry.tasks.get(name)() for name in TASKS}
    store = RandomStore(batch * (warmup + steps + 1), shape["feature_dim"])
    data = PretrainDataset(store, objective.model.tokenizer, registry.maskers.get("random")(), tasks,
                           max_text_len=shape["text"], pad_text=text_padding)
    settings = PretrainSettings(tasks=list(TASKS), batch_size=batch, max_steps=warmup + steps,
                                log_every=warmup if warmup else steps, checkpoint_every=10**9,
                                precision=precision, num_workers=workers, compile=compile_model)
    with tempfile.TemporaryDirectory() as out:
        Trainer(objective, data, settings, Path(out), info=DistInfo(device=dev), progress=False,
                tensorboard=False, plot=False).fit()
        entries = [e for e in read_log(Path(out) / "log.jsonl") if e["step"] > warmup]
    return float(np.mean([batch / e["samples_per_s"] for e in entries]))


def _result(dev: torch.device, dims: Shape, batch: int, steps: int, precision: str, step_s: float,
            batches: list, peak: float | None, counted: float | None, text_padding: str) -> Result:
    per_batch = [(masked_counts(b), real_positions(b, dims.patches), computed_positions(b, dims.patches))
                 for b in batches]
    used = [per_batch[k % len(batches)] for k in range(steps)]  # each step's batch, counted once per batch
    real = [step_flops(dims, batch, *c, lengths=n) for c, n, _ in used]
    computed = [step_flops(dims, batch, *c, lengths=w)["total"] for c, _, w in used]
    parts = {k: float(np.mean([r[k] for r in real])) for k in real[0]}
    padded = float(np.mean(computed))
    share = 1 - sum(sum(n) for _, n, _ in used) / sum(sum(w) for _, _, w in used)
    peak_value, source = peak_tflops(dev, peak)
    achieved = parts["total"] / step_s
    return Result(device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                  shape=asdict(dims), batch=batch, steps=steps, precision=precision, step_s=step_s,
                  samples_per_s=batch / step_s, tflops_per_s=achieved / 1e12, flops_per_step=parts["total"],
                  flops_by_part=parts, peak_tflops=peak_value, peak_source=source,
                  mfu=achieved / (peak_value * 1e12) if peak_value else None,
                  padded_flops_per_step=padded, padding_share=float(share),
                  mfu_padded=padded / step_s / (peak_value * 1e12) if peak_value else None,
                  counted_flops_per_step=counted, text_padding=text_padding)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny model (tests, CPU): --shape tiny")
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None,
                    help="model and input sizes (default base: the BERT-base recipe)")
    ap.add_argument("--batch", type=int, default=None, help="samples per step (default 96; tiny 8)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--precision", choices=["bf16", "fp32", "bf16-weights"], default="bf16",
                    help="bf16 autocast, fp32, or a bf16 model with fp32 master weights (no autocast)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    ap.add_argument("--check-flops", action="store_true", help="also count one step's FLOPs with torch")
    ap.add_argument("--compile", action="store_true", help="torch.compile the objective")
    ap.add_argument("--loop", choices=["step", "trainer"], default="step",
                    help="the bare model step, or kaleido's Trainer with its data loader")
    ap.add_argument("--workers", type=int, default=6, help="data loader workers (--loop trainer)")
    ap.add_argument("--compile-mode", default="default",
                    choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"])
    ap.add_argument("--profile", action="store_true", help="print the top kernels of 3 more steps")
    ap.add_argument("--attention", choices=["sdpa", "sdpa-no-cudnn", "eager", "packed"], default="sdpa",
                    help="attention kernels: SDPA (cuDNN for the padding mask on an H100), SDPA without "
                         "cuDNN (memory-efficient kernel), eager matmuls + softmax, or packed (no padding "
                         "positions at all, FlashAttention varlen, attention dropout 0)")
    ap.add_argument("--attention-dropout", type=float, default=None,
                    help="dropout on the attention probabilities (default: the recipe's 0.1)")
    ap.add_argument("--text-padding", choices=["longest", "max"], default="longest",
                    help="pad each batch's text to its longest text (as kaleido run trains) or to the 64 "
                         "positions of max_text_len (the layout measured before session 7)")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    args = ap.parse_args(argv)
    r = run(args.device, args.tiny, args.batch, args.steps, args.warmup, args.precision, args.peak_tflops,
            args.check_flops, args.compile, args.loop, args.workers, args.compile_mode, args.profile,
            args.attention, args.attention_dropout, args.text_padding, args.shape)
    mfu = f"n/a (peak {r.peak_source})"
    if r.mfu is not None:
        mfu = (f"{100 * r.mfu:.1f}% ({100 * r.mfu_padded:.1f}% counting the text padding, "
               f"{100 * r.padding_share:.0f}% of the positions)")
    loop = args.loop + (" compiled" if args.compile else "")
    print(f"{r.device}: {loop}, batch {r.batch}, {r.precision}, {r.step_s * 1000:.1f} ms/step, "
          f"{r.samples_per_s:.1f} samples/s, {r.tflops_per_s:.2f} TFLOP/s, MFU {mfu}")
    print("FLOPs per step: " + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in r.flops_by_part.items()))
    if r.counted_flops_per_step is not None:
        print(f"torch flop counter: {r.counted_flops_per_step / 1e9:.2f} G (padded formula / counted = "
              f"{r.padded_flops_per_step / r.counted_flops_per_step:.3f})")
    if args.json is not None:
        from kaleido.atomic import write_json

        write_json(args.json, asdict(r))


if __name__ == "__main__":
    main()
