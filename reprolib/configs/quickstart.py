"""Quickstart: train two widths of a small CNN, measure them, record, tabulate and plot."""

from dataclasses import dataclass

from reprolib.configs import BaseConfig, register_paper


@dataclass
class QuickstartConfig(BaseConfig):
    model: str = "small_cnn"          # registered model name
    widths: tuple = (0.25, 1.0)       # width multipliers to train
    epochs: int = 3                   # training epochs per width
    batch_size: int = 128             # training batch size
    lr: float = 0.05                  # SGD peak learning rate (cosine schedule)
    weight_decay: float = 5e-4        # SGD weight decay
    latency_batch: int = 1            # batch size of the latency measurement


register_paper(
    "quickstart", "End-to-end tour: train, measure, record, tabulate, plot", QuickstartConfig,
    presets={
        "smoke": {"image_size": 16, "widths": (0.25, 0.5)},
        "cpu": {"dataset": "npz:../shared/data/cifar10_subset.npz", "widths": (0.25, 0.5, 1.0),
                "epochs": 15},
        "gpu": {"dataset": "cifar10", "widths": (0.25, 0.5, 1.0, 2.0), "epochs": 30,
                "batch_size": 256, "lr": 0.1},
    },
)
