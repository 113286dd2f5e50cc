"""Show, Attend and Tell (Xu et al., ICML 2015): an LSTM decoder with soft attention over a CNN grid.

Each decoding step attends over the ``N = h * w`` grid cells of the image's feature map
(additive attention, ``alpha = softmax(w . tanh(W_f f + W_h h))``), gates the context with
``beta = sigmoid(f_beta(h))`` and feeds ``[embed(previous word); context]`` to an LSTM cell. The
attention weights of each generated word are what the alignment stage turns into patches.

``word_query`` adds the previous word to the attention query
(``alpha = softmax(w . tanh(W_f f + W_h h + W_e embed(previous word)))``). In Xu et al. the query
is only the state *before* the previous word was read, so the map that predicts "collar" in "a
red collar" cannot know that "red" was said (only that some colour was likely): it cannot look
for the red part. With the word in the query it can, as in top-down attention (Anderson et al.,
2018), whose attention LSTM reads the previous word before attending.

``deep_output`` is Xu et al.'s output layer, ``p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))``:
the attended context ``z_t`` reaches the word directly, not only through the LSTM's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class SoftAttention(nn.Module):
    """Additive attention over grid cells; weights sum to one over the grid."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int, word_dim: int = 0) -> None:
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)
        self.hidden_proj = nn.Linear(hidden_dim, attention_dim)
        self.word_proj = nn.Linear(word_dim, attention_dim, bias=False) if word_dim else None
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, feats: torch.Tensor, proj_feats: torch.Tensor, hidden: torch.Tensor,
                word: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, N, F), proj_feats = feature_proj(feats), hidden (B, H), word (B, E) the
        previous word's embedding (used when built with ``word_dim``) -> context (B, F), alpha (B, N)."""
        query = self.hidden_proj(hidden)
        if self.word_proj is not None:
            if word is None:
                raise ValueError("this attention was built with word_dim: pass the previous word's embedding")
            query = query + self.word_proj(word)
        energy = self.score(torch.tanh(proj_feats + query.unsqueeze(1))).squeeze(-1)
        alpha = torch.softmax(energy, dim=1)
        return (alpha.unsqueeze(-1) * feats).sum(1), alpha


@dataclass
class Caption:
    """A decoded caption: word ids (without ``<start>``/``<end>``), one attention map per word, score."""

    ids: list[int]
    alphas: torch.Tensor  # (len(ids), N)
    score: float


