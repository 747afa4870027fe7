"""Every command and sample output in README.md is checked, so that drift fails CI.

Code blocks: a ``bash`` line is parsed as the shell would (``shlex``); ``reprolib`` commands
(also after ``.venv/bin/``, ``python -m`` and ``torchrun ... -m``) are parsed by the real
parser, the quick ones run (``list``, ``graph``, ``plan``, ``clean`` without ``--yes``,
``readme --check``, ``status``, ``launch --dry-run``, ``--help``) and the long ones (``run``, ``compute``, ``reproduce``,
``bench``, ``export``) checked without running: their config builds with the given ``-p``
keys, profile and data root, a ``--stage`` is a stage of that graph; ``make`` targets exist
and dry-run (``make -n``); ``papermill`` names a notebook, parameters of its ``parameters``
cell and overrides the config accepts; ``pip install`` names files that exist.  A ``$ cmd``
block is run and its output compared; a sample output block is compared, line by line with
spacing ignored, with the output of the command the paragraph before it names.  The
package layout block names files and folders that exist and every command of the CLI.  A
``python`` block compiles and every ``module.name`` it uses exists.  Inline commands in
backticks (``reprolib X ...``, ``make X``) name existing commands / targets and parse.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from reprolib import cli, paths

README = paths.ROOT / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
QUICK = {"list", "graph", "plan", "clean"}


def _text() -> str:
    return README.read_text()


def _blocks() -> list[tuple[str, str, int]]:
    """``(language, body, offset)`` of every fenced block."""
    return [(m.group(1), m.group(2), m.start()) for m in BLOCK.finditer(_text())]


def _bash_commands() -> list[list[str]]:
    out = []
    for lang, body, _ in _blocks():
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            # `a && b` is two commands
            while argv:
                if "&&" in argv:
                    i = argv.index("&&")
                    out.append(argv[:i])
                    argv = argv[i + 1:]
                else:
                    out.append(argv)
                    argv = []
    return out


def _reprolib_argv(argv: list[str]) -> list[str] | None:
    """The arguments after ``reprolib`` of a command line that runs it, else None."""
    if not argv:
        return None
    head = argv[0].rsplit("/", 1)[-1]
    if head == "reprolib":
        return argv[1:]
    if "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == ["reprolib"]:
        return argv[argv.index("-m") + 2:]
    return None


def _parse(args: list[str]):
    """The parsed arguments (None for ``--help``, which answers and exits 0)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return cli.build_parser().parse_args(args)
    except SystemExit as e:
        if e.code == 0:
            return None
        raise AssertionError(f"`reprolib {' '.join(args)}` does not parse (exit {e.code})")


def _run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(args)
        except SystemExit as e:        # --help
            rc = e.code or 0
    return rc, out.getvalue(), err.getvalue()


def _check_config(ns) -> None:
    """A long command, checked without running: its config builds with what it names."""
    from reprolib.configs import get_config, parse_overrides

    over = parse_overrides(getattr(ns, "param", []) or [])
    if getattr(ns, "data_root", None):
        over["data_root"] = ns.data_root
    if ns.cmd == "bench":
        from reprolib.tools import bench

        bench.get_config(ns.profile, **over)
        return
    if ns.cmd == "export":
        return                                    # a path the reader made: nothing to check
    if ns.cmd == "reproduce":
        from reprolib.configs import papers

        assert any(ns.profile in p.presets for p in papers().values()), ns.profile
        return
    cfg = get_config(ns.paper, ns.profile, **over)
    if getattr(ns, "stage", None):
        from reprolib.experiments import get_experiment

        names = {s.name for s in get_experiment(ns.paper).stages(cfg)}
        for part in ns.stage:
            for name in part.split(","):
                assert name in names, f"--stage {name}: not a stage of {ns.paper} {ns.profile}"


@pytest.fixture
def committed_records(monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(paths.ROOT / "results"))


def test_the_readme_has_the_blocks_this_test_reads():
    langs = [lang for lang, _, _ in _blocks()]
    assert langs.count("bash") >= 4 and langs.count("python") >= 2 and "" in langs
    assert len(_bash_commands()) >= 15


