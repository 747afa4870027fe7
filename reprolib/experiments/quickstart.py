"""Quickstart pipeline: one stage per width of a small CNN (train + measure), a table and
an accuracy-vs-params plot from the records.  The smallest example of a paper on the engine
(:mod:`reprolib.core.pipeline`): a :class:`Pipeline` whose :meth:`declare` adds one stage per
width, and tables / figures / summary read back from the records."""

from __future__ import annotations

import pandas as pd

from reprolib.core import report
from reprolib.core.pipeline import (ModelSpec, Pipeline, Stage, key_of, load_data,
                                    register_pipeline, resources, train_and_measure, training)
from reprolib.core.registry import create_model
from reprolib.data.catalog import num_classes


class Quickstart(Pipeline):
    name = "quickstart"
    readme_figure = "acc_vs_params"

    def declare(self, cfg, g) -> None:
        """One stage per width: ``<model>-w<width>``."""
        for w in cfg.widths:
            g.add(width_stage(cfg, float(w)), role="width", width=float(w))

    def tables(self, cfg) -> dict[str, pd.DataFrame]:
        """``widths``: width, params (M), MFLOPs, CPU latency (ms, batch ``latency_batch``),
        test accuracy (%), epochs."""
        df = self.frame(cfg)
        df.attrs["caption"] = (f"Quickstart: {cfg.model} widths ({df.attrs['provenance']}); "
                               f"{report.FLOPS_NOTE}; latency: batch {cfg.latency_batch}, CPU")
        return {"widths": df}

    def figures(self, cfg) -> dict:
        """``acc_vs_params``: test accuracy vs parameters over the widths, one marker per
        trained width labelled with its multiplier (one seed, so no error bars)."""
        import matplotlib.pyplot as plt

        df = self.frame(cfg)
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ep = "/".join(str(int(e)) for e in sorted(set(df["epochs"])))
        ax.plot(df["params_M"], df["acc"], marker="o", ms=6, lw=1.5, color="C0",
                label=f"{cfg.model}, {ep} epochs, seed {cfg.seed} (one run per width)")
        for x, y, w in zip(df["params_M"], df["acc"], df["width"]):
            ax.annotate(f"width {w:g}", (x, y), xytext=(5, -11), textcoords="offset points",
                        fontsize=7, color="C0")
        ax.set(xlabel="parameters (M)", ylabel="test accuracy (%)")
        ax.margins(x=0.15, y=0.15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(df.attrs["provenance"], fontsize=8)
        fig.tight_layout()
        return {"acc_vs_params": fig}

    def summary(self, cfg) -> str:
        """One paragraph with the accuracy and size of every width, from the records."""
        df = self.frame(cfg)
        ep = int(df["epochs"].iloc[0])
        ws = " / ".join(f"{w:g}" for w in df["width"])
        accs = " / ".join(f"{a:.1f}" for a in df["acc"])
        ps = " / ".join(f"{p:.3f}" for p in df["params_M"])
        return (f"`reprolib run quickstart --profile {cfg.profile}`: {cfg.model} at widths "
                f"{ws}, {ep} epochs on `{cfg.dataset}` ({df.attrs['provenance']}): {accs} % "
                f"top-1 at {ps} M parameters (`figures/quickstart/widths-{cfg.profile}.md`).")

    def frame(self, cfg) -> pd.DataFrame:
        """One row per width, from the records (``attrs["provenance"]``)."""
        recs = self.records(cfg, "width")
        rows = [{"width": r["config"]["width"], "params_M": r["metrics"]["params"] / 1e6,
                 "MFLOPs": r["metrics"]["flops"] / 1e6, "latency_ms": r["metrics"]["latency_ms"],
                 "acc": r["metrics"]["acc"], "epochs": r["metrics"]["epochs"]}
                for r in recs.values()]
        df = pd.DataFrame(rows).sort_values("width").reset_index(drop=True)
        df.attrs["provenance"] = report.provenance(cfg, pd.DataFrame(list(recs.values())))
        return df


def width_stage(cfg, width: float) -> Stage:
    """``cfg.model`` at ``width``, trained with the ``train`` recipe and measured."""
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.train)      # the recipe: its batch and augmentation
        model = create_model(cfg.model, num_classes=data.num_classes, width=width)
        metrics = train_and_measure(model, data, cfg.train, stage.ckpt_dir, device=cfg.device,
                                    desc=f"width {width:g}", latency_batch=cfg.latency_batch)
        stage.save_model(model)
        return metrics

    key = key_of(cfg, "dataset", "image_size", "model", "train", "latency_batch", width=width)
    return Stage(cfg, f"{cfg.model}-w{width}", key, fn, group="width",
                 model=ModelSpec(cfg.model, {"num_classes": num_classes(cfg.dataset),
                                             "width": width},
                                 (3, cfg.image_size, cfg.image_size)),
                 train=training(cfg, "train"), resources=resources(cfg))


PIPELINE = register_pipeline(Quickstart())
stages, run, tables, figures, summary, claims = PIPELINE.api()
