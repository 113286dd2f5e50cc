"""The Kaleido-BERT model (registered ``kaleido``): one BERT stream over text and Kaleido patches.

Sequence: ``[CLS] text [SEP] pad`` (``max_text_len`` positions, text gets BERT's word, position
and segment-0 embeddings, positions 0..N) followed by the store's P patches (image embeddings of
:mod:`kaleido.models.embeddings`, no index positions), one attention mask over the text padding.

The registered component :class:`Kaleido` is a factory holding the recipe parameters; the store
supplies the rest (``feature_dim``, ``grids``) at ``build`` time. A saved folder holds
``config.json`` + ``model.safetensors`` (the text transformer, loadable by plain
``transformers.BertModel.from_pretrained``), ``visual.safetensors`` (image embeddings), the
tokenizer files and ``kaleido.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kaleido import registry
from kaleido.atomic import atomic_folder
from kaleido.models.embeddings import VisualEmbeddings
from kaleido.models.folder import save_state
from kaleido.models.packed import ATTENTION, packing, register_attention
from kaleido.models.pooling import Pooling, check_pooling, summary
from kaleido.models.tokenizer import bert_dir, load_tokenizer
from kaleido.weights import MissingWeights, minilm_dir

log = logging.getLogger(__name__)

KALEIDO_JSON = "kaleido.json"
# the sizes of an ``init = "scratch"`` model when the recipe names none: MiniLM-L6-H384's
SCRATCH = {"hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536}
VISUAL_FILE = "visual.safetensors"
FORMAT = 1


class KaleidoModel(nn.Module):
    """BERT encoder + image embeddings; ``forward(batch) -> (sequence (B, T+P, H), pooled (B, H))``."""

    def __init__(self, bert: Any, feature_dim: int, grids: tuple[int, ...], max_text_len: int,
                 tokenizer_source: str, dropout: float | None = None, pooling: str = "cls") -> None:
        super().__init__()
        self.pooling = check_pooling(pooling)
        config = bert.config
        if not 3 <= max_text_len <= config.max_position_embeddings:
            raise ValueError(f"max_text_len must lie in [3, {config.max_position_embeddings}] for this BERT, "
                             f"got {max_text_len}")
        if bert.pooler is None:
            raise ValueError("KaleidoModel needs a BertModel with its pooling layer")
        self.bert = bert
        self.visual = VisualEmbeddings(feature_dim, config.hidden_size, grids,
                                       config.hidden_dropout_prob if dropout is None else dropout,
                                       config.layer_norm_eps, config.initializer_range)
        self.feature_dim = int(feature_dim)
        self.grids = tuple(int(g) for g in grids)
        self.max_text_len = int(max_text_len)
        self.tokenizer_source = str(tokenizer_source)
        self._unpacked_attention = config._attn_implementation  # what ``packed = False`` goes back to
        # BERT's own pre-training heads (``cls.*`` of the init checkpoint), for the task heads that
        # continue them (AMLM: cls.predictions, ITM: cls.seq_relationship); not a part of the model
        self.pretrained_heads: dict[str, torch.Tensor] = {}

    @property
    def packed(self) -> bool:
        """Encode only the real positions (:mod:`kaleido.models.packed`): no work on text padding.
        The encoder's attention implementation is the packed one exactly when this is true."""
        return self.bert.config._attn_implementation == ATTENTION

    @packed.setter
    def packed(self, value: bool) -> None:
        config = self.bert.config
        if value and not self.packed:
            register_attention()
            self._unpacked_attention = config._attn_implementation
            config._attn_implementation = ATTENTION
        elif not value and self.packed:
            config._attn_implementation = self._unpacked_attention

    # -- shapes the heads need ----------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return self.bert.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.bert.config.vocab_size

    @property
    def word_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    @property
    def num_patches(self) -> int:
        return self.visual.num_patches

    @property
    def tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_source)

    # -- forward ------------------------------------------------------------------------------
    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings (B, T+P, H) and the key-padding mask (B, T+P) of a collated batch."""
        input_ids = batch["input_ids"]
        text = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        image = self.visual(batch["features"], batch["positions"]).to(text.dtype)
        mask = torch.cat([batch["attention_mask"].to(torch.long),
                          input_ids.new_ones(image.shape[:2])], dim=1)
        return torch.cat([text, image], dim=1), mask

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.masking_utils import create_bidirectional_mask

        embeddings, mask = self.embed(batch)
        if self.packed:  # the real positions only, in one sequence; zeros come back at the padding
            layout = packing(mask)
            packed = self.bert.encoder(layout.pack(embeddings), attention_mask=None, **layout.kwargs())
            sequence = layout.unpack(packed.last_hidden_state)
        else:
            attention = create_bidirectional_mask(config=self.bert.config, inputs_embeds=embeddings,
                                                  attention_mask=mask)
            sequence = self.bert.encoder(embeddings, attention_mask=attention).last_hidden_state
        # BERT's pooler (dense + tanh) reads position 0: [CLS], or the mean put there
        pooled = self.bert.pooler(summary(sequence, batch["attention_mask"], self.pooling)[:, None])
        return sequence, pooled

    # -- folders ------------------------------------------------------------------------------
    def kaleido_config(self) -> dict[str, Any]:
        return {"format": FORMAT, "feature_dim": self.feature_dim, "grids": list(self.grids),
                "max_text_len": self.max_text_len, "pooling": self.pooling}

    def write(self, folder: Path) -> None:
        """Write the model files into an existing (temporary) folder; see :meth:`save`."""
        _quiet_transformers()
        self.bert.save_pretrained(folder, safe_serialization=True)
        save_state(self.visual, folder / VISUAL_FILE)
        self.tokenizer.save_pretrained(str(folder))
        (folder / KALEIDO_JSON).write_text(json.dumps(self.kaleido_config(), indent=2), encoding="utf-8")

    def save(self, folder: str | Path) -> Path:
        """Save atomically; the folder's text transformer loads with ``BertModel.from_pretrained``."""
        with atomic_folder(folder) as tmp:
            self.write(tmp)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> KaleidoModel:
        """Load a folder written by :meth:`save` (or by ``PretrainObjective.save``)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path = folder / KALEIDO_JSON
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} is not a Kaleido model folder (no {KALEIDO_JSON})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        bert = load_bert(folder)
        model = cls(bert, meta["feature_dim"], tuple(meta["grids"]), meta["max_text_len"], str(folder),
                    pooling=meta.get("pooling", "cls"))
        model.visual.load_state_dict(load_file(str(folder / VISUAL_FILE)))
        return model


@registry.models.register("kaleido")
class Kaleido:
    """Kaleido-BERT: a single-stream BERT over ``[CLS] text [SEP]`` and the Kaleido patches.

    ``init``: ``"minilm"`` (offline pretrained MiniLM-L6-H384), ``"scratch"`` (random weights of
    the sizes below, bert-base-uncased vocabulary) or a local BERT folder (e.g. bert-base-uncased).
    The sizes apply to ``"scratch"`` only (default: MiniLM-L6-H384's, ``SCRATCH``); a pretrained
    ``init`` brings its own (setting one is an error, not silently ignored), and
    ``keep_layers`` keeps only its first N layers (a smaller, faster model that still starts
    from pretrained weights, e.g. for CPU runs). ``pooling``: what the pooler (ITM, downstream
    heads) reads, ``"cls"`` as in the paper, or ``"mean"`` / ``"text"`` for an init trained with
    mean pooling such as the offline MiniLM (see :mod:`kaleido.models.pooling`). ``packed``: encode
    only the real positions of a batch (no work on text padding; :mod:`kaleido.models.packed`;
    FlashAttention varlen on CUDA when the attention dropout is 0). ``attention_dropout``: the
    dropout on the attention probabilities (default: ``dropout``, as BERT); 0 lets the packed
    encoding use FlashAttention, whose varlen kernel has none, while the other dropouts stay.
    """

    def __init__(self, init: str = "minilm", hidden_size: int | None = None, num_layers: int | None = None,
                 num_heads: int | None = None, intermediate_size: int | None = None, max_text_len: int = 64,
                 dropout: float = 0.1, keep_layers: int | None = None, pooling: Pooling = "cls",
                 packed: bool = False, attention_dropout: float | None = None) -> None:
        check_pooling(pooling)
        sizes = {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                 "intermediate_size": intermediate_size}
        given = [name for name, value in sizes.items() if value is not None]
        if init != "scratch" and given:  # a pretrained init brings its own sizes: never ignore a set one
            raise ValueError(f"model {', '.join(given)} apply to init = \"scratch\" only; init = {init!r} "
                             f"brings its own sizes (keep_layers cuts its layers)")
        hidden_size, num_layers, num_heads, intermediate_size = (
            value if value is not None else SCRATCH[name] for name, value in sizes.items())
        if min(hidden_size, num_layers, num_heads, intermediate_size) < 1:
            raise ValueError(f"model sizes must be >= 1, got {sizes}")
        if keep_layers is not None and keep_layers < 1:
            raise ValueError(f"model keep_layers must be >= 1, got {keep_layers}")
        if max_text_len < 3:
            raise ValueError(f"model max_text_len must be >= 3 ([CLS], one word, [SEP]), got {max_text_len}")
        if init == "scratch":
            if keep_layers is not None:
                raise ValueError("model keep_layers cuts a pretrained init's layers; with init = \"scratch\" "
                                 "set num_layers instead")
        else:  # what run would meet only when pre-training starts: the folder, its positions and layers
            config = init_config(init)
            positions, layers = config.get("max_position_embeddings"), config.get("num_hidden_layers")
            if isinstance(positions, int) and max_text_len > positions:
                raise ValueError(f"model max_text_len {max_text_len} is more than the {positions} text "
                                 f"positions of init {init!r} (at most {positions})")
            if keep_layers is not None and isinstance(layers, int) and keep_layers > layers:
                raise ValueError(f"model keep_layers {keep_layers} is more than the {layers} layers of "
                                 f"init {init!r} (at most {layers}: all of them)")
        if hidden_size % num_heads:
            raise ValueError(f"model hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model dropout must lie in [0, 1), got {dropout}")
        if attention_dropout is not None and not 0.0 <= attention_dropout < 1.0:
            raise ValueError(f"model attention_dropout must lie in [0, 1), got {attention_dropout}")
        self.init = init
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.max_text_len = max_text_len
        self.dropout = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.keep_layers = keep_layers
        self.pooling = pooling
        self.packed = packed

    def tokenizer(self) -> Any:
        return load_tokenizer(self.init)

    def bert(self) -> Any:
        """The text transformer: pretrained from ``init`` or freshly initialised."""
        from transformers import BertConfig, BertModel

        if self.init == "scratch":
            config = BertConfig(vocab_size=len(self.tokenizer()), hidden_size=self.hidden_size,
                                num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                                intermediate_size=self.intermediate_size,
                                max_position_embeddings=max(512, self.max_text_len),
                                hidden_dropout_prob=self.dropout,
                                attention_probs_dropout_prob=self.attention_dropout)
            config._attn_implementation = "sdpa"
            return BertModel(config)
        bert = load_bert(bert_dir(self.init), hidden_dropout_prob=self.dropout,
                         attention_probs_dropout_prob=self.attention_dropout)
        if self.keep_layers is not None and self.keep_layers < len(bert.encoder.layer):
            bert.encoder.layer = bert.encoder.layer[: self.keep_layers]
            bert.config.num_hidden_layers = self.keep_layers  # saved folders reload with N layers
        return bert

    def build(self, feature_dim: int, grids: tuple[int, ...] | list[int]) -> KaleidoModel:
        """The model for a feature store's ``feature_dim`` and ``grids``."""
        model = KaleidoModel(self.bert(), feature_dim, tuple(grids), self.max_text_len,
                             "minilm" if self.init == "scratch" else self.init, self.dropout, self.pooling)
        model.packed = self.packed
        if self.init != "scratch":
            model.pretrained_heads = bert_heads(bert_dir(self.init))
        return model


def init_config(init: str) -> dict[str, Any]:
    """The ``config.json`` of a pretrained ``init`` (``"minilm"`` or a local BERT folder), read
    without loading weights; a missing folder or file is named with the ``init`` it came from."""
    folder = minilm_dir() if init == "minilm" else Path(init).expanduser()
    if not folder.is_dir():
        raise MissingWeights(f"model init {init!r}: no such BERT folder (give \"minilm\", \"scratch\" or a "
                             f"local folder such as bert-base-uncased; nothing is downloaded)")
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingWeights(f"model init {init!r}: {folder} holds no config.json (not a BERT folder)") \
            from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"model init {init!r}: {path} is not a readable config ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model init {init!r}: {path} is not a JSON object")
    return config


