"""The typed shape of a recipe: plain settings sections plus component sections.

A component section (``[masker]``, ``[patcher]`` ...) names a registered component with
``name`` and passes its other keys to that component, validated against the component's own
signature (see :mod:`kaleido.recipe.params`). Plain sections are fixed pydantic models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kaleido.models.pooling import Pooling


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSection(BaseModel):
    """``name`` picks the registered component; every other key is one of its parameters."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict:
        return dict(self.model_extra or {})


# Which registry each component section draws from.
COMPONENT_SECTIONS: dict[str, str] = {
    "data": "datasets",
    "sod": "sod",
    "patcher": "patchers",
    "backbone": "backbones",
    "aligner": "aligners",
    "masker": "maskers",
    "model": "models",
}


class PrepareSettings(Strict):
    """How the feature store is written (stage 1)."""

    dtype: Literal["float16", "float32"] = "float16"
    batch_size: int = Field(16, ge=1, description="images per backbone batch")
    num_workers: int = Field(0, ge=0, description="DataLoader workers decoding images")
    max_rows: int | None = Field(None, ge=1, description="cap on rows per split (quick runs)")


class PretrainSettings(Strict):
    """Pre-training (stage 3): tasks, optimisation, checkpoints, logging."""

    tasks: list[str] = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]
    batch_size: int = Field(32, ge=1, description="global batch (all ranks, one optimiser step)")
    grad_accum: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    checkpoint_every: int = Field(200, ge=1)
    keep_last: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    num_workers: int = Field(0, ge=0)
    compile: bool = Field(False, description="torch.compile the objective (GPU runs; slow to start on a CPU)")


class EvalSettings(Strict):
    """Downstream fine-tuning and evaluation (stage 4); see docs/EVALUATION.md."""

    tasks: list[Literal["itr", "tir", "cr", "sub", "fc"]] = ["itr", "tir", "cr", "sub", "fc"]
    queries: int = Field(1000, ge=1, description="retrieval query products (capped by the test split)")
    negatives: int = Field(100, ge=1, description="negatives per query, same sub-category first")
    finetune_itm: bool = Field(False, description="also rank with ITM fine-tuned on the train split")
    finetune_epochs: float = Field(1.0, gt=0, description="epochs of ITM fine-tuning")
    finetune_lr: float = Field(5e-5, gt=0, description="learning rate of every downstream fine-tuning")
    head_lr: float | None = Field(None, gt=0, description="lr of the CR, SUB, ITM heads (None: finetune_lr)")
    task_lr: dict[Literal["itm", "cls", "fc"], float] = Field(
        default_factory=dict, description="encoder lr per task (itm, cls = CR+SUB, fc), over finetune_lr")
    task_head_lr: dict[Literal["itm", "cls"], float] = Field(
        default_factory=dict, description="fresh-head lr per task (itm, cls = CR+SUB), over head_lr")
    pooling: Pooling = Field("cls", description="what CR, SUB, tuned ITM heads read")
    itm_pooling: Pooling | None = Field(None, description="the tuned ITM's (None: pooling)")
    itm_hard_negatives: float = Field(1.0, ge=0, le=1, description="share of same-sub-category ITM negatives")
    probe_steps: int = Field(0, ge=0, description="head-only steps on frozen summaries before fine-tuning")
    cls_epochs: float = Field(3.0, gt=0, description="epochs of CR / SUB fine-tuning")
    joint_recognition: bool = Field(
        True, description="CR and SUB on one encoder copy, losses summed (False: a copy each, as the paper)")
    caption_epochs: float = Field(3.0, gt=0, description="epochs of captioning fine-tuning")
    caption_closed_vocab: bool = Field(False, description="only the train captions' WordPieces")
    caption_tokens: int = Field(24, ge=2, description="text slots of a generated caption ([SEP] included)")
    caption_refine: int = Field(
        0, ge=0, description="mask-predict passes after the one-pass caption (0: one pass, as the authors)")
    max_train_rows: int | None = Field(None, ge=1, description="cap on train rows used to fine-tune")
    batch_size: int = Field(64, ge=1)
    caption_samples: int = Field(200, ge=1, description="test images captioned and scored")
    seed: int = 0

    def encoder_lr(self, task: Literal["itm", "cls", "fc"]) -> float:
        """The encoder's fine-tuning lr for ``task``: its ``task_lr``, else ``finetune_lr``."""
        return self.task_lr.get(task, self.finetune_lr)

    def fresh_head_lr(self, task: Literal["itm", "cls"]) -> float | None:
        """A fresh head's lr for ``task``: its ``task_head_lr``, else ``head_lr`` (None: the
        encoder's lr, which the fine-tuning loop applies)."""
        return self.task_head_lr.get(task, self.head_lr)


class LaunchSettings(Strict):
    """How `kaleido run` launches training when its command line does not say."""

    nproc_per_node: int = Field(1, ge=1, description="training processes per node (--nproc-per-node default)")


class RecipeModel(Strict):
    """The whole recipe after ``extends`` and overrides are applied."""

    name: str = "recipe"
    seed: int = 0
    output_dir: str = "runs"
    data: ComponentSection
    sod: ComponentSection = ComponentSection(name="none")
    patcher: ComponentSection = ComponentSection(name="kaleido")
    backbone: ComponentSection = ComponentSection(name="mobilenet_v2")
    aligner: ComponentSection = ComponentSection(name="none")
    masker: ComponentSection = ComponentSection(name="random")
    model: ComponentSection = ComponentSection(name="kaleido")
    tasks: dict[str, dict] = Field(default_factory=dict, description="per-task parameters, incl. weight")
    prepare: PrepareSettings = PrepareSettings()
    pretrain: PretrainSettings = PretrainSettings()
    eval: EvalSettings = EvalSettings()
    launch: LaunchSettings = LaunchSettings()
    stages: list[Literal["prepare", "align", "pretrain", "eval"]] = ["prepare", "align", "pretrain", "eval"]

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str) -> str:
        """The run's folder is ``<output_dir>/<name>``: a name must not lead out of ``output_dir``."""
        if name.strip() in ("", ".", "..") or any(c in name for c in "/\\"):
            raise ValueError("a plain folder name for the run under output_dir (no '/', '\\', '.' or '..')")
        return name
