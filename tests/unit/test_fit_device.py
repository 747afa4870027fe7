"""fit / evaluate move every batch to the model's device (issue 16): a loader built for another
device (the templates grid's CPU loaders feeding a CUDA model) can no longer mismatch."""

import dataclasses

import torch
import torch.nn as nn

from reprolib.configs import TrainConfig
from reprolib.core.train import evaluate, fit


class _Elsewhere:
    """Stands for a batch tensor on another device: ``.device`` is not the model's, and
    ``.to(device)`` returns the real tensor there (and counts the move)."""

    moves: list = []

    def __init__(self, t: torch.Tensor, device: str = "meta"):
        self.t, self.device = t, torch.device(device)

    def to(self, device, non_blocking=False):
        _Elsewhere.moves.append(torch.device(device))
        return self.t.to(device)


class _Loader:
    def __init__(self, batches, wrap: bool):
        self.batches, self.wrap = batches, wrap

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for x, y in self.batches:
            yield (_Elsewhere(x), _Elsewhere(y)) if self.wrap else (x, y)


@dataclasses.dataclass
class _Data:
    train: object
    test: object
    num_classes: int = 3
    val: object = None


def _batches(n=2, b=4):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(b, 5, generator=g), torch.randint(0, 3, (b,), generator=g))
            for _ in range(n)]


def test_fit_moves_batches_from_another_device_to_the_model():
    _Elsewhere.moves.clear()
    model = nn.Linear(5, 3)
    data = _Data(_Loader(_batches(), wrap=True), _Loader(_batches(1), wrap=True))
    res = fit(model, data, TrainConfig(epochs=1, batch_size=4, lr=0.1, progress=False),
              device="cpu")
    # 2 train batches + 1 test batch, x and y each, all moved to the model's device
    assert _Elsewhere.moves == [torch.device("cpu")] * 6
    assert res.epochs == 1 and 0 <= res.acc <= 100


def test_batches_already_on_the_device_are_not_copied(monkeypatch):
    calls = []
    real_to = torch.Tensor.to

    def spy(self, *a, **k):
        calls.append(a)
        return real_to(self, *a, **k)

    model = nn.Linear(5, 3)
    data = _Data(_Loader(_batches(), wrap=False), _Loader(_batches(1), wrap=False))
    monkeypatch.setattr(torch.Tensor, "to", spy)
    ev = evaluate(model, data.test, "cpu")
    assert ev["acc"] >= 0
    assert not [a for a in calls if a and isinstance(a[0], (str, torch.device))]
