"""The README's results section is what `reprolib readme` writes from the committed records."""

from reprolib import paths
from reprolib.tools.readme import BEGIN, END, update_readme


def test_committed_readme_is_generated_from_the_records(monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(paths.ROOT / "results"))   # the committed ones
    text = (paths.ROOT / "README.md").read_text()
    assert BEGIN in text and END in text
    assert not update_readme(check=True), "README.md is out of date: run `make readme`"


def test_update_rewrites_only_between_the_markers(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(paths.ROOT / "results"))
    p = tmp_path / "README.md"
    p.write_text(f"head\n{BEGIN}\nstale 99.9 %\n{END}\ntail\n")
    assert update_readme(p) is True
    text = p.read_text()
    assert text.startswith("head\n") and text.endswith(f"{END}\ntail\n")
    assert "stale" not in text and "### " in text
    assert update_readme(p) is False                 # idempotent
