"""MetaFormer-S12 with a choice of token mixer, including the searched DAG mixer of
MetaFormer-NAS (Zhang & Liu, "基于 MetaFormer 的高效神经架构搜索", paper in
``../shared/papers/metaformer_nas.md``).

The backbone is PoolFormer-S12-like (Yu et al., "MetaFormer is Actually What You Need"):

    X = InputEmb(EarlyConv(I))                      (eq. 2: 3x3 conv + BN, then patch embedding)
    Y = TokenMixer(Norm(X)) + X                     (eq. 3)
    Z = Channel_MLP(Norm(Y)) + Y                    (eq. 4)

four stages of depths [2, 2, 6, 2], dims [64, 128, 320, 512], MLP ratio 4, GroupNorm (one
group), layer scale 1e-5, and a patch embedding that gives 16 x 16 tokens at 224 px (token
grids 16, 8, 4, 2).  The blocks are timm's ``MetaFormerBlock`` with PoolFormer-v1 settings.

Token mixers (``mixer=``):

* ``"pooling"``   -- PoolFormer pooling, AvgPool3x3(x) - x (timm's ``Pooling``);
* ``"mlp"``       -- spatial MLP over the token axis (H*W -> H*W/2 -> H*W, GELU);
* ``"attention"`` -- multi-head self-attention over all spatial positions with a
  sinusoidal absolute position encoding (Bottleneck-Transformer style, paper §3.1);
* an architecture (``Architecture``, its JSON dict, a JSON string or a path to a JSON
  file) -- the searched DAG mixer of §3.1 / figure 5:

      u   = SpatialMLP_a(MHSA(x)) + SpatialMLP_b(x)      (attention fused at the entrance, fig. 4)
      k_1 = op_1(u W_1)
      k_i = op_i(k_j W_{j,i})    for the predecessor j < i the controller chose
      z   = mean of k_i over the nodes with no successor

  where every W is a spatial MLP and op is identity or pooling.  A searched model builds
  only the edges its architecture uses (it is physically that architecture); the search's
  shared model (``DAGMixer(arch=None)``) holds every edge W_{j,i} and runs whichever
  architecture is set with ``MetaFormer.set_arch``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import reprolib  # noqa: F401  (torchvision shim before timm)
from timm.layers import trunc_normal_
from timm.models.metaformer import Downsampling, GroupNorm1, MetaFormerBlock, Pooling

from reprolib.errors import ReprolibError
from reprolib.core.registry import register_model, set_spec

OPS = ("identity", "pooling")          # the parameter-free node operations of the DAG
BASE_MIXERS = ("pooling", "mlp", "attention")


# --------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Architecture:
    """A DAG token mixer: ``nodes[i-1] = (prev, op)`` for node i = 1..N.

    ``prev`` is the predecessor node (0 = the mixer entrance, allowed only for node 1, and
    the only choice there), ``op`` one of ``OPS``.  The paper's figure 5 example is
    ``[(0, "identity"), (1, "pooling"), (1, "identity"), (3, "pooling")]``.
    """

    nodes: tuple[tuple[int, str], ...]

    def __post_init__(self):
        nodes = tuple((int(p), str(o)) for p, o in self.nodes)
        object.__setattr__(self, "nodes", nodes)
        if not nodes:
            raise ReprolibError("an architecture needs at least one node")
        for i, (p, o) in enumerate(nodes, start=1):
            if o not in OPS:
                raise ReprolibError(f"node {i}: unknown op {o!r}; valid ops: {', '.join(OPS)}")
            lo, hi = (0, 0) if i == 1 else (1, i - 1)
            if not lo <= p <= hi:
                raise ReprolibError(f"node {i}: predecessor {p} is outside [{lo}, {hi}]")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def edges(self) -> list[tuple[int, int]]:
        """The (j, i) edges used: W_{j,i} feeds node i from node j (j = 0: the entrance)."""
        return [(p, i) for i, (p, _) in enumerate(self.nodes, start=1)]

    @property
    def leaves(self) -> list[int]:
        """Nodes with no successor; their outputs are averaged into the mixer output."""
        used = {p for p, _ in self.nodes}
        return [i for i in range(1, self.n_nodes + 1) if i not in used]

    def to_json(self) -> dict:
        return {"n_nodes": self.n_nodes, "nodes": [[p, o] for p, o in self.nodes]}

    def __str__(self) -> str:
        return " ".join(f"({p},{'pool' if o == 'pooling' else 'id'})" for p, o in self.nodes)

    @classmethod
    def parse(cls, spec) -> "Architecture":
        """An ``Architecture`` from itself, its JSON dict, a JSON string, a path to a JSON
        file, or a list of ``(prev, op)`` pairs (op may also be 0 = identity, 1 = pooling)."""
        if isinstance(spec, Architecture):
            return spec
        if isinstance(spec, (str, os.PathLike)):
            s = str(spec).strip()
            if s.startswith("{") or s.startswith("["):
                try:
                    spec = json.loads(s)
                except ValueError as e:
                    raise ReprolibError(
                        f"cannot read an architecture from {s[:80]!r}: {e}") from None
            else:
                from reprolib.paths import resolve
                path = resolve(s)
                if not path.exists():
                    raise ReprolibError(
                        f"unknown mixer {s!r}; valid mixers: {', '.join(BASE_MIXERS)} or a "
                        "searched architecture (dict, JSON string or path to a JSON file)")
                from reprolib.core.io import load_json
                spec = load_json(path, "architecture file")
        if isinstance(spec, dict):
            if "nodes" not in spec:
                raise ReprolibError("an architecture dict needs a 'nodes' list of [prev, op]")
            nodes = spec["nodes"]
            if "n_nodes" in spec and int(spec["n_nodes"]) != len(nodes):
                raise ReprolibError(f"n_nodes={spec['n_nodes']} but {len(nodes)} nodes given")
        else:
            nodes = spec
        try:
            pairs = [(p, OPS[o] if isinstance(o, int) else o) for p, o in nodes]
        except (TypeError, ValueError, IndexError) as e:
            raise ReprolibError(f"cannot read an architecture from {spec!r}: {e}") from None
        return cls(tuple(pairs))


def save_architecture(arch, path) -> Path:
    """Write ``arch`` (anything ``Architecture.parse`` reads) as JSON to ``path`` (atomic)."""
    from reprolib.core import io

    return io.write_json(Architecture.parse(arch).to_json(), path)


def load_architecture(path) -> Architecture:
    """Read an architecture saved by ``save_architecture``."""
    return Architecture.parse(Path(path))


# --------------------------------------------------------------------------- token mixers
class SpatialMLP(nn.Module):
    """Token-mixing MLP over the H*W axis, shared by all channels (MLP-Mixer style).

    ``grid``: (H, W) token grid it is built for; ``hidden_ratio`` (default 0.5): hidden
    width as a fraction of the number of tokens H*W.
    """

    def __init__(self, grid: tuple[int, int], hidden_ratio: float = 0.5):
        super().__init__()
        n = grid[0] * grid[1]
        hidden = max(1, int(n * hidden_ratio))
        self.fc1 = nn.Linear(n, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, n)

    def forward(self, x):
        b, c, h, w = x.shape
        return self.fc2(self.act(self.fc1(x.reshape(b, c, h * w)))).reshape(b, c, h, w)


def sinusoidal_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine absolute position encoding, shape (h*w, dim): half of the
    channels encode the row, half the column (Transformer frequencies 1/10000^(2k/d))."""
    half = max(2, dim // 2)
    def enc(n, d):
        pos = torch.arange(n, dtype=torch.float32)[:, None]
        k = torch.arange((d + 1) // 2, dtype=torch.float32)
        ang = pos / (10000.0 ** (2 * k / d))
        return torch.stack([ang.sin(), ang.cos()], -1).reshape(n, -1)[:, :d]
    rows, cols = enc(h, half), enc(w, dim - half if dim > half else half)
    pe = torch.cat([rows[:, None, :].expand(h, w, -1), cols[None, :, :].expand(h, w, -1)], -1)
    return pe.reshape(h * w, -1)[:, :dim]


class SpatialAttention(nn.Module):
    """Multi-head self-attention over all spatial positions (each position is a token),
    with a fixed sinusoidal absolute position encoding added to the keys' logits as in the
    Bottleneck Transformer: logits = q (k + p)^T / sqrt(d_head).

    ``dim``: channels; ``grid``: token grid (H, W); ``heads`` (default 4): attention heads,
    each of width dim / heads.
    """

    def __init__(self, dim: int, grid: tuple[int, int], heads: int = 4):
        super().__init__()
        heads = max(1, min(heads, dim))
        while dim % heads:
            heads -= 1
        self.heads, self.dh = heads, dim // heads
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.register_buffer("pos", sinusoidal_2d(grid[0], grid[1], self.dh), persistent=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, self.dh, h * w).transpose(-1, -2).unbind(1)
        k = k + self.pos.to(k.dtype)
        out = F.scaled_dot_product_attention(q, k, v)          # (b, heads, hw, dh)
        return self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class DAGMixer(nn.Module):
    """The searched token mixer of MetaFormer-NAS (paper §3.1, figures 4-5).

    ``dim``: channels; ``grid``: token grid (H, W); ``arch``: a fixed ``Architecture``
    (only its N edges are built) or ``None`` for the search's shared model, which holds
    W_1 and every W_{j,i}, 1 <= j < i <= ``n_nodes`` (1 + N(N-1)/2 spatial MLPs), and runs
    the architecture last given to ``set_arch``.  ``use_attention`` (default True): fuse
    self-attention at the entrance; ``heads`` (default 4) its heads.
    """

    def __init__(self, dim: int, grid: tuple[int, int], arch: Architecture | None = None,
                 n_nodes: int | None = None, use_attention: bool = True, heads: int = 4,
                 **_):
        super().__init__()
        if arch is None and not n_nodes:
            raise ReprolibError("DAGMixer needs an architecture or n_nodes for a shared model")
        self.n_nodes = arch.n_nodes if arch is not None else int(n_nodes)
        self.fixed = arch is not None
        self.arch = arch
        self.attn = SpatialAttention(dim, grid, heads) if use_attention else None
        self.entrance_attn = SpatialMLP(grid) if use_attention else None
        self.entrance_x = SpatialMLP(grid)
        edges = arch.edges if arch is not None else \
            [(0, 1)] + [(j, i) for i in range(2, self.n_nodes + 1) for j in range(1, i)]
        self.edges = nn.ModuleDict({f"{j}_{i}": SpatialMLP(grid) for j, i in edges})
        self.pool = Pooling(3)

    def set_arch(self, arch: Architecture) -> None:
        if arch.n_nodes != self.n_nodes or (self.fixed and arch != self.arch):
            raise ReprolibError(f"this mixer runs {self.n_nodes}-node architectures"
                                + (f" ({self.arch} only)" if self.fixed else ""))
        self.arch = arch

    def forward(self, x):
        arch = self.arch
        if arch is None:
            raise RuntimeError("shared DAGMixer: call set_arch(...) before forward")
        u = self.entrance_x(x)
        if self.attn is not None:
            u = u + self.entrance_attn(self.attn(x))
        k = [u]                                         # k[0]: the entrance, k[i]: node i
        for i, (p, op) in enumerate(arch.nodes, start=1):
            h = self.edges[f"{p}_{i}"](k[p])
            k.append(self.pool(h) if op == "pooling" else h)
        leaves = arch.leaves
        return sum(k[i] for i in leaves) / len(leaves)


def _mixer_factory(mixer, grid, heads):
    """A callable ``(dim, **kw) -> nn.Module`` for ``MetaFormerBlock`` and the arch (or None)."""
    if isinstance(mixer, str) and mixer in BASE_MIXERS:
        if mixer == "pooling":
            return (lambda dim, **kw: Pooling(3)), None
        if mixer == "mlp":
            return (lambda dim, **kw: SpatialMLP(grid)), None
        return (lambda dim, **kw: SpatialAttention(dim, grid, heads)), None
    if isinstance(mixer, dict) and "shared" in mixer:   # the search's shared model
        n = int(mixer["shared"])
        return (lambda dim, **kw: DAGMixer(dim, grid, None, n, heads=heads)), None
    arch = Architecture.parse(_mixer_arg(mixer))
    return (lambda dim, **kw: DAGMixer(dim, grid, arch, heads=heads)), arch


# --------------------------------------------------------------------------- the backbone
class MetaFormer(nn.Module):
    """PoolFormer-like MetaFormer with an early convolution (paper eq. 2-4).

    ``mixer``: a name in ``BASE_MIXERS``, a searched architecture, or ``{"shared": N}`` for
    the search's shared-weight model.  ``image_size``: input resolution (the spatial MLPs
    and position encodings are built for its token grid).  ``patch_size``: stride of the
    input patch embedding (image_size / patch_size tokens per side).  ``depths``/``dims``:
    blocks and channels per stage.  ``stem_channels``: output channels of the early 3x3
    convolution.  ``mlp_ratio``: channel-MLP hidden width / dim.  ``heads``: attention
    heads.  ``drop_path_rate``: stochastic depth at the last block.
    ``layer_scale_init_value`` (default 1e-5, PoolFormer's and the paper's value): initial
    per-channel scale of both residual branches (token mixer and channel MLP) of every block;
    short CPU runs use a larger one so the mixer branch matters within a few epochs.
    """

    def __init__(self, mixer="pooling", num_classes: int = 1000, image_size: int = 224,
                 patch_size: int = 14, depths=(2, 2, 6, 2), dims=(64, 128, 320, 512),
                 stem_channels: int = 32, mlp_ratio: float = 4.0, heads: int = 4,
                 drop_path_rate: float = 0.0, layer_scale_init_value: float = 1e-5):
        super().__init__()
        if mlp_ratio != 4.0:
            raise ReprolibError("timm's MetaFormerBlock uses an MLP ratio of 4")
        if image_size % patch_size:
            raise ReprolibError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        self.early_conv = nn.Sequential(nn.Conv2d(3, stem_channels, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(stem_channels))
        self.patch_embed = Downsampling(stem_channels, dims[0], kernel_size=patch_size,
                                        stride=patch_size)
        g = image_size // patch_size
        total, done = sum(depths), 0
        stages, self.grids, self.arch = [], [], None
        for s, (depth, dim) in enumerate(zip(depths, dims)):
            if s > 0:
                stages.append(Downsampling(dims[s - 1], dim, kernel_size=3, stride=2, padding=1))
                g = (g - 1) // 2 + 1
            self.grids.append(g)
            make, self.arch = _mixer_factory(mixer, (g, g), heads)
            for _ in range(depth):
                dpr = drop_path_rate * done / max(1, total - 1)
                stages.append(MetaFormerBlock(
                    dim, token_mixer=make, mlp_act=nn.GELU, mlp_bias=True, norm_layer=GroupNorm1,
                    drop_path=dpr, layer_scale_init_value=layer_scale_init_value))
                done += 1
        self.stages = nn.Sequential(*stages)
        self.norm = GroupNorm1(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.num_classes = num_classes
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_arch(self, arch) -> "MetaFormer":
        """Run ``arch`` in every DAG mixer (every stage uses the same sampled cell)."""
        arch = Architecture.parse(arch)
        for m in self.modules():
            if isinstance(m, DAGMixer):
                m.set_arch(arch)
        self.arch = arch
        return self

    def forward_features(self, x):
        return self.stages(self.patch_embed(self.early_conv(x)))

    def forward(self, x):
        x = self.norm(self.forward_features(x))
        return self.head(x.mean((-2, -1)))


def _mixer_arg(mixer):
    if isinstance(mixer, str) and mixer.strip()[:1] not in "{[" and mixer not in BASE_MIXERS \
            and not mixer.endswith(".json") and not os.path.exists(mixer):
        raise ReprolibError(f"unknown mixer {mixer!r}; valid mixers: {', '.join(BASE_MIXERS)} "
                            "or a searched architecture (dict, JSON string or path to JSON)")
    return mixer


def _mixer_spec(model: "MetaFormer", mixer):
    """The ``mixer`` argument as JSON data for the model's spec: a base mixer's name,
    ``{"shared": N}``, or the architecture's JSON (never a path, so a saved model does not
    depend on the file it was built from)."""
    if isinstance(mixer, str) and mixer in BASE_MIXERS:
        return mixer
    if isinstance(mixer, dict) and "shared" in mixer:
        return {"shared": int(mixer["shared"])}
    return model.arch.to_json()


def _build(builder: str, mixer, num_classes: int, image_size: int, kw: dict, defaults: dict):
    """A ``MetaFormer`` from a builder's arguments; its spec records the architecture as
    data (``reprolib.save_compressed`` writes it; ``load_compressed`` rebuilds it)."""
    model = MetaFormer(_mixer_arg(mixer), num_classes, image_size, **{**defaults, **kw})
    return set_spec(model, builder, {"mixer": _mixer_spec(model, mixer),
                                     "num_classes": num_classes, "image_size": image_size, **kw})


@register_model(paper="metaformer_nas")
def metaformer_s12(mixer="pooling", num_classes: int = 1000, image_size: int = 224, **kw):
    """MetaFormer-S12 of the paper: depths [2, 2, 6, 2], dims [64, 128, 320, 512], 16 x 16
    tokens (patch size image_size / 16; 14 at 224 px).  ``mixer``: "pooling" | "mlp" |
    "attention" | a searched architecture (dict, JSON string or path)."""
    return _build("metaformer_s12", mixer, num_classes, image_size, kw,
                  {"patch_size": max(1, image_size // 16)})


@register_model(paper="metaformer_nas")
def metaformer_tiny(mixer="pooling", num_classes: int = 10, image_size: int = 32, **kw):
    """A small MetaFormer for 32 px CPU runs: depths [1, 1, 2, 1], dims [16, 32, 64, 96],
    stem 16 channels, patch 4 -> 8 x 8 tokens at 32 px (grids 8, 4, 2, 1).  ``patch_size=2``
    gives the paper's 16 x 16 grid at about 3x the CPU time of the DAG mixer."""
    return _build("metaformer_tiny", mixer, num_classes, image_size, kw,
                  {"depths": (1, 1, 2, 1), "dims": (16, 32, 64, 96), "stem_channels": 16,
                   "patch_size": max(1, image_size // 8)})


@register_model(paper="metaformer_nas")
def test_metaformer(mixer="pooling", num_classes: int = 10, image_size: int = 16, **kw):
    """Unit-test size: one block per stage, dims [8, 8, 16, 16], 8 x 8 tokens at 16 px."""
    return _build("test_metaformer", mixer, num_classes, image_size, kw,
                  {"depths": (1, 1, 1, 1), "dims": (8, 8, 16, 16), "stem_channels": 8,
                   "patch_size": max(1, image_size // 8)})
