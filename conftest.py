"""pytest setup shared by the unit tests (tests/) and nbval (notebooks/).

Every test session writes results, figures and papermill outputs into a temporary folder,
never into the tracked tree, and turns progress bars off (nbval compares outputs).  The
notebook kernels nbval starts inherit these variables.
"""

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="reprolib-tests-"))
for _var, _sub in (("REPROLIB_RESULTS", "results"), ("REPROLIB_FIGURES", "figures"),
                   ("REPROLIB_RUNS", "runs")):
    os.environ[_var] = str(_TMP / _sub)
os.environ["NBVAL"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each (and for the notebook
    # kernels they start), or the BLAS/OpenMP pools oversubscribe the cores many times over.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test (timings and profiles of small models are
    steadier and two xdist workers do not oversubscribe the cores), restored after."""
    import torch

    was = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(was)


@pytest.fixture
def cifar10_subset() -> str:
    """The dataset spec of the real CIFAR-10 subset; skips when the file is absent."""
    from reprolib import data

    try:
        data.cifar10_subset_file(build=False)
    except data.ReprolibError as e:
        pytest.skip(f"real CIFAR-10 subset not available: {e}")
    return data.CIFAR10_SUBSET
