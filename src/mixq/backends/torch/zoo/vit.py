"""A small Vision Transformer written out by hand, for tests of attention quantization.

Attention is explicit matmuls (``q @ k^T``, ``attn @ v``) with separate ``q``, ``k`` and ``v`` Linear
layers, so each matmul and projection is a quantizable op; ``nn.MultiheadAttention`` and
``scaled_dot_product_attention`` would hide them. No data-dependent control flow: ``torch.fx`` traces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """Sizes of the model; ``image_size`` must be a multiple of ``patch`` and ``dim`` of ``heads``."""

    num_classes: int = 10
    image_size: int = 32
    patch: int = 4
    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    channels: int = 3

    def __post_init__(self) -> None:
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1


class Attention(nn.Module):
    """Multi-head self-attention as explicit matmuls."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, heads, N, head_dim)."""
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2)
        return self.proj(out.reshape(out.shape[0], out.shape[1], self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned position embedding, blocks, head on the class token."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv2d(config.channels, config.dim, config.patch, stride=config.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.tokens, config.dim))
        self.blocks = nn.Sequential(*[Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def tiny_vit(num_classes: int = 10, image_size: int = 32, patch: int = 4, dim: int = 64, depth: int = 2,
             heads: int = 4, seed: int = 0) -> VisionTransformer:
    """A randomly initialized ViT, the same for the same arguments (the global RNG is left untouched).

    Expects normalized input (zero mean), as real ViTs do; on raw [0, 1] pixels its random weights give
    nearly the same output for every image.
    """
    config = ViTConfig(num_classes, image_size, patch, dim, depth, heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionTransformer(config)
        with torch.no_grad():
            nn.init.normal_(model.cls_token, std=0.02)
            nn.init.normal_(model.pos_embed, std=0.02)
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                    nn.init.zeros_(module.bias)  # as in ViT; random biases would swamp the input's effect
                elif isinstance(module, nn.LayerNorm):  # a non-trivial scale, so folding bugs show in tests
                    module.weight.uniform_(0.5, 1.5)
                    nn.init.zeros_(module.bias)
    return model.eval()
