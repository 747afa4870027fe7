"""reprolib.nbclean: what a committed notebook keeps and what it refuses."""

import json

from reprolib.tools import nbclean


def _nb(tmp_path, counts, text="ok\n"):
    cells = [{"cell_type": "code", "execution_count": c, "id": f"x{i}",
              "metadata": {"tags": ["parameters"] if i == 0 else [], "execution": {"t": 1}},
              "outputs": [{"output_type": "stream", "name": "stdout", "text": text,
                           "metadata": {"a": 1}}], "source": "print(1)"}
             for i, c in enumerate(counts)]
    nb = {"cells": cells, "metadata": {"papermill": {"duration": 3}, "kernelspec": {}},
          "nbformat": 4, "nbformat_minor": 4}
    p = tmp_path / "n.ipynb"
    p.write_text(json.dumps(nb))
    return p


def test_clean_keeps_outputs_and_tags_drops_bookkeeping(tmp_path):
    p = _nb(tmp_path, [1, 2, 3])
    assert nbclean.clean(p) == []
    nb = json.loads(p.read_text())
    assert "papermill" not in nb["metadata"] and nb["nbformat_minor"] == 5
    c0 = nb["cells"][0]
    assert c0["metadata"] == {"tags": ["parameters"]} and c0["id"] == "cell-00"
    assert c0["outputs"][0]["text"] == "ok\n"


def test_clean_reports_out_of_order_runs_and_machine_paths(tmp_path):
    assert any("out of order" in m for m in nbclean.clean(_nb(tmp_path, [1, 3, 2])))
    assert any("absolute path" in m for m in nbclean.clean(_nb(tmp_path, [1], "/home/me/x\n")))
    assert nbclean.main([str(_nb(tmp_path, [2, 1]))]) == 1
