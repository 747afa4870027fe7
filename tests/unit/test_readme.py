"""The README's results section is what `reprolib readme` writes from the committed records."""

import pytest

from reprolib import paths
from reprolib.tools import readme
from reprolib.tools.readme import BEGIN, END, update_readme


@pytest.fixture(scope="module")
def section():
    """The results section generated once from the committed records (~30 s on 2 cores);
    both tests read it instead of generating it twice."""
    mp = pytest.MonkeyPatch()
    mp.setenv("REPROLIB_RESULTS", str(paths.ROOT / "results"))   # the committed ones
    try:
        yield readme.results_section()
    finally:
        mp.undo()


@pytest.fixture
def generated(section, monkeypatch):
    """update_readme writes ``section`` instead of generating it again."""
    monkeypatch.setattr(readme, "results_section", lambda profile=readme.PROFILE: section)


def test_committed_readme_is_generated_from_the_records(generated):
    text = (paths.ROOT / "README.md").read_text()
    assert BEGIN in text and END in text
    assert not update_readme(check=True), "README.md is out of date: run `make readme`"


def test_update_rewrites_only_between_the_markers(generated, tmp_path):
    p = tmp_path / "README.md"
    p.write_text(f"head\n{BEGIN}\nstale 99.9 %\n{END}\ntail\n")
    assert update_readme(p) is True
    text = p.read_text()
    assert text.startswith("head\n") and text.endswith(f"{END}\ntail\n")
    assert "stale" not in text and "### " in text
    assert update_readme(p) is False                 # idempotent
