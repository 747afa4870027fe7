"""fit's progress bars in a Jupyter kernel: drawn into a display output that is emptied when
an epoch's bar closes, so JupyterLab keeps no empty stderr strip per epoch."""

import os

import pytest


@pytest.mark.slow
def test_bars_in_a_kernel_leave_no_stderr_output(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    from reprolib import paths
    from reprolib.tools.runner import _ipc_kernel_manager

    for var in ("NBVAL", "CI", "REPROLIB_NO_PROGRESS"):     # bars on, as in JupyterLab
        monkeypatch.delenv(var, raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from reprolib.configs import TrainConfig\n"
        "from reprolib.data import get_data\n"
        "from reprolib.registry import create_model\n"
        "from reprolib.train import fit\n"
        "r = fit(create_model('test_small_cnn', num_classes=10), get_data('digits', 8, 64),\n"
        "        TrainConfig(epochs=2), desc='t')\n"
        "print('epochs', r.epochs)")]
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={
        "metadata": {"path": str(paths.ROOT)}}, kernel_manager_class=_ipc_kernel_manager(),
    ).execute()
    outs = nb.cells[0].outputs
    assert not [o for o in outs if o.output_type == "stream" and o.name == "stderr"], outs
    bars = [o for o in outs if o.output_type == "display_data"]
    assert len(bars) == 2                                    # one per epoch, each emptied
    assert all(o.data["text/plain"] == "" for o in bars)
    assert any(o.output_type == "stream" and "epochs 2" in o.text for o in outs)


def test_the_bar_is_plain_tqdm_outside_a_kernel(capsys):
    from reprolib.core.progress import in_notebook, tqdm

    assert not in_notebook()
    for _ in tqdm(range(3), leave=False):
        pass
    assert "\r" in capsys.readouterr().err
