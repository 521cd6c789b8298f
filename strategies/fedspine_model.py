"""FedSpine's model: a tiny transformer whose Linears carry LoRA slots, and its
structured pruning (strategies/fedspine.py has the method around it).

:class:`TinyTransformer`: token and position embeddings, two pre-norm blocks
of 4-head attention and an MLP, a mean-pooled classification head; no
downloaded weights. Every Linear of a block is a :class:`LoRALinear`: a frozen
base weight plus ``LORA_SLOTS`` LoRA slots of which a device trains the first
``rank`` (:func:`set_rank`). Pruning drops whole MLP channels by the importance
of the effective weights (:func:`channel_masks`); :func:`coverage` says which
elements a device of a rank and masks could update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from strategies.fedspine_settings import LORA_SLOTS
from workloads import textcls

State = dict[str, torch.Tensor]
DIM, HEADS, HIDDEN, LAYERS = 64, 4, 256, 2


class LoRALinear(nn.Module):
    """``base(x) + x A^T B^T`` over the active slots (``rank_mask``)."""

    def __init__(self, d_in: int, d_out: int, slots: int = LORA_SLOTS) -> None:
        super().__init__()
        self.base = nn.Linear(d_in, d_out)
        self.lora_a = nn.Parameter(torch.randn(slots, d_in) / math.sqrt(d_in))
        self.lora_b = nn.Parameter(torch.zeros(d_out, slots))
        self.register_buffer("rank_mask", torch.ones(slots), persistent=False)

    def delta(self) -> torch.Tensor:
        """``B @ A`` over the active slots: what LoRA adds to the base weight."""
        mask: torch.Tensor = self.rank_mask  # type: ignore[assignment]
        return (self.lora_b * mask) @ (self.lora_a * mask[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask: torch.Tensor = self.rank_mask  # type: ignore[assignment]
        low = F.linear(x, self.lora_a * mask[:, None])
        out: torch.Tensor = self.base(x) + F.linear(low, self.lora_b * mask)
        return out


class Block(nn.Module):
    """Pre-norm transformer block; ``channel_mask`` prunes MLP channels."""

    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.qkv = LoRALinear(DIM, 3 * DIM)
        self.proj = LoRALinear(DIM, DIM)
        self.fc1 = LoRALinear(DIM, HIDDEN)
        self.fc2 = LoRALinear(HIDDEN, DIM)
        self.register_buffer("channel_mask", torch.ones(HIDDEN), persistent=False)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(DIM, dim=2)
        q, k, v = (
            z.reshape(n, t, HEADS, DIM // HEADS).transpose(1, 2) for z in (q, k, v)
        )
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.proj(attended.transpose(1, 2).reshape(n, t, DIM))
        mask: torch.Tensor = self.channel_mask  # type: ignore[assignment]
        out: torch.Tensor = x + self.fc2(F.gelu(self.fc1(self.ln2(x))) * mask)
        return out


class TinyTransformer(nn.Module):
    """A 2-block, 64-wide transformer: classifier (``forward``) and LM (``lm``)."""

    def __init__(
        self,
        vocab: int = textcls.VOCAB_SIZE,
        seq_len: int = textcls.SEQ_LEN,
        num_classes: int = textcls.NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, DIM)
        self.position = nn.Parameter(torch.randn(seq_len, DIM) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(DIM)
        self.lm_head = nn.Linear(DIM, vocab)
        self.head = nn.Linear(DIM, num_classes)

    def features(self, tokens: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """The final hidden states, one per token."""
        if tokens.is_floating_point():
            raise ValueError(
                "FedSpine's transformer reads token ids (int64), got a float tensor;"
                " run it on a text dataset (workload dataset: text)"
            )
        x = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, causal)
        out: torch.Tensor = self.norm(x)
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(tokens).mean(1))
        return out

    def lm(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits (causal attention), for pre-training."""
        out: torch.Tensor = self.lm_head(self.features(tokens, causal=True))
        return out


def lora_layers(model: TinyTransformer) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def trainable_keys(model: nn.Module) -> list[str]:
    """What fine-tuning trains and the server aggregates: LoRA slots and head."""
    return [
        k for k, _ in model.named_parameters() if "lora_" in k or k.startswith("head.")
    ]


