"""PE (Koyun & Töreyin 2024, ``../shared/papers/pe.md``): the paper's own counting analysis.

The layers are in :mod:`reprolib.models.pe` (eq. 1-2, 4 for ViT-PE; eq. 6-9 for ResNet50-PE).
This module holds what is algorithmic about the paper's claims, with no data, training or
plotting:

* :func:`vit_param_count` / :func:`resnet_param_count`: parameters in closed form (a tied
  weight counts once), equal to ``reprolib.measure.count_params`` of the built models (tested);
* :data:`SHARING_RULES`, :func:`sharing_rule_name`, :func:`sharing_verdict`: which reading of
  the ResNet sharing rule (eq. 6 alone, + one ``W`` per stage, + one 3x3 kernel per stage)
  and which classifier width reproduce the printed ResNet50-PE¹ / PE² parameter counts.

The measured tables (timm / torchvision baselines beside the printed numbers) and the
training pipeline are in :mod:`reprolib.experiments.pe`.
"""

from __future__ import annotations

from typing import Iterable, Sequence

# ------------------------------------------------------------------------ closed-form counts


def vit_param_count(embed_dim: int = 384, depth: int = 12, mlp_ratio: float = 4.0,
                    num_classes: int = 1000, img_size: int = 224, patch_size: int = 16,
                    in_chans: int = 3, pe: bool = True) -> int:
    """Parameters of a class-token ViT (timm layout, biases everywhere) in closed form.

    Per block: attention ``2 d^2 + 4 d`` with eq. (1)-(2) (``4 d^2 + 4 d`` plain), FFN
    ``r d^2 + r d + d`` with eq. (4) (``2 r d^2 + r d + d`` plain), two LayerNorms ``4 d``.
    Arguments as in :func:`reprolib.models.pe.vit_pe` (d = embed_dim, r = mlp_ratio).
    """
    d, h = embed_dim, int(embed_dim * mlp_ratio)
    attn = (2 if pe else 4) * d * d + 4 * d
    ffn = (1 if pe else 2) * h * d + h + d
    tokens = (img_size // patch_size) ** 2 + 1
    embed = in_chans * patch_size ** 2 * d + d + d + tokens * d   # patch conv, cls, pos
    head = 2 * d + d * num_classes + num_classes                  # final norm, classifier
    return embed + depth * (attn + ffn + 4 * d) + head


def resnet_param_count(num_classes: int = 1000, layers: Sequence[int] = (3, 4, 6, 3),
                       base: int = 64, small_stem: bool = False, pe_stages: Sequence[int] = (),
                       share_1x1: bool = True, share_3x3: bool = True) -> int:
    """Parameters of a torchvision bottleneck ResNet with eq. (6)-(9) in closed form.

    Stage k (width ``w = base 2^(k-1)``, ``n`` blocks, input ``c``): first block
    ``c w + 9 w^2 + 4 w^2 + 4 c w`` (with projection shortcut) + BN; the other ``n - 1``
    blocks ``17 w^2`` each, or with PE: ``4 w^2`` per distinct ``W`` (1 if share_1x1 else
    ``n - 1``) + ``9 w^2`` per distinct 3x3 kernel (1 if share_3x3 else ``n - 1``); BN
    ``12 w`` per block always.  Arguments as in :func:`reprolib.models.pe.resnet_bottleneck`.
    """
    stem = 3 * base * (9 if small_stem else 49) + 2 * base
    total, c = stem, base
    for k, n in enumerate(layers):
        w = base * 2 ** k
        first = c * w + 9 * w * w + 4 * w * w + c * 4 * w + 2 * (6 * w) + 2 * 4 * w
        rest_bn = (n - 1) * 2 * 6 * w
        if (k + 1) in pe_stages and n > 1:
            rest = (1 if share_1x1 else n - 1) * 4 * w * w + (1 if share_3x3 else n - 1) * 9 * w * w
        else:
            rest = (n - 1) * 17 * w * w
        total += first + rest + rest_bn
        c = 4 * w
    return total + c * num_classes + num_classes


# ------------------------------------------------------------------ the ResNet sharing rule

#: The readings of eq. (6)-(9) for the tied blocks of a stage, as (share_1x1, share_3x3):
#: eq. (6) alone (W / W^T tied inside each block), + the 3x3 kernel shared across the stage,
#: + one W per stage, both (what ``reprolib.models.pe.resnet50_pe`` builds by default).
SHARING_RULES: tuple[tuple[bool, bool], ...] = ((False, False), (False, True), (True, False),
                                                (True, True))


def sharing_rule_name(share_1x1: bool, share_3x3: bool) -> str:
    """Words for one rule of :data:`SHARING_RULES`."""
    return {(False, False): "W tied inside each block only",
            (False, True): "one 3x3 kernel per stage",
            (True, False): "one W per stage",
            (True, True): "one W and one 3x3 kernel per stage"}[(bool(share_1x1), bool(share_3x3))]


def sharing_verdict(rows: Iterable[dict], printed_pe1: float, printed_pe2: float,
                    ndigits: int = 1) -> dict:
    """Which sharing rule and classifier width reproduce the printed ResNet50-PE counts.

    rows: one dict per (rule, classifier width) with ``share_1x1``, ``share_3x3``,
        ``num_classes``, ``PE1_params_M``, ``PE2_params_M`` (parameters in millions of
        ResNet50-PE¹ = PE in stages 1-4 and PE² = stages 3-4), as
        ``reprolib.experiments.pe.resnet_sharing_table`` measures them.
    printed_pe1 / printed_pe2: the paper's counts (M).  ndigits: the printed precision; a
        count matches when it rounds to the printed number.
    Returns ``{"pe1": rows matching PE¹, "pe2": rows matching PE², "both": rows matching
    both, "gap_rule": the row whose PE² - PE¹ difference is closest to the printed one
    (the difference does not depend on the classifier), "printed_gap": that difference}``.
    """
    rows = list(rows)
    hit = lambda v, p: round(float(v), ndigits) == round(float(p), ndigits)   # noqa: E731
    pe1 = [r for r in rows if hit(r["PE1_params_M"], printed_pe1)]
    pe2 = [r for r in rows if hit(r["PE2_params_M"], printed_pe2)]
    gap = printed_pe2 - printed_pe1
    gap_rule = min(rows, key=lambda r: abs(r["PE2_params_M"] - r["PE1_params_M"] - gap),
                   default=None)
    return {"pe1": pe1, "pe2": pe2, "both": [r for r in pe1 if r in pe2],
            "gap_rule": gap_rule, "printed_gap": gap}
