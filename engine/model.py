"""The LVM: a compact LLaMA-style decoder over visual tokens.

Architecture as in LLaMA (RMSNorm before each sub-layer, rotary positions, SwiGLU MLP, no biases,
optional grouped-query attention). Parameter names follow Hugging Face `LlamaForCausalLM`
(`model.embed_tokens`, `model.layers.N.self_attn.q_proj`, ..., `model.norm`, `lm_head`), so a public
LLaMA-shaped checkpoint can be converted to this module, and this module to that one.

The forward signature carries the KV cache explicitly (in and out) because that is what the ONNX export
and the ONNX Runtime decode loop use: no Python branching on tensor values, only on whether a cache is given.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

KeyValue = tuple[torch.Tensor, torch.Tensor]  # (k, v), each (B, n_kv_heads, P, head_dim)


@dataclass
class LVMConfig:
    vocab_size: int = 1032  # codebook codes + specials (BOS, EOS), padded up to a multiple of 8
    context_length: int = 640  # longest sentence the model is trained on (rotary works beyond it, untrained)
    n_layer: int = 8  # transformer blocks
    d_model: int = 384  # residual stream width
    n_head: int = 6  # query heads; head_dim = d_model // n_head
    n_kv_head: int = 6  # key/value heads (< n_head: grouped-query attention, smaller KV cache)
    ffn_hidden: int = 1024  # SwiGLU hidden width (LLaMA uses ~8/3 * d_model, rounded)
    rope_theta: float = 10000.0  # rotary base frequency
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = False  # untied by default, as in LLaMA and the public LVM checkpoints
    init_std: float = 0.02  # std of the normal weight init
    # Tokens per panel for learned absolute panel positions: an embedding per cell of the panel's code grid and
    # one per panel index, added to the token embedding. Rotary positions alone tell a token how far back another
    # lies, not where in its own panel it sits, which a flip or a shift needs. 0: rotary only (LLaMA layout).
    panel_tokens: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not divisible by n_kv_head {self.n_kv_head}")
        if (self.d_model // self.n_head) % 2:
            raise ValueError(f"head_dim {self.d_model // self.n_head} must be even for rotary positions")
        for name in ("vocab_size", "context_length", "n_layer", "ffn_hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.panel_tokens < 0:
            raise ValueError(f"panel_tokens must be 0 (off) or positive, got {self.panel_tokens}")

    @property
    def max_panels(self) -> int:
        """Panel indices with their own embedding (the context's panels; later ones share the last)."""
        return max(1, -(-(self.context_length - 1) // self.panel_tokens)) if self.panel_tokens else 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LVMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown LVMConfig fields: {', '.join(sorted(unknown))}")
        return cls(**values)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32 (as LLaMA does) so bf16 autocast does not lose the small variances
        x_float = x.float()
        x_float = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x_float.type_as(x)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions computed on the fly (any position, no fixed table to outgrow)."""

    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
        self.register_buffer("inv_freq", 1.0 / (config.rope_theta**exponents), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.float()[:, None] * self.inv_freq[None, :]  # (T, head_dim/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, head_dim), HF "rotate_half" layout
        return angles.cos(), angles.sin()


def panel_cells(positions: torch.Tensor, config: LVMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(cell within the panel, panel index) of sentence positions; BOS (position 0) counts as the first cell.

    Images start at position 1 and each takes panel_tokens positions (engine.serving.sentences), so both follow from
    the position alone; the exported graphs compute them the same way from their position ids.
    """
    offset = (positions - 1).clamp(min=0)
    return offset % config.panel_tokens, (offset // config.panel_tokens).clamp(max=config.max_panels - 1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, head_dim); cos/sin: (T, head_dim)
    return (x * cos + rotate_half(x) * sin).type_as(x)


def attention_mask(new_len: int, past_len: torch.Tensor | int, device: torch.device) -> torch.Tensor:
    """Boolean (T, P+T) mask: every past position is visible, the new tokens are causal among themselves."""
    total = past_len + new_len
    query_positions = torch.arange(new_len, device=device)[:, None] + past_len  # (T, 1)
    key_positions = torch.arange(total, device=device)[None, :]  # (1, P+T)
    return key_positions <= query_positions


class Attention(nn.Module):
    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.d_model, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.d_model, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.d_model, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KeyValue | None
    ) -> tuple[torch.Tensor, KeyValue]:
        batch, new_len, _ = x.shape
        q = self.q_proj(x).view(batch, new_len, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(batch, new_len, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, KV, T, hd)
        v = self.v_proj(x).view(batch, new_len, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if past is not None:
            k = torch.cat((past[0].to(k.dtype), k), dim=2)  # (B, KV, P+T, hd)
            v = torch.cat((past[1].to(v.dtype), v), dim=2)
        present = (k, v)
        k, v = self._repeat_kv(k), self._repeat_kv(v)
        if past is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fused causal kernel for training
        else:
            mask = attention_mask(new_len, past[0].shape[2], x.device)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, new_len, self.n_head * self.head_dim)  # (B, T, C)
        return self.o_proj(out), present

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        """(B, KV, S, hd) -> (B, H, S, hd); plain tensor ops so every exporter understands them."""
        repeats = self.n_head // self.n_kv_head
        if repeats == 1:
            return x
        batch, kv_heads, length, head_dim = x.shape
        x = x[:, :, None, :, :].expand(batch, kv_heads, repeats, length, head_dim)
        return x.reshape(batch, kv_heads * repeats, length, head_dim)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, past: KeyValue | None
    ) -> tuple[torch.Tensor, KeyValue]:
        attended, present = self.self_attn(self.input_layernorm(x), cos, sin, past)
        x = x + attended
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, present


class Backbone(nn.Module):
    """The `model.` part of LlamaForCausalLM: embeddings, blocks, final norm."""

    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.rotary = RotaryEmbedding(config)
        if config.panel_tokens:
            self.panel_cell_embed = nn.Embedding(config.panel_tokens, config.d_model)
            self.panel_index_embed = nn.Embedding(config.max_panels, config.d_model)
            # the context's (cell, panel) ids, looked up by slicing: Inductor cannot bound `%` and `//` on a
            # dynamic length ("vr must not be None"), so torch.compile failed with panel positions
            cell, panel = panel_cells(torch.arange(config.context_length), config)
            self.register_buffer("panel_ids", torch.stack((cell, panel)), persistent=False)

    def panel_embedding(self, start: int, length: int, config: LVMConfig) -> torch.Tensor:
        """The learned (cell + panel index) embedding of sentence positions start .. start + length - 1."""
        if start + length <= self.panel_ids.shape[1]:
            cell, panel = self.panel_ids[:, start:start + length]
        else:  # past the context (a cached decode beyond it): computed, not looked up
            cell, panel = panel_cells(torch.arange(length, device=self.panel_ids.device) + start, config)
        return self.panel_cell_embed(cell) + self.panel_index_embed(panel)


class LVM(nn.Module):
    def __init__(self, config: LVMConfig) -> None:
        super().__init__()
        self.config = config
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2 style: shrink the residual output projections by depth so the stream starts near unit variance
        for name, parameter in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(parameter, mean=0.0, std=config.init_std / math.sqrt(2 * config.n_layer))
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if config.panel_tokens:  # start as the rotary-only model would; training grows them
            nn.init.zeros_(self.model.panel_cell_embed.weight)
            nn.init.zeros_(self.model.panel_index_embed.weight)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())

    def forward(
        self, input_ids: torch.Tensor, past_key_values: list[KeyValue] | None = None
    ) -> tuple[torch.Tensor, list[KeyValue]]:
        """input_ids (B, T) -> logits (B, T, V) and the cache (k, v) per layer, each (B, KV, P+T, head_dim).

        Positions are P + arange(T), where P is the cached length (0 without a cache).
        """
        if past_key_values is not None and len(past_key_values) != self.config.n_layer:
            raise ValueError(f"expected {self.config.n_layer} cached layers, got {len(past_key_values)}")
        new_len = input_ids.shape[1]
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        positions = torch.arange(new_len, device=input_ids.device) + past_len  # (T,)
        cos, sin = self.model.rotary(positions)
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        if self.config.panel_tokens:
            x = x + self.model.panel_embedding(past_len, new_len, self.config)
        presents = []
        for index, layer in enumerate(self.model.layers):
            past = None if past_key_values is None else past_key_values[index]
            x, present = layer(x, cos, sin, past)
            presents.append(present)
        logits = self.lm_head(self.model.norm(x))  # (B, T, V)
        return logits, presents

    def empty_cache(
        self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> list[KeyValue]:
        """A zero-length cache, e.g. to prefill through the same cached path that ONNX uses."""
        shape = (batch, self.config.n_kv_head, 0, self.config.head_dim)
        return [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                for _ in range(self.config.n_layer)]


def deepen(model: LVM, new_layers: int) -> LVM:
    """`model` with `new_layers` more blocks spread evenly through its depth, computing exactly what it did.

    Each new block is a copy of the block before it with its two residual output projections (o_proj, down_proj)
    at zero, so it adds nothing until training moves them: a trained model grows without losing what it knows.
    The grown model shares the original's blocks (it is built to be trained in its place).
    """
    if new_layers < 0:
        raise ValueError(f"new_layers must be 0 or more, got {new_layers}")
    if new_layers == 0:
        return model
    old = list(model.model.layers)
    after = {-(-(index + 1) * len(old) // (new_layers + 1)) - 1 for index in range(new_layers)}  # ceil: >= 0
    if len(after) < new_layers:
        raise ValueError(f"cannot spread {new_layers} new blocks among {len(old)}")
    grown = LVM(replace(model.config, n_layer=len(old) + new_layers))
    grown.load_state_dict(model.state_dict(), strict=False)  # embeddings, final norm, head, panel positions
    layers = []
    for index, block in enumerate(old):
        layers.append(block)
        if index in after:
            copy = Block(model.config)
            copy.load_state_dict(block.state_dict())
            nn.init.zeros_(copy.self_attn.o_proj.weight)
            nn.init.zeros_(copy.mlp.down_proj.weight)
            layers.append(copy)
    grown.model.layers = nn.ModuleList(layers)
    return grown


def model_checkpoint(model: LVM, half: bool = False) -> dict[str, Any]:
    """Weights plus the config they were built from (the `lvm_config`/`model` keys every checkpoint shares)."""
    model = getattr(model, "module", model)  # unwrap DDP
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    state = {name: (t.half() if half and t.is_floating_point() else t).detach().cpu()
             for name, t in model.state_dict().items()}
    return {"lvm_config": model.config.to_dict(), "model": state}


def save_model(model: LVM, path: str | Path, half: bool = False) -> None:
    torch.save(model_checkpoint(model, half=half), Path(path))


def model_from_checkpoint(checkpoint: dict[str, Any]) -> LVM:
    """Build an fp32 LVM from any checkpoint holding `lvm_config` and `model` (training or weights-only)."""
    for key in ("lvm_config", "model"):
        if key not in checkpoint:
            raise ValueError(f"not an LVM checkpoint: missing {key!r} (keys: {', '.join(checkpoint)})")
    model = LVM(LVMConfig.from_dict(checkpoint["lvm_config"]))
    state = {name: t.float() if t.is_floating_point() else t for name, t in checkpoint["model"].items()}
    model.load_state_dict(state)
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> LVM:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LVM checkpoint not found: {path}")
    return model_from_checkpoint(torch.load(path, map_location=map_location, weights_only=True))