def test_every_reprolib_command_in_a_bash_block_parses_and_is_checked(committed_records):
    seen = set()
    for argv in _bash_commands():
        args = _reprolib_argv(argv)
        if args is None:
            continue
        ns = _parse(args)
        if ns is None:                                   # --help
            continue
        seen.add(ns.cmd)
        quick = ns.cmd in QUICK or ns.cmd == "status" or (ns.cmd == "launch" and ns.dry_run)
        if quick and not getattr(ns, "yes", False):
            rc, out, err = _run_cli(args)
            assert rc == 0 and out.strip() and not err.strip(), (args, rc, err)
        elif ns.cmd == "readme":
            assert not getattr(ns, "check", False) or _run_cli(args)[0] == 0
        else:
            _check_config(ns)
    assert {"run", "compute", "plan", "graph", "launch", "status"} <= seen, seen


def test_make_targets_in_the_readme_exist_and_dry_run(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    makefile = (paths.ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = [a[1] for a in _bash_commands() if a and a[0] == "make" and len(a) > 1]
    named += [w for span in re.findall(r"`make ([^`]+)`", _text()) for w in span.split()
              if "=" not in w]
    assert {"reproduce", "test", "lab"} <= set(named), named
    for t in set(named):
        assert t in targets, f"README names `make {t}`, which the Makefile lacks"
    # a dry run in a copy (the Makefile with a stand-in venv: nothing is built or started)
    shutil.copy(paths.ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.lock", "pyproject.toml"):
        shutil.copy(paths.ROOT / name, tmp_path / name)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    for t in sorted(set(named)):
        r = subprocess.run(["make", "-n", t], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, (t, r.stderr)


def test_other_commands_in_bash_blocks():
    checked = 0
    for argv in _bash_commands():
        if not argv or _reprolib_argv(argv) is not None or argv[0] == "make":
            continue
        tool = argv[0].rsplit("/", 1)[-1]
        if tool == "papermill":
            nb, out = argv[1], argv[2]
            assert (paths.ROOT / nb).is_file(), nb
            params = _notebook_parameters(paths.ROOT / nb)
            pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "-p"]
            for name in pairs:
                assert name in params, f"papermill -p {name}: not a parameter of {nb}"
            yaml_args = [argv[i + 1] for i, a in enumerate(argv) if a == "-y"]
            import yaml

            given = {}
            for y in yaml_args:
                given.update(yaml.safe_load(y))
            assert set(given) <= params, given
            from reprolib.configs import get_config

            prof = argv[argv.index("profile") + 1] if "profile" in pairs else "smoke"
            get_config(paths.ROOT.joinpath(nb).stem, prof, **given.get("overrides", {}))
            assert out.startswith("runs/")
        elif tool == "pip":
            for i, a in enumerate(argv):
                if a == "-r":
                    assert (paths.ROOT / argv[i + 1]).is_file(), argv[i + 1]
            if "-e" in argv:
                assert (paths.ROOT / argv[argv.index("-e") + 1] / "pyproject.toml").is_file()
        else:
            raise AssertionError(f"README command this test does not know: {' '.join(argv)}")
        checked += 1
    assert checked >= 1


def _notebook_parameters(nb) -> set[str]:
    cells = json.loads(nb.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    return {t.id for stmt in ast.parse("".join(cell["source"])).body
            if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)}


def test_dollar_blocks_give_the_output_shown(monkeypatch, tmp_path):
    for var in ("RESULTS", "FIGURES", "RUNS"):
        monkeypatch.setenv(f"REPROLIB_{var}", str(tmp_path / var.lower()))
    n = 0
    for lang, body, _ in _blocks():
        lines = body.splitlines()
        if lang or not lines or not lines[0].startswith("$ "):
            continue
        args = _reprolib_argv(shlex.split(lines[0][2:]))
        assert args is not None, lines[0]
        rc, out, err = _run_cli(args)
        assert (out + err).strip().splitlines() == [x for x in lines[1:] if x.strip()], \
            (lines[0], out, err)
        n += 1
    assert n >= 1
    assert not (tmp_path / "results").exists()          # an error wrote nothing


def _squash(line: str) -> str:
    return " ".join(line.split())


def test_sample_outputs_match_the_command_the_text_names(committed_records):
    """A block without ``$`` that is not the layout: the output of the last ``reprolib ...``
    command in backticks before it; every sample line is one of its lines (spacing aside)."""
    text = _text()
    n = 0
    for lang, body, start in _blocks():
        lines = [x for x in body.splitlines() if x.strip()]
        if lang or not lines or lines[0].startswith("$ ") or lines[0].startswith("reprolib/"):
            continue
        before = text[:start]
        cmds = re.findall(r"`(reprolib [^`]+)`", before[before.rfind("\n\n", 0, len(before) - 2):])
        assert cmds, f"no command named before the sample block {lines[0]!r}"
        rc, out, err = _run_cli(shlex.split(cmds[-1])[1:])
        assert rc == 0, (cmds[-1], err)
        have = {_squash(x) for x in out.splitlines()}
        missing = [x for x in lines if _squash(x) not in have]
        assert not missing, f"`{cmds[-1]}` no longer prints: {missing}"
        n += 1
    assert n >= 1


def test_layout_block_names_what_exists():
    body = next(b for lang, b, _ in _blocks() if not lang and b.startswith("reprolib/"))
    pkg = paths.ROOT / "reprolib"
    folder = pkg
    for line in body.splitlines()[1:]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if indent == 2:
            folder = pkg
            if first.endswith("/"):
                assert (pkg / first).is_dir(), first
                folder = pkg / first
            elif first.endswith(".py"):
                assert (pkg / first).is_file(), first
        elif indent == 4 and folder is not pkg:
            for name in re.findall(r"^\s+((?:[\w.]+\.py,?\s*)+)", line):
                for f in re.findall(r"[\w]+\.py", name):
                    assert (folder / f).is_file(), f"{folder.name}/{f}"
    # the cli line names every command
    cli_line = " ".join(re.findall(r"cli\.py\s+(.*(?:\n\s{15,}.*)*)", body)[0].split())
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    named = {w.strip() for w in cli_line.replace("reprolib", "").split("|")}
    assert commands <= named, f"the layout's cli.py line lacks {sorted(commands - named)}"


def test_python_blocks_compile_and_name_what_exists():
    n = 0
    for lang, body, _ in _blocks():
        if lang != "python":
            continue
        tree = ast.parse(body)
        modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    modules[a.asname or a.name] = importlib.import_module(a.name)
            elif isinstance(node, ast.ImportFrom):
                base = importlib.import_module(node.module)
                for a in node.names:
                    obj = getattr(base, a.name, None)
                    if obj is None:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    modules[a.asname or a.name] = obj
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in modules:
                assert hasattr(modules[node.value.id], node.attr), \
                    f"{node.value.id}.{node.attr} (README python block)"
        n += 1
    assert n >= 2


def test_inline_commands_name_commands_and_targets_that_exist():
    text = _text()
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    targets = set(re.findall(r"^([\w-]+):", (paths.ROOT / "Makefile").read_text(), re.M))
    fill = {"PAPER": "sidt", "P": "cpu", "N": "2", "PATH": "runs/x", "COMMAND": "run"}
    for cmd in re.findall(r"`reprolib ([^`]+)`", text):
        args = [fill.get(a, a) for a in shlex.split(cmd)]
        if args[0] in ("--help", "-h"):
            assert _parse(args) is None
            continue
        assert args[0] in commands, f"`reprolib {cmd}`: no such command"
        if len(args) > 1 or args[0] in ("list", "readme", "bench"):
            _parse(args)
    for span in re.findall(r"`make ([^`]+)`", text):
        for t in (w for w in span.split() if "=" not in w):
            assert t in targets, f"`make {span}`: no such target {t}"
    for mod in re.findall(r"`\.venv/bin/python -m ([\w.]+)", text):
        assert importlib.util.find_spec(mod) is not None, mod
    markers = (paths.ROOT / "pyproject.toml").read_text()
    for m in re.findall(r"`pytest -m (\w+)`", text):
        assert f'"{m}:' in markers, f"pytest marker {m} is not declared"