def load_bert(folder: str | Path, **config: Any):
    """A local BERT folder through ``transformers`` (never a hub), without its progress bar,
    which would only clutter the run's own rich progress output."""
    from transformers import BertModel

    _quiet_transformers()
    return BertModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="sdpa", **config)


def bert_heads(folder: str | Path) -> dict[str, torch.Tensor]:
    """The ``cls.*`` tensors of a local BERT checkpoint (BERT's MLM and NSP heads, which
    ``BertModel`` drops), keyed without ``cls.``; empty for a bare encoder (the offline MiniLM).
    LayerNorm's old names (``gamma`` / ``beta``, as the published bert-base-uncased files still
    have them) read as ``weight`` / ``bias``, the renaming transformers does when it loads."""
    folder = Path(folder)
    single, index, legacy = folder / "model.safetensors", folder / "model.safetensors.index.json", \
        folder / "pytorch_model.bin"
    raw: dict[str, torch.Tensor] = {}
    if single.is_file() or index.is_file():
        from safetensors import safe_open

        shards = {} if single.is_file() else json.loads(index.read_text())["weight_map"]
        files = [single] if single.is_file() else sorted(
            {folder / f for k, f in shards.items() if k.startswith("cls.")})
        for path in files:
            with safe_open(str(path), "pt") as f:
                raw.update({k: f.get_tensor(k) for k in f.keys() if k.startswith("cls.")})
    elif legacy.is_file():
        raw = {k: v for k, v in torch.load(legacy, map_location="cpu", weights_only=True).items()
               if k.startswith("cls.")}
    renamed = {".gamma": ".weight", ".beta": ".bias"}
    out = {}
    for key, value in raw.items():
        key = key[len("cls."):]
        for old, new in renamed.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def copy_pretrained(head: nn.Module, model: Any, names: dict[str, str], what: str,
                    rows: list[int] | None = None) -> bool:
    """Start ``head`` from the init checkpoint's own head where it has one (``names``: head
    parameter -> ``cls.*`` key; ``rows`` reorders the output rows of every copied tensor), as the
    authors' code restored ``cls/predictions`` and ``cls/seq_relationship`` from BERT-base. A
    checkpoint with that head but not in the expected shape or names is said in a warning."""
    found = getattr(model, "pretrained_heads", {})
    params = dict(head.named_parameters())
    prefix = next(iter(names.values())).split(".")[0] if names else ""
    missing = [k for p, k in names.items() if k not in found or found[k].shape != params[p].shape]
    if not names or missing:
        if any(k.startswith(prefix + ".") for k in found):
            log.warning("%s head starts fresh: the init checkpoint's cls.%s lacks or misshapes %s",
                        what, prefix, ", ".join(missing))
        return False
    with torch.no_grad():
        for p, k in names.items():
            params[p].copy_(found[k][rows] if rows is not None else found[k])
    log.info("%s head starts from the init checkpoint's cls.%s", what, prefix)
    return True


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
