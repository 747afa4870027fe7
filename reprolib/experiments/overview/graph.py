"""The overview's stages: one ``export-<case>`` per entry of ``cfg.export_cases``, each case
a compressed model some paper's pipeline describes (``Pipeline.export_cases``).

A paper's export case is ``{"label": str, "settings": fn(cfg) -> dict, "build": fn(scale,
seed=0, **settings) -> (model, input_size), "about": fn(cfg) -> dict (optional)}``:
``settings`` are the overview config's values the model depends on beyond its scale (they
enter the stage's key and are passed to ``build``), ``about`` adds what the record should say
of where the model came from.  :func:`build_case` builds a case as the export stage does.
"""

from __future__ import annotations

import inspect
import time

from reprolib.core.measure import count_flops
from reprolib.core.pipeline import Stage, key_of
from reprolib.errors import ReprolibError, choose


def export_cases() -> dict[str, tuple[str, dict]]:
    """``{case: (paper, its export case)}`` of every paper's pipeline
    (``reprolib.experiments.pipelines``), in the order of
    ``reprolib.configs.overview.EXPORT_CASES``, then any other case in notebook order."""
    from reprolib.configs.overview import EXPORT_CASES
    from reprolib.experiments import pipelines

    out = {}
    for name, p in pipelines().items():
        for case, spec in p.export_cases().items():
            out.setdefault(case, (name, spec))
    rank = {c: i for i, c in enumerate(EXPORT_CASES)}
    return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _case(case: str, cases: dict | None = None) -> tuple[str, dict]:
    cases = export_cases() if cases is None else cases
    choose("export case", case, cases)
    return cases[case]


def _build(spec: dict, scale: str, seed: int, settings: dict):
    """``spec``'s model at ``scale``, then BatchNorm statistics calibrated on random images
    (so that an untrained model's outputs have a trained one's scale) and eval mode."""
    from reprolib.core.export import calibrate_batchnorm

    model, size = spec["build"](scale, seed=seed, **settings)
    size = tuple(size)
    calibrate_batchnorm(model, size, seed=seed)
    return model.eval(), size


def build_case(case: str, scale: str = "tiny", *, seed: int = 0, **settings):
    """The compressed model of export case ``case`` at ``scale`` (``tiny`` / ``cifar`` /
    ``paper``), with seeded random weights (and scores) and calibrated BatchNorm statistics,
    as its export stage builds it.  ``settings``: the case's own (``prune_ratio``,
    ``vtp_rate``, ``rank_ratio``, ``template``, ``template_width``, ``nas_cell``: the keywords
    of its builder); those only other cases take are ignored, so one set serves every case.
    Returns ``(model, input_size)``."""
    from reprolib.configs.overview import SCALES

    cases = export_cases()
    _, spec = _case(case, cases)
    choose("scale", scale, SCALES)
    known = {k for _, s in cases.values() for k in inspect.signature(s["build"]).parameters}
    bad = sorted(set(settings) - known)
    if bad:
        raise ReprolibError(f"build_case: unknown setting {bad[0]!r}; the cases take "
                            f"{', '.join(sorted(known - {'scale', 'seed'}))}")
    own = inspect.signature(spec["build"]).parameters
    return _build(spec, scale, seed, {k: v for k, v in settings.items() if k in own})


def export_stage(cfg, case: str, spec: dict) -> Stage:
    """``export-<case>``: the case's model at ``cfg.scale`` (:func:`build_case`), exported
    with ``reprolib.export.export_check`` at ``cfg.opset``; the record holds the parity with
    PyTorch, the file's weights and whether tied weights stayed one initializer."""
    settings = spec["settings"](cfg)
    about = spec["about"](cfg) if "about" in spec else {}

    def fn(stage: Stage) -> dict:
        from reprolib.core.export import export_check

        model, size = _build(spec, cfg.scale, stage.seed, settings)
        t0 = time.perf_counter()
        out = export_check(model, stage.ckpt_dir / f"{case}.onnx", size, opset=cfg.opset)
        ties = out.pop("ties")
        built = getattr(model, "reprolib_spec", {})
        return {**out, "case": case, "builder": built.get("builder", ""),
                "input_size": list(size), "export_s": round(time.perf_counter() - t0, 2),
                "flops": count_flops(model, size), "tied_weights": len(ties["copies"]),
                "tied_names": ties["tied"], "tied_copies": ties["copies"],
                "ties_kept": ties["stay_tied"], **about}

    key = key_of(cfg, "scale", "opset", case=case, **settings)
    return Stage(cfg, f"export-{case}", key, fn, group="export",
                 note="a compressed model with random weights exported to ONNX and through "
                      "torch.export, compared with PyTorch")


def declare(cfg, g) -> None:
    """One ``export-<case>`` stage (role ``export``, tags ``case``, ``method`` = the paper)
    per entry of ``cfg.export_cases``."""
    from reprolib.configs.overview import EXPORT_CASES, SCALES

    choose("scale", cfg.scale, SCALES)
    cases = export_cases()
    for c in cfg.export_cases:
        choose("export case", c, EXPORT_CASES)
        if c not in cases:
            raise ReprolibError(f"export case {c!r}: no paper's pipeline builds it "
                                "(Pipeline.export_cases)")
        paper, spec = cases[c]
        g.add(export_stage(cfg, c, spec), role="export", case=c, method=paper)
