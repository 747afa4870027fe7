"""Swin Transformer models for SiDT (Xue et al., "Searching Intrinsic Dimensions of Vision
Transformers", ../shared/papers/sidt.md), built with timm's ``SwinTransformer`` class.

No pretrained weights are loaded and nothing is downloaded: each builder calls
``timm.models.swin_transformer.SwinTransformer`` directly with the architecture arguments.

| name             | what                                                                 |
| ---------------- | -------------------------------------------------------------------- |
| ``swin_t``       | Swin-T = timm ``swin_tiny_patch4_window7_224`` (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, patch 4); 100 classes at 224 px: 27.60 M params, 4.49 G FLOPs (SiDT Table I baseline) |
| ``swin_cifar``   | Swin-T's layout (depths 2-2-6-2, heads 3-6-12-24, so the same layer names) scaled down for 32 px images (patch 2, window 4, embed 24, head_dim 8): the CPU profile |
| ``swin_tiny_test`` | the smallest Swin with shifted windows in two stages (embed 16, heads 1-2-4-8): unit tests and the smoke profile |
| ``swin_transformer`` | any timm ``SwinTransformer`` from its constructor arguments as JSON data: the builder of SiDT's scored and pruned models, so that a Swin made directly with timm can be saved and rebuilt too |
"""

from __future__ import annotations

from timm.models.swin_transformer import SwinTransformer

from reprolib.core.registry import register_model


def _swin(**kw) -> SwinTransformer:
    return SwinTransformer(**kw)


def _tuples(v):
    """JSON lists back to the tuples timm expects (nested: per-stage window sizes)."""
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


@register_model(paper="sidt")
def swin_transformer(**kw) -> SwinTransformer:
    """A timm ``SwinTransformer`` built from its constructor arguments, given as JSON data.

    Lists become tuples (``img_size``, ``depths``, ``num_heads``, per-stage ``head_dim``,
    ``window_size`` and ``mlp_ratio``); every other argument goes to timm unchanged.  A
    compressed model's JSON names this builder with the arguments read back from a Swin's
    modules (``reprolib.methods.sidt.swin_spec``), which is how any timm
    Swin, also one not made by ``create_model``, is rebuilt by ``reprolib.load_compressed``.

    Args:
        **kw: ``timm.models.swin_transformer.SwinTransformer`` arguments (timm's defaults for
            those left out: Swin-T at 224 px, 1000 classes).
    """
    return _swin(**{k: _tuples(v) for k, v in kw.items()})


@register_model(paper="sidt")
def swin_t(num_classes: int = 100, img_size: int = 224, drop_path_rate: float = 0.2,
           **kw) -> SwinTransformer:
    """Swin-T (timm ``swin_tiny_patch4_window7_224``), randomly initialised.

    Args:
        num_classes: classifier outputs (default 100: CIFAR-100 as in SiDT Table I).
        img_size: input resolution in pixels (default 224; CIFAR images are resized to it).
        drop_path_rate: stochastic-depth rate of the last block (default 0.2, Swin-T's).
        **kw: any other ``timm SwinTransformer`` argument.
    """
    return _swin(img_size=img_size, patch_size=4, window_size=7, embed_dim=96,
                 depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), num_classes=num_classes,
                 drop_path_rate=drop_path_rate, **kw)


@register_model(paper="sidt")
def swin_cifar(num_classes: int = 10, img_size: int = 32, embed_dim: int = 24,
               depths: tuple = (2, 2, 6, 2), num_heads: tuple = (3, 6, 12, 24),
               window_size: int = 4, patch_size: int = 2, drop_path_rate: float = 0.1,
               **kw) -> SwinTransformer:
    """Swin-T's layout scaled down for 32 px images, randomly initialised.  Its blocks have
    the same names as Swin-T's, so per-layer pruned widths transfer between the two.

    Args:
        num_classes: classifier outputs (default 10).
        img_size: input resolution in pixels (default 32).
        embed_dim: channels of stage 1, doubled at each later stage (default 24).
        depths: blocks per stage (default 2-2-6-2, as Swin-T).
        num_heads: attention heads per stage (default 3-6-12-24 as Swin-T, i.e. head_dim 8).
        window_size: attention window side in tokens (default 4).
        patch_size: patch side in pixels (default 2: a 16x16 token grid at 32 px).
        drop_path_rate: stochastic-depth rate of the last block (default 0.1).
        **kw: any other ``timm SwinTransformer`` argument.
    """
    return _swin(img_size=img_size, patch_size=patch_size, window_size=window_size,
                 embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(num_heads),
                 num_classes=num_classes, drop_path_rate=drop_path_rate, **kw)


@register_model(paper="sidt")
def swin_tiny_test(num_classes: int = 10, img_size: int = 32, **kw) -> SwinTransformer:
    """The smallest useful Swin (32 px, patch 2, window 4, embed 16, heads 1-2-4-8, head_dim
    16): stages 1 and 2 have shifted windows.  For unit tests and the smoke profile.

    Args:
        num_classes: classifier outputs (default 10).
        img_size: input resolution in pixels (default 32).
        **kw: any other ``swin_cifar`` / ``timm SwinTransformer`` argument.
    """
    kw = {"embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8),
          "drop_path_rate": 0.0, **kw}
    return swin_cifar(num_classes=num_classes, img_size=img_size, **kw)