def set_rank(model: TinyTransformer, rank: int) -> None:
    """Activate the first ``rank`` LoRA slots of every layer."""
    if not 1 <= rank <= LORA_SLOTS:
        raise ValueError(f"LoRA rank must be in 1..{LORA_SLOTS}, got {rank}")
    for layer in lora_layers(model):
        mask: torch.Tensor = layer.rank_mask  # type: ignore[assignment]
        mask.copy_((torch.arange(LORA_SLOTS) < rank).float())


def channel_importance(model: TinyTransformer) -> list[torch.Tensor]:
    """Per block, each MLP channel's |W1 row| * |W2 column| (effective weights)."""
    out = []
    with torch.no_grad():
        for block in model.blocks:
            w1 = block.fc1.base.weight + block.fc1.delta()  # type: ignore[union-attr,operator]
            w2 = block.fc2.base.weight + block.fc2.delta()  # type: ignore[union-attr,operator]
            out.append(w1.norm(dim=1) * w2.norm(dim=0))
    return out


def channel_masks(model: TinyTransformer, ratio: float) -> list[torch.Tensor]:
    """Per block, the MLP channels kept at pruning ``ratio`` (most important)."""
    if not 0 <= ratio < 1:
        raise ValueError(f"pruning ratio must be in [0, 1), got {ratio}")
    masks = []
    for importance in channel_importance(model):
        keep = HIDDEN - round(ratio * HIDDEN)
        mask = torch.zeros(HIDDEN, dtype=torch.bool)
        mask[torch.argsort(importance, descending=True, stable=True)[:keep]] = True
        masks.append(mask)
    return masks


def prune(model: TinyTransformer, ratio: float) -> list[torch.Tensor]:
    """Apply :func:`channel_masks` at ``ratio`` to ``model``; return the masks."""
    masks = channel_masks(model, ratio)
    for block, mask in zip(model.blocks, masks, strict=True):
        block.channel_mask.copy_(mask.float())  # type: ignore[operator]
    return masks


def coverage(model: TinyTransformer, rank: int, masks: Sequence[torch.Tensor]) -> State:
    """Per trainable key: 1 where a device at ``rank`` with ``masks`` can learn."""
    slots = (torch.arange(LORA_SLOTS) < rank).float()
    out: State = {}
    for key, value in model.named_parameters():
        if key not in trainable_keys(model):
            continue
        cov = torch.ones_like(value)
        if key.endswith("lora_a"):
            cov = cov * slots[:, None]
        elif key.endswith("lora_b"):
            cov = cov * slots[None, :]
        if ".fc1.lora_b" in key or ".fc2.lora_a" in key:
            block = int(key.split(".")[1])
            kept = masks[block].float()
            cov = cov * (kept[:, None] if ".fc1." in key else kept[None, :])
        out[key] = cov
    return out


def lora_numel(rank: int) -> int:
    """Trainable numbers a device at ``rank`` sends (LoRA slots + head)."""
    per_block = rank * (DIM + 3 * DIM) + rank * 2 * DIM + rank * (DIM + HIDDEN) * 2
    return LAYERS * per_block + (DIM + 1) * textcls.NUM_CLASSES


def work_per_example(ratio: float, rank: int, seq_len: int = textcls.SEQ_LEN) -> float:
    """Multiply-adds of one training example (forward + backward ~ 3x forward).

    Attention projections and the kept MLP channels, plus the LoRA paths; the
    pruned channels cost nothing. The bench's device time is this times the
    examples, divided by the device's speed.
    """
    kept = HIDDEN - round(ratio * HIDDEN)
    dense = 4 * DIM * DIM + 2 * DIM * kept + 2 * seq_len * DIM
    low_rank = rank * (DIM + 3 * DIM + 2 * DIM + DIM + kept + kept + DIM)
    return 3.0 * seq_len * LAYERS * (dense + low_rank)


def freeze_base(model: nn.Module) -> list[nn.Parameter]:
    """Freeze everything but the LoRA slots and the head; return the trainable."""
    keys = set(trainable_keys(model))
    params = []
    for key, p in model.named_parameters():
        p.requires_grad_(key in keys)
        if key in keys:
            params.append(p)
    return params
