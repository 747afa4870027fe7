"""What ``reprolib list PAPER`` and ``reprolib run PAPER --help`` print: every key of a paper
with its type, its value in each profile and its meaning -- the comment beside the field in
the config's source (with its continuation lines), read with ``tokenize``."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io as _io
import tokenize
import types
import typing

from reprolib.configs.fields import _hints, _nested

@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The meaning of each field of the config dataclass ``cls`` (and of its bases): the
    comment after the field's definition with its continuation lines (comment lines indented
    past ``#``), or else the comment block just above the field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        docs.update(_comments(src, {f.name for f in dataclasses.fields(klass)}))
    return docs


def _comments(src: str, names: set[str]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    above: list[str] = []
    current = None        # the field whose trailing comment may continue on the next lines
    depth = 0             # bracket depth: a field's definition may span lines
    line_start = True
    body_indent = None
    for tok in tokenize.generate_tokens(_io.StringIO(src).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        if tok.type == tokenize.COMMENT:
            text = tok.string[1:]
            if line_start:                     # a comment on a line of its own
                if current and text.startswith("  ") and text.strip():
                    out[current].append(text.strip())
                else:
                    current = None
                    if text.strip() and not text.strip().startswith("-"):
                        above.append(text.strip())
            elif current:
                out[current].append(text.strip())
            continue
        if tok.type in (tokenize.NL, tokenize.NEWLINE):
            line_start = depth == 0 or line_start
            if tok.type == tokenize.NL and depth == 0 and tok.line.strip() == "":
                above = []
            continue
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        if line_start and depth == 0 and tok.type == tokenize.NAME:
            if body_indent is None and tok.start[1] > 0:
                body_indent = tok.start[1]
            if tok.start[1] == body_indent and tok.string in names:
                current = tok.string
                out[current] = []
                if above:
                    out[current + "\0above"] = above
            else:
                current = None
            above = []
        line_start = False
    docs = {}
    for k, lines in out.items():
        if k.endswith("\0above"):
            continue
        docs[k] = " ".join(lines) or " ".join(out.get(k + "\0above", []))
    return docs


def _show(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_show(k)}: {_show(x)}" for k, x in v.items()) + "}"
    return repr(v) if isinstance(v, str) and v == "" else str(v)


def _type_name(hint) -> str:
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def describe(paper: str, width: int = 100) -> str:
    """Every override key of ``paper``: its type, its value in each profile (one value where
    all profiles agree) and its meaning, taken from the config's field comments.  What
    ``reprolib list PAPER`` and ``reprolib run PAPER --help`` print."""
    import textwrap

    from reprolib.configs import TrainConfig, get_config, get_paper

    p = get_paper(paper)
    cls = p.config_cls
    cfgs = {prof: get_config(paper, prof) for prof in p.presets}
    docs, hints, nested = field_docs(cls), _hints(cls), _nested(cls)
    tdocs = field_docs(TrainConfig)
    rows = []   # (key, type, values, meaning)

    def values(get) -> str:
        vals = {prof: _show(get(c)) for prof, c in cfgs.items()}
        if len(set(vals.values())) == 1:
            return next(iter(vals.values()))
        groups: dict[str, list[str]] = {}
        for prof, v in vals.items():
            groups.setdefault(v, []).append(prof)
        return " · ".join(f"{'/'.join(ps)} {v}" for v, ps in groups.items())

    for f in dataclasses.fields(cls):
        if f.name == "profile":
            continue
        if f.name in nested:
            rows.append((f"{f.name}.*", "recipe", "", docs.get(f.name, "") +
                         " (a training recipe: set its values with the keys below)"))
            for g in dataclasses.fields(nested[f.name]):
                if g.name == "seed":
                    continue
                rows.append((f"{f.name}.{g.name}", _type_name(_hints(nested[f.name])[g.name]),
                             values(lambda c, r=f.name, k=g.name: getattr(getattr(c, r), k)),
                             tdocs.get(g.name, "")))
            continue
        rows.append((f.name, _type_name(hints[f.name]),
                     values(lambda c, k=f.name: getattr(c, k)), docs.get(f.name, "")))
    kw = max(len(r[0]) for r in rows) + 2
    head = [f"{paper}: {p.title}",
            f"profiles: {', '.join(p.presets)} (--profile NAME; default smoke)",
            "override keys (-p KEY=VALUE, repeatable; a tuple key takes one value or a tuple, "
            "e.g. -p \"widths=(0.5, 1.0)\"): type, value per profile (one value where all "
            "agree), meaning.  A recipe's seed follows `seed`.", ""]
    lines = []
    for key, typ, val, doc in rows:
        lines.append(f"  {key:<{kw}}{typ}" + (f"   {val}" if val else ""))
        if doc:
            lines += textwrap.wrap(doc, width, initial_indent=" " * (kw + 4),
                                   subsequent_indent=" " * (kw + 4))
    return "\n".join(head + lines)
