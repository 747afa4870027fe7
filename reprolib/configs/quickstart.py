"""Quickstart: train a few widths of a small CNN, measure them, record, tabulate and plot."""

from dataclasses import dataclass

from reprolib.configs import (BaseConfig, TrainConfig, check_each, check_model, check_number,
                              recipe, register_paper)


@dataclass
class QuickstartConfig(BaseConfig):
    model: str = "small_cnn"          # registered model name
    widths: tuple = (0.25, 1.0)       # width multipliers to train, one record each
    train: TrainConfig = recipe(epochs=3, batch_size=128, optimizer="sgd", lr=0.05,
                                weight_decay=5e-4, schedule="cosine")  # SGD, cosine schedule
    latency_batch: int = 1            # batch size of the latency measurement

    def check(self) -> None:
        super().check()
        check_model("model", self.model)
        check_each("widths", self.widths, lambda k, w: check_number(k, w, 0, lo_open=True))
        check_number("train.epochs", self.train.epochs, 1, integer=True)
        check_number("latency_batch", self.latency_batch, 1, integer=True)


register_paper(
    "quickstart", "Quickstart: train, measure, record, tabulate, plot", QuickstartConfig,
    presets={
        "smoke": {"image_size": 16, "widths": (0.25, 0.5)},
        "cpu": {"dataset": "cifar10_subset", "widths": (0.25, 0.5, 1.0),
                "train.epochs": 15},
        "gpu": {"dataset": "cifar10", "widths": (0.25, 0.5, 1.0, 2.0), "train.epochs": 30,
                "train.batch_size": 256, "train.lr": 0.1},
    },
    order=0,
)
