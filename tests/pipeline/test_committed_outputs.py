"""Every committed table and figure is what the code makes from the committed records, byte
for byte: regenerating a paper's ``cpu`` and ``evidence`` outputs (what ``reprolib run PAPER
--profile P`` saves, reusing every record) into a temporary ``REPROLIB_FIGURES`` gives the
files in ``figures/``, no more and no fewer, and reads the records without touching them.

Tables are text and compared byte for byte everywhere.  Figures are PNGs saved with fixed
metadata (``reprolib.core.report.PNG_METADATA``): with the matplotlib that
``requirements.lock`` pins (its bundled fonts and FreeType) the bytes repeat and are
compared; with another matplotlib the rendering may differ in anti-aliasing, so only the
image size is compared there (the test says so in its skip reason).  A failure means the
committed outputs are older than the code: regenerate them (README, "Results").
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from reprolib import paths

COMMITTED = paths.ROOT / "figures"
RECORDS = paths.ROOT / "results"
PROFILES = ("cpu", "evidence")


def _cases() -> list:
    from reprolib.configs import papers
    from reprolib.experiments import names

    out = []
    for paper in names():
        for profile in PROFILES:
            if profile in papers()[paper].presets and (RECORDS / paper / profile).is_dir():
                # the overview counts every printed architecture (~12 s on 2 cores)
                marks = [pytest.mark.slow] if paper == "overview" else []
                out.append(pytest.param(paper, profile, marks=marks, id=f"{paper}-{profile}"))
    return out


def locked_matplotlib() -> str | None:
    text = (paths.ROOT / "requirements.lock").read_text()
    m = re.search(r"^matplotlib==(\S+)", text, re.M)
    return m.group(1) if m else None


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def compare(made: dict[str, Path], committed: dict[str, Path]) -> list[str]:
    """The differences between two sets of outputs (``{name: path}``), one line each."""
    import matplotlib

    bytes_ok = matplotlib.__version__ == locked_matplotlib()
    problems = [f"{n}: committed, not made any more (remove it)" for n in committed
                if n not in made]
    problems += [f"{n}: made, not committed" for n in made if n not in committed]
    for n in sorted(set(made) & set(committed)):
        a, b = made[n].read_bytes(), committed[n].read_bytes()
        if a == b:
            continue
        if n.endswith(".png") and not bytes_ok:
            if png_size(a) != png_size(b):
                problems.append(f"{n}: {png_size(b)} px committed, {png_size(a)} px made")
            continue
        problems.append(f"{n}: differs from the committed file ({len(b)} bytes committed, "
                        f"{len(a)} made)")
    return problems


def _check_png_rule():
    import matplotlib

    if matplotlib.__version__ != locked_matplotlib():
        pytest.skip(f"matplotlib {matplotlib.__version__}, not the locked "
                    f"{locked_matplotlib()}: tables compared byte for byte, figures by size")


@pytest.mark.parametrize("paper,profile", _cases())
def test_committed_tables_and_figures_regenerate_byte_for_byte(paper, profile, tmp_path,
                                                              monkeypatch):
    import matplotlib.pyplot as plt

    from reprolib.configs import get_config
    from reprolib.core import report
    from reprolib.experiments import get_experiment

    monkeypatch.setenv("REPROLIB_RESULTS", str(RECORDS))         # the committed records
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path))
    before = _snapshot(RECORDS / paper / profile)
    cfg = get_config(paper, profile)
    pipe = get_experiment(paper)
    try:
        report.save_tables(paper, profile, pipe.tables(cfg))
        report.save_figures(paper, profile, pipe.figures(cfg))
    finally:
        plt.close("all")
    made = {p.name: p for p in (tmp_path / paper).iterdir()}
    committed = {p.name: p for p in (COMMITTED / paper).glob(f"*-{profile}.*")}
    problems = compare(made, committed)
    assert not problems, (f"{paper} --profile {profile}: the committed outputs are not what "
                          "the committed records give now:\n  " + "\n  ".join(problems))
    assert _snapshot(RECORDS / paper / profile) == before, "a record was written or touched"
    _check_png_rule()


def test_committed_bench_outputs_regenerate_byte_for_byte(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from reprolib.tools import bench

    if not (RECORDS / "bench" / "cpu").is_dir():
        pytest.skip("no committed bench records")
    monkeypatch.setenv("REPROLIB_RESULTS", str(RECORDS))
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path))
    before = _snapshot(RECORDS / "bench" / "cpu")
    try:
        bench.write_outputs(bench.get_config("cpu"))
    finally:
        plt.close("all")
    made = {p.name: p for p in (tmp_path / "bench").iterdir()}
    committed = {p.name: p for p in (COMMITTED / "bench").glob("*-cpu.*")}
    problems = compare(made, committed)
    assert not problems, "bench --profile cpu:\n  " + "\n  ".join(problems)
    assert _snapshot(RECORDS / "bench" / "cpu") == before
    _check_png_rule()


def test_figures_are_saved_with_fixed_metadata(tmp_path, monkeypatch):
    """The same figure saved twice gives the same bytes, and carries no matplotlib version
    (which would change every committed PNG on an upgrade that renders the same pixels)."""
    import matplotlib.pyplot as plt

    from reprolib.core import report

    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path))
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    a = report.save_figure(fig, "t", "line", "x").read_bytes()
    b = report.save_figure(fig, "t", "line", "y").read_bytes()
    plt.close(fig)
    assert a == b
    assert b"Matplotlib version" not in a and b"reprolib" in a
