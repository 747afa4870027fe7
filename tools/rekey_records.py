"""Move committed records to the keys the current code gives their stages, keeping results.

    python tools/rekey_records.py PAPER [PAPER ...] --profile cpu [--dry-run]

For a change in how a stage's config is written (renamed or nested fields, a data set given
a name) that does not change what the stage computes.  Each record of
``results/<paper>/<profile>/`` is matched by name to a stage of
``reprolib.experiments.<paper>.stages(get_config(paper, profile))``; its file moves to that
stage's path, its ``config`` and ``run_id`` become the stage's, and ``rekeyed_from`` keeps the
old run id and config (the metrics and the rest are untouched).  Records with no stage of
that name are listed and left alone.  Checkpoint folders are not moved (they are not
committed; a stage that needs an upstream model recomputes it).
"""

from __future__ import annotations

import argparse
import sys

from reprolib import paths
from reprolib.core import io, results
from reprolib.configs import get_config
from reprolib.experiments import get_experiment


def rekey(paper: str, profile: str, dry_run: bool = False) -> list[str]:
    cfg = get_config(paper, profile)
    by_name = {s.name: s for s in get_experiment(paper).stages(cfg)}
    lines = []
    for path in sorted((paths.results_root() / paper / profile).glob("*.json")):
        rec = results.load_record(path)
        st = by_name.get(rec["name"])
        if st is None:
            lines.append(f"{paper}: {path.name}: no stage named {rec['name']!r}, left alone")
            continue
        if st.path == path:
            continue
        new = dict(rec, config=st.config, run_id=st.run_id)
        new["rekeyed_from"] = rec.get("rekeyed_from", []) + [
            {"run_id": rec["run_id"], "config": rec["config"]}]
        lines.append(f"{paper}: {path.name} -> {st.path.name}")
        if not dry_run:
            io.write_json(new, st.path)
            path.unlink()
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("papers", nargs="+")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    for p in a.papers:
        for line in rekey(p, a.profile, a.dry_run):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