class Captioner(nn.Module):
    """The SAT decoder over pre-computed grid features (B, N, D)."""

    def __init__(self, vocab_size: int, input_dim: int, feature_dim: int = 256, embed_dim: int = 128,
                 hidden_dim: int = 256, attention_dim: int = 128, dropout: float = 0.3,
                 global_init: bool = True, word_query: bool = True, deep_output: bool = True,
                 key_channels: int = 0) -> None:
        super().__init__()
        # global_init: the LSTM state starts from the mean grid cell (Xu et al.). Without it the state
        # starts from learned constants, so every piece of image evidence has to come through the
        # attention: the decoder cannot name a part from the global summary without looking at it.
        self.global_init = global_init
        self.vocab_size = vocab_size
        # A learned projection of the frozen backbone's channels keeps the LSTM small (1280 -> 256).
        self.encode = nn.Sequential(nn.Linear(input_dim, feature_dim), nn.ReLU())
        # key_channels: the attention scores cells by the grid's last ``key_channels`` raw channels only
        # (e.g. their colour), while the context it reads is still the whole encoded cell
        self.key_channels = key_channels
        self.attention = SoftAttention(key_channels or feature_dim, hidden_dim, attention_dim,
                                       embed_dim if word_query else 0)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.f_beta = nn.Linear(hidden_dim, feature_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.deep_output = deep_output
        if deep_output:
            self.out_h = nn.Linear(hidden_dim, embed_dim)
            self.out_z = nn.Linear(feature_dim, embed_dim)
            self.out = nn.Linear(embed_dim, vocab_size)
        else:
            self.out = nn.Linear(hidden_dim, vocab_size)

    def _start(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.encode(grid)
        mean = feats.mean(1) if self.global_init else torch.zeros_like(feats[:, 0])
        keys = grid[..., -self.key_channels:] if self.key_channels else feats
        return feats, self.attention.feature_proj(keys), torch.tanh(self.init_h(mean)), torch.tanh(
            self.init_c(mean))

    def _step(self, feats, proj, words, h, c):
        emb = self.embed(words)
        context, alpha = self.attention(feats, proj, h, emb)
        context = torch.sigmoid(self.f_beta(h)) * context
        h, c = self.cell(torch.cat([emb, context], dim=1), (h, c))
        if self.deep_output:
            return self.out(self.dropout(emb + self.out_h(h) + self.out_z(context))), alpha, h, c
        return self.out(self.dropout(h)), alpha, h, c

    def forward(self, grid: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. grid (B, N, D), inputs (B, T) word ids starting with ``<start>``
        -> logits (B, T, V) for the next word at every step, alphas (B, T, N)."""
        feats, proj, h, c = self._start(grid)
        logits, alphas = [], []
        for t in range(inputs.shape[1]):
            step_logits, alpha, h, c = self._step(feats, proj, inputs[:, t], h, c)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def greedy(self, grid: torch.Tensor, start: int, end: int, max_len: int) -> list[Caption]:
        """The most likely word at each step, batched; stops at ``<end>`` or ``max_len`` words."""
        feats, proj, h, c = self._start(grid)
        batch = grid.shape[0]
        words = torch.full((batch,), start, dtype=torch.long, device=grid.device)
        ids, alphas, scores = [], [], torch.zeros(batch, device=grid.device)
        done = torch.zeros(batch, dtype=torch.bool, device=grid.device)
        for _ in range(max_len + 1):
            logits, alpha, h, c = self._step(feats, proj, words, h, c)
            logp = torch.log_softmax(logits, -1)
            words = logp.argmax(-1)
            scores += torch.where(done, torch.zeros_like(scores), logp.gather(1, words[:, None]).squeeze(1))
            ids.append(torch.where(done, torch.full_like(words, end), words))
            alphas.append(alpha)
            done |= words == end
            if bool(done.all()):
                break
        ids_t, alphas_t = torch.stack(ids, 1).cpu(), torch.stack(alphas, 1).cpu()
        out = []
        for b in range(batch):
            seq = ids_t[b].tolist()
            n = seq.index(end) if end in seq else min(len(seq), max_len)
            out.append(Caption(seq[:n], alphas_t[b, :n], float(scores[b])))
        return out

    @torch.no_grad()
    def beam(self, grid: torch.Tensor, start: int, end: int, max_len: int, beam_size: int = 3) -> Caption:
        """Beam search for one image (grid (1, N, D)); finished beams are ranked by mean log-prob
        per word (plain sums would favour the shortest caption)."""
        feats1, proj1, h, c = self._start(grid)
        k = beam_size
        seqs = torch.full((1, 1), start, dtype=torch.long, device=grid.device)
        seq_alphas = torch.zeros(1, 0, feats1.shape[1], device=grid.device)
        scores = torch.zeros(1, device=grid.device)
        finished: list[Caption] = []
        for step in range(max_len + 1):
            n_beams = seqs.shape[0]
            logits, alpha, h, c = self._step(feats1.expand(n_beams, -1, -1), proj1.expand(n_beams, -1, -1),
                                             seqs[:, -1], h, c)
            total = scores[:, None] + torch.log_softmax(logits, -1)
            top, flat = total.flatten().topk(min(k, total.numel()))
            rows, words = flat // self.vocab_size, flat % self.vocab_size
            seqs = torch.cat([seqs[rows], words[:, None]], 1)
            seq_alphas = torch.cat([seq_alphas[rows], alpha[rows][:, None]], 1)
            h, c, scores = h[rows], c[rows], top
            keep = []
            for j in range(len(words)):
                ended = int(words[j]) == end
                if ended or step == max_len:
                    n = seqs.shape[1] - 2  # without <start>, and without <end> (or the word past max_len)
                    finished.append(Caption(seqs[j, 1:1 + n].tolist(), seq_alphas[j, :n].cpu(),
                                            float(top[j]) / (n + 1)))
                else:
                    keep.append(j)
            if len(finished) >= k or not keep:
                break
            idx = torch.tensor(keep, device=grid.device)
            seqs, seq_alphas, h, c, scores = seqs[idx], seq_alphas[idx], h[idx], c[idx], scores[idx]
        return max(finished, key=lambda cap: cap.score)


def caption_loss(logits: torch.Tensor, alphas: torch.Tensor, targets: torch.Tensor, pad: int,
                 alpha_c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the non-pad targets plus the doubly stochastic regulariser
    ``alpha_c * mean_{b,i} (1 - sum_t alpha_ti)^2``: every grid cell should get some attention
    over the whole caption (Xu et al. sum over cells; the mean keeps ``alpha_c`` independent of
    the grid size). Returns (total, cross-entropy)."""
    mask = targets != pad
    ce = F.cross_entropy(logits[mask], targets[mask])
    coverage = (alphas * mask.unsqueeze(-1)).sum(1)  # (B, N)
    reg = ((1.0 - coverage) ** 2).mean()
    return ce + alpha_c * reg, ce
