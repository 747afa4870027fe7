"""Config and profiles of ``reprolib bench`` (``reprolib.tools.bench``): what the benchmark
measures and how.  A tool's config (``notebook=False``): registered like a paper's, so
``get_config("bench", "cpu", repeats=5)``, ``reprolib list bench`` and ``reprolib graph bench``
treat it alike, but no notebook runs it.

Each family of a dense parent and its compressed models comes from that paper's pipeline
(``Pipeline.bench_families``), sized by the ``<group>_*`` fields below; ``fit_*`` size the
benchmark's own loop comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprolib.configs import _typecheck, check_fields, choose, ranged, register_paper
from reprolib.errors import ReprolibError
from reprolib.configs.templates import TEMPLATES

#: Precisions a variant may name.
PRECISIONS = ("fp32", "bf16")
#: Runtimes a variant is timed in: the PyTorch module as it is ("eager"), through
#: ``torch.compile`` ("compile", inductor) or exported to ONNX and run by ONNX Runtime
#: ("ort": fp32, CPUExecutionProvider, inference only).
RUNTIMES = ("eager", "compile", "ort")
#: The families, in the order their stages run: one per paper's group, and ``fit`` (the
#: benchmark's own loop comparison).
GROUPS = ("sidt", "vtp", "fit", "pe", "metaformer", "templates")
#: How the Torch-Pruning peer ranks channels: per group ("uniform") or over all ("global").
PEER_SCOPES = ("uniform", "global")
#: The template CNNs of the ``templates`` family.
TEMPLATE_MODELS = ("vgg19_cifar", "resnet50_cifar", "googlenet_cifar", "mobilenet_cifar")
__all__ = ["BenchConfig", "PRECISIONS", "RUNTIMES", "GROUPS", "PEER_SCOPES", "TEMPLATES", "TEMPLATE_MODELS", "PRESETS",
           "parse_variant"]

_BATCH = {"ge": 1, "le": 1 << 16}


def parse_variant(variant: str) -> dict:
    """``"bf16+cl+compile"`` -> ``{"precision": "bf16", "channels_last": True,
    "compile": True, "runtime": "compile"}``; the precision comes first, then any of ``cl``,
    ``compile`` and ``ort``.

    ``runtime`` (one of :data:`RUNTIMES`) says what runs the model: "eager" (default),
    "compile" (torch.compile, the same as ``compile`` True) or "ort" (``"fp32+ort"``: the
    model exported to ONNX and timed under ONNX Runtime's CPUExecutionProvider).  ORT is
    timed at fp32 on the exported NCHW graph only, so ``ort`` beside ``bf16``, ``cl`` or
    ``compile`` is an error rather than an option that would silently do nothing.
    """
    parts = str(variant).split("+")
    choose("precision", parts[0], PRECISIONS)
    opts = parts[1:]
    for p in opts:
        choose("variant option", p, ("cl", "compile", "ort"))
    if "ort" in opts and (parts[0] != "fp32" or len(set(opts)) > 1):
        raise ReprolibError(
            f"variant {variant!r}: ONNX Runtime is timed at fp32 on the exported graph, "
            "without bf16, cl or compile; valid combinations: fp32+ort, or a precision "
            f"({', '.join(PRECISIONS)}) followed by any of +cl and +compile")
    runtime = "ort" if "ort" in opts else "compile" if "compile" in opts else "eager"
    return {"precision": parts[0], "channels_last": "cl" in opts,
            "compile": "compile" in opts, "runtime": runtime}


@dataclass
class BenchConfig:
    """What ``reprolib bench`` measures, and how; profiles in :data:`PRESETS`."""

    profile: str = "smoke"            # the preset these values came from (set by get_config)
    seed: int = ranged(0, ge=0, le=2**63 - 1)  # weights and scores of the benchmarked models
    device: str = ranged("auto", device=True)  # "auto" (cuda when available), "cpu" or "cuda"
    variants: tuple = ("fp32",)       # each: precision [+cl] [+compile], e.g. "bf16+cl+compile"
    threads: int = ranged(0, ge=0, le=1 << 16)  # torch intra-op threads; 0 = torch's default
    #                                   (all cores)
    groups: tuple = GROUPS            # families to run (GROUPS)
    round_to: tuple = ranged((1, 8), ge=1, integer=True, each=True)  # SiDT / VTP widths and
    #                                   decomposition ranks rounded to
    warmup: int = ranged(2, ge=0, le=1 << 16)  # untimed rounds before timing (compile happens
    #                                   here)
    repeats: int = ranged(9, ge=1, le=1 << 30)  # timed rounds at batch 1 (median kept)
    large_repeats: int = ranged(3, ge=1, le=1 << 30)  # timed rounds at the large batch
    train_repeats: int = ranged(3, ge=1, le=1 << 30)  # timed training steps per model
    sidt_model: str = "swin_t"        # SiDT's Swin (paper: Swin-T, 100 classes, 224 px)
    sidt_classes: int = 100           # its classifier width
    sidt_size: int = 224              # its input side (pixels)
    sidt_ratios: tuple = ranged((0.2, 0.4, 0.6, 0.8), gt=0, lt=1, each=True)  # pruning ratios
    #                                   (paper's Table I)
    sidt_scope: str = ranged("global", choices=("global", "layer"))  # SiDT ranking: "global"
    #                                   or "layer"
    sidt_batch: int = ranged(64, **_BATCH)  # large inference batch
    sidt_train_batch: int = ranged(8, **_BATCH)  # training-step batch
    vtp_model: str = "vit_cifar"      # the code book's ViT (paper size: dim 512, depth 6)
    vtp_patch: int = 4                # its patch size
    vtp_rate: float = ranged(0.5, ge=0, lt=1)  # VTP pruning rate (fraction of all scores)
    vtp_rank_ratio: float = ranged(0.25, gt=0, le=1)  # decomposition rank / min(out, in)
    vtp_methods: tuple = ("svd", "qr", "lu")  # decompositions of the pruned ViT
    vtp_timed: bool = False           # also the first method with the layers kept dense whose
    #                                   factors are not faster when timed at the large batch
    vtp_batch: int = ranged(64, **_BATCH)  # large inference batch
    vtp_train_batch: int = ranged(32, **_BATCH)  # training-step batch
    pe_pairs: tuple = (("vit_small", "vit_pe_small"), ("resnet50", "resnet50_pe"),
                       ("resnet50", "resnet50_pe:3,4"))  # (dense, PE); ":3,4" = pe_stages
    pe_classes: int = 1000            # classifier width of the PE models and their parents
    pe_size: int = 224                # their input side (pixels)
    pe_batch: int = ranged(16, **_BATCH)  # large inference batch
    pe_train_batch: int = ranged(4, **_BATCH)  # training-step batch
    metaformer_model: str = "metaformer_s12"  # the MetaFormer the searched cells go into
    metaformer_classes: int = 100     # its classifier width
    metaformer_size: int = 224        # its input side (pixels)
    metaformer_cells: str = "cpu"     # metaformer_nas profile whose searched cells are used
    #                                   ("" = the paper's figure-5 cell)
    metaformer_batch: int = ranged(64, **_BATCH)  # large inference batch
    metaformer_train_batch: int = ranged(16, **_BATCH)  # training-step batch
    templates_models: tuple = TEMPLATE_MODELS  # the template CNNs (TEMPLATE_MODELS)
    templates_width: float = ranged(0.25, gt=0, le=16)  # width multiplier (paper: 1.0; CPU
    #                                   budget)
    templates_batch: int = ranged(64, **_BATCH)  # large inference batch
    templates_train_batch: int = ranged(16, **_BATCH)  # training-step batch
    # the peer (issue 26): Torch-Pruning (the optional ``bench`` extra) pruning each family's dense
    # parent to the FLOPs of each of its compressed models (within 2 %), magnitude importance
    peer_scopes: tuple = ranged((), choices=PEER_SCOPES, each=True, empty=True)  # "uniform"
    #                                   (every group loses the same fraction) and / or
    #                                   "global" (one ranking); () = no peer
    peer_groups: tuple = ranged(("sidt", "vtp"), choices=GROUPS, each=True, empty=True)  #
    #                                   the families that get peers
    variant_groups: tuple = ranged((), choices=GROUPS, each=True, empty=True)  # the groups
    #                                   timed under every variant; the others under the first
    #                                   only; () = every group under every variant
    compile_groups: tuple = ranged((), choices=GROUPS, each=True, empty=True)  # under a
    #                                   +compile variant only these groups (() = as
    #                                   variant_groups): compiling is minutes per model on a CPU
    op_profiles: tuple = ()           # ((group, (label, ...)), ...): per-operator profiles
    #                                   (reprolib.tools.bench.ops) of these cases of the
    #                                   group's family at its large batch, the dense first
    fit_models: tuple = ("small_cnn",)  # models of the loop comparison
    fit_dataset: str = "cifar10_subset"  # its data set
    data_root: str | None = None      # torchvision data sets live / download here (default
    #                                   data/)
    fit_images: int = ranged(1024, ge=1, le=1 << 30)  # training images per timed epoch
    fit_batch: int = ranged(128, **_BATCH)  # its batch
    fit_repeats: int = ranged(3, ge=1, le=1 << 30)  # interleaved rounds of (fit, bare,
    #                                   code-book)
    fit_workers: int = 2              # DataLoader workers of the code-book loop

    def __post_init__(self):
        _typecheck(self)
        self.check()

    def check(self) -> None:
        """Every field's rule, the variants and the groups."""
        check_fields(self)
        for v in self.variants:
            parse_variant(v)
        for g in self.groups:
            choose("benchmark group", g, GROUPS)


#: Profiles: ``smoke`` (tiny models, seconds: tests), ``cpu`` (the papers' sizes where a
#: 2-core CPU allows, ~30 min), ``gpu`` (paper sizes, batch 256, fp32 / bf16 / channels_last
#: / compile).
PRESETS: dict[str, dict] = {
    "smoke": dict(
        device="cpu", warmup=1, repeats=3, large_repeats=2, train_repeats=2,
        sidt_model="swin_tiny_test", sidt_classes=10, sidt_size=32, sidt_ratios=(0.4,),
        sidt_batch=8, sidt_train_batch=8,
        vtp_model="test_vit_cifar", vtp_batch=8, vtp_train_batch=8, vtp_methods=("svd",),
        pe_pairs=(("vit_test_unshared", "vit_pe_test"),
                  ("resnet_test_unshared", "resnet_pe_test")),
        pe_classes=10, pe_size=32, pe_batch=8, pe_train_batch=8,
        metaformer_model="test_metaformer", metaformer_classes=10, metaformer_size=16,
        metaformer_cells="", metaformer_batch=8, metaformer_train_batch=8,
        templates_models=("vgg19_cifar_tiny", "mobilenet_cifar_tiny"), templates_width=0.25,
        templates_batch=8, templates_train_batch=8,
        fit_models=("test_small_cnn",), fit_dataset="digits", fit_images=256, fit_batch=64,
        fit_repeats=2, fit_workers=0),
    # the defaults: the large inference batch is 64 where the targets are stated (SiDT,
    # VTP) and for the cheap families, 16 for the 4.1-4.6 GMAC PE models; training steps at
    # 4-32 images.
    # The SiDT and VTP families are also timed under ONNX Runtime and torch.compile, each
    # beside Torch-Pruning at every compressed model's FLOPs (uniform and global); SiDT's
    # large batch is 32 (25 Swin-T models in each runtime).  torch.compile for VTP only:
    # inductor compiled the 19 ViTs in 694 s here, and 25 Swin-T at 224 px would take hours
    # of the 2 cores (the gpu profile compiles every family).  vtp_timed stays off here: timed
    # alone on this CPU (2026-12-02, idle), every factored layer of VTP+SVD rt8 was faster than
    # its dense matmul at 65, 520 and 4,160 tokens, so the timed rule keeps none dense.
    "cpu": dict(device="cpu", variants=("fp32", "fp32+ort", "fp32+compile"),
                variant_groups=("sidt", "vtp"), compile_groups=("vtp",),
                peer_scopes=PEER_SCOPES, sidt_batch=32,
                op_profiles=(("sidt", ("dense", "SiDT 80% rt8", "TP global = SiDT 80% rt8")),
                             ("vtp", ("dense", "VTP 50% rt8", "VTP+SVD rt8",
                                      "TP global = VTP+SVD rt8")))),
    "gpu": dict(device="cuda", variants=("fp32", "bf16", "bf16+cl", "bf16+cl+compile"),
                peer_scopes=PEER_SCOPES, vtp_timed=True,
                warmup=5, repeats=30, large_repeats=20, train_repeats=20,
                sidt_batch=256, sidt_train_batch=128, vtp_batch=256, vtp_train_batch=256,
                pe_batch=256, pe_train_batch=128, metaformer_batch=256,
                metaformer_train_batch=128, templates_width=1.0, templates_batch=256,
                templates_train_batch=128, fit_dataset="cifar10_subset", fit_images=5085,
                fit_batch=256, fit_repeats=5, fit_workers=4),
}

register_paper("bench", "Benchmark: measured speedup vs FLOP reduction of every paper's "
               "compressed models; fit vs bare and code-book loops", BenchConfig,
               presets=PRESETS, order=100, notebook=False, pipeline="reprolib.tools.bench")
