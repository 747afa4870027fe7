"""What every paper's ``evidence`` profile shares: seeds, spread, tests, plateaus, verdicts.

A claim is tested by conditions (the method and its controls, the same budget each) times
seeds, every condition x seed one cached stage; this module turns their records into numbers
with their spread and a verdict in words:

    acc = {"learned": [43.1, 44.0, 42.7], "uniform": [41.0, 41.9, 40.2]}
    c = compare(acc["learned"], acc["uniform"])          # Welch's t-test, two-sided
    row = claim_row("learned widths beat uniform at 40 %", fmt(acc["learned"]), "82.11 %",
                    c["verdict"], c["reason"])
    claims_frame([row])                                   # the notebook's "Claims" table

Verdicts (:func:`compare`): ``holds``, ``does not hold`` or ``inconclusive`` (the
difference is within the noise of this many seeds); a claim of "no worse than" is tested with
a margin on a confidence interval, a claim of "better than" with Welch's t-test.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from reprolib.core.claims import (CLAIM_COLUMNS, VERDICTS, claim_row,  # noqa: E402,F401
                                  claims_frame, not_run)
from reprolib.core.stats import holm, seeds_needed, t_power  # noqa: F401


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, int(len(v))


def fmt(values: Iterable[float], digits: int = 1, unit: str = "") -> str:
    """``"43.1 ± 0.8 % (n = 3)"``: mean ± standard deviation over seeds."""
    m, s, n = mean_std(values)
    if n == 0:
        return "n/a"
    return f"{m:.{digits}f} ± {s:.{digits}f}{unit} (n = {n})"


def confidence_label(alpha: float) -> str:
    """The confidence of a (1 - ``alpha``) interval as its label says it: ``"95 %"``,
    ``"97.5 %"`` (a Bonferroni over 2 at 0.05), never rounded to a level it is not."""
    return f"{100 * (1 - alpha):.4g} %"


def compare(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05,
            higher_is_better: bool = True, margin: float | None = None) -> dict:
    """Test a claim about ``a`` against ``b`` from their per-seed values (Welch).

    Without ``margin`` the claim is "a is better than b": ``holds`` when the difference has
    that sign and the two-sided Welch test gives p < ``alpha``, ``does not hold`` when it has
    the other sign with p < ``alpha``, else ``inconclusive``.  With ``margin`` m the claim is
    "a is at most m worse than b" (non-inferiority): the (1 - alpha) confidence interval of
    the difference decides: ``holds`` when it lies above -m, ``does not hold`` when it lies
    below -m, else ``inconclusive``.  Returns ``diff`` (mean a - mean b, in the better
    direction's sign convention of the data), ``p``, ``ci`` (low, high), ``verdict`` and a
    one-line ``reason``.
    """
    from scipy import stats

    ma, sa, na = mean_std(a)
    mb, sb, nb = mean_std(b)
    diff = ma - mb
    sign = 1.0 if higher_is_better else -1.0
    if na < 2 or nb < 2:
        return {"diff": diff, "p": float("nan"), "ci": (float("nan"),) * 2,
                "verdict": "inconclusive", "reason": f"too few seeds ({na} and {nb}) to test",
                "test": "Welch t", "n": f"{na} vs {nb}", "paired": False}
    va, vb = sa ** 2 / na, sb ** 2 / nb
    se = math.sqrt(va + vb)
    if se == 0:
        p, half = (0.0 if sign * diff + (margin or 0.0) else 1.0), 0.0
    else:
        dof = (va + vb) ** 2 / ((va ** 2 / (na - 1) if va else 0) + (vb ** 2 / (nb - 1) if vb else 0))
        p = float(2 * stats.t.sf(abs(diff) / se, dof))
        half = float(stats.t.ppf(1 - alpha / 2, dof) * se)
        if margin is not None:              # H0: the gain is exactly -margin
            p = float(2 * stats.t.sf(abs(sign * diff + margin) / se, dof))
    lo, hi = sorted((sign * (diff - half), sign * (diff + half)))   # CI of the gain of a
    verdict = _verdict(sign * diff, p, lo, hi, alpha, margin)
    if margin is None:
        test = f"p = {p:.2g}, Welch, n = {na} vs {nb}"
    else:
        test = f"{confidence_label(alpha)} CI [{lo:+.2f}, {hi:+.2f}] vs margin -{margin:.2f}, n = {na} vs {nb}"
    return {"diff": diff, "p": p, "ci": (lo, hi), "verdict": verdict,
            "reason": f"difference {diff:+.2f} ({test})", "test": "Welch t",
            "n": f"{na} vs {nb}", "paired": False, "gain": sign * diff + (margin or 0.0),
            "sd": math.sqrt((sa ** 2 + sb ** 2) / 2)}


def _verdict(gain: float, p: float, lo: float, hi: float, alpha: float,
             margin: float | None) -> str:
    """The verdict rule of :func:`compare` and :func:`paired_compare`: without a margin, the
    sign of the gain where the test rejects at ``alpha``; with one, the interval [lo, hi] of
    the gain wholly above ``-margin`` (holds) or wholly below it (does not hold)."""
    if margin is None:
        return ("holds" if gain > 0 and p < alpha else
                "does not hold" if gain < 0 and p < alpha else "inconclusive")
    return "holds" if lo > -margin else "does not hold" if hi < -margin else "inconclusive"


def paired_compare(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05,
                   higher_is_better: bool = True, margin: float | None = None,
                   name: str = "paired t") -> dict:
    """:func:`compare` for a paired design: ``a[i]`` and ``b[i]`` share seed ``i`` (a parent
    model, a data order, the test set).  The paired t-test over the seeds' differences
    (``scipy.stats.ttest_1samp`` of the differences against 0, or against -``margin`` for
    "no worse than": ``ttest_rel`` when there is no margin) and the t interval of their mean;
    the same verdict rules.  Pairs with a missing value are dropped.  Against a constant
    ``b`` (a threshold) it is the one-sample t-test (``name="one-sample t"``).

    Besides :func:`compare`'s keys: ``gain`` (the mean difference in the claim's favour,
    measured from the null's value: what a power computation needs), ``sd`` (of the
    differences), ``n`` ("5 paired"), ``test`` and ``paired``."""
    from scipy import stats

    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None
             and math.isfinite(x) and math.isfinite(y)]
    n = len(pairs)
    d = np.array([x - y for x, y in pairs], dtype=float)
    diff = float(d.mean()) if n else float("nan")
    sign = 1.0 if higher_is_better else -1.0
    if n < 2:
        return {"diff": diff, "p": float("nan"), "ci": (float("nan"),) * 2, "n": f"{n} paired",
                "n_pairs": n, "verdict": "inconclusive",
                "reason": f"too few paired seeds ({n}) to test", "test": name, "paired": True}
    sd = float(d.std(ddof=1))
    gain = sign * diff + (margin or 0.0)     # in the claim's favour, from the null's value
    if sd == 0:
        p, half = (0.0 if gain else 1.0), 0.0
    else:
        # H0: the mean difference is 0 ("better than") or -margin ("no worse than")
        shift = 0.0 if margin is None else -sign * margin
        p = float(stats.ttest_1samp(d, shift).pvalue)
        half = float(stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n))
    lo, hi = sorted((sign * (diff - half), sign * (diff + half)))
    verdict = _verdict(sign * diff, p, lo, hi, alpha, margin)
    if margin is None:
        test = f"p = {p:.2g}, {name} over {n} seeds"
    else:
        test = (f"{confidence_label(alpha)} CI [{lo:+.2f}, {hi:+.2f}] vs margin -{margin:.2f}, "
                f"{name} over {n} seeds")
    return {"diff": diff, "p": p, "ci": (lo, hi), "n": f"{n} paired", "n_pairs": n, "sd": sd,
            "verdict": verdict, "reason": f"difference {diff:+.2f} ({test})", "test": name,
            "paired": True, "gain": gain}


def image_test(correct_a: Sequence, correct_b: Sequence, *, alpha: float = 0.05,
               n_resamples: int = 9999, seed: int = 0) -> dict:
    """Two arms tested on the same images, per seed: ``correct_x[s]`` is the bool array of
    seed ``s`` (which test images arm x got right, :func:`reprolib.core.io.unpack_bits`).

    The statistic is the accuracy difference in points, averaged over the seeds.  Its p-value
    comes from a paired permutation test over the test images (``scipy.stats.
    permutation_test``, ``permutation_type="samples"``: for each image the two arms'
    results are swapped, across all seeds at once), its interval from a paired bootstrap over
    the images (``scipy.stats.bootstrap``, percentile).  Images x seeds, paired: what a
    McNemar test does for one seed, for several."""
    from scipy import stats

    A = np.asarray([np.asarray(x, dtype=float) for x in correct_a])
    B = np.asarray([np.asarray(x, dtype=float) for x in correct_b])
    if A.shape != B.shape or A.ndim != 2 or A.shape[1] == 0:
        raise ValueError(f"image_test needs the same images per seed for both arms: "
                         f"{A.shape} vs {B.shape}")
    # deterministic in its inputs (the generator is seeded here): each is computed once per
    # process (a claims table and the README ask for the same comparisons)
    key = (hashlib.blake2b(A.tobytes() + B.tobytes() + repr(A.shape).encode(),
                           digest_size=16).digest(), float(alpha), int(n_resamples), int(seed))
    if key in _IMAGE_TESTS:
        return dict(_IMAGE_TESTS[key])
    a, b = A.mean(axis=0), B.mean(axis=0)            # per image, the mean over seeds
    diff = float(100 * (a - b).mean())
    rng = np.random.default_rng(seed)

    def stat(x, y, axis=-1):
        return 100 * np.mean(x - y, axis=axis)

    if np.all(a == b):
        p, ci = 1.0, (diff, diff)
    else:
        p = float(stats.permutation_test((a, b), stat, permutation_type="samples",
                                         n_resamples=n_resamples, vectorized=True,
                                         rng=rng).pvalue)
        bs = stats.bootstrap((a, b), stat, paired=True, vectorized=True, method="percentile",
                             n_resamples=n_resamples, confidence_level=1 - alpha, rng=rng)
        ci = (float(bs.confidence_interval.low), float(bs.confidence_interval.high))
    out = {"diff": diff, "p": p, "ci": ci, "n_images": int(A.shape[1]),
           "n_seeds": int(A.shape[0]), "test": "paired permutation over images"}
    _IMAGE_TESTS[key] = dict(out)
    return out


#: :func:`image_test`'s results in this process, by its inputs.
_IMAGE_TESTS: dict[tuple, dict] = {}


def image_note(records_a: Sequence[dict], records_b: Sequence[dict], **kw) -> str:
    """:func:`image_test` of two arms' records paired by position (seed), in words, over the
    seeds whose records both hold their per-image correctness (``test_correct``; records
    written before it was kept do not); "" when none do or the arms were tested on different
    images."""
    from reprolib.core.io import unpack_bits

    def bits(r):
        return ((r or {}).get("metrics", r or {})).get("test_correct")

    # the seeds whose records both hold it (records written before it was kept do not)
    pairs = [(bits(a), bits(b)) for a, b in zip(records_a, records_b)]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return ""
    A = [unpack_bits(x) for x, _ in pairs]
    B = [unpack_bits(y) for _, y in pairs]
    if len({len(f) for f in [*A, *B]}) != 1:
        return ""
    t = image_test(A, B, **kw)
    lo, hi = t["ci"]
    return (f"over {t['n_images']:,} images x {t['n_seeds']} seeds: {t['diff']:+.2f} pp, paired "
            f"permutation p = {t['p']:.2g}, 95 % paired-bootstrap CI [{lo:+.2f}, {hi:+.2f}]")


def paired_records(a, b, *, metric: str = "acc", images: bool = True, label: str = "",
                   **kw) -> dict:
    """:func:`paired_compare` of two arms' records (their ``metrics[metric]``) paired by
    seed, with :func:`image_note` (the paired permutation test over images x seeds) added to
    the reason where both arms' records hold their per-image correctness and ``images``.

    a, b: ``{seed: record}`` (the seeds both hold, in order) or sequences of records in seed
    order (None where a seed has none: that pair is dropped).  label: the note is appended as
    ``" [label note]"`` (several comparisons in one reason) instead of ``"; note"``.  Other
    keywords go to :func:`paired_compare`."""
    if isinstance(a, dict):
        seeds = sorted(set(a) & set(b))
        a, b = [a[s] for s in seeds], [b[s] for s in seeds]
    a, b = list(a), list(b)

    def value(r):
        return None if r is None else r["metrics"].get(metric)

    t = paired_compare([value(r) for r in a], [value(r) for r in b], **kw)
    extra = image_note(a, b) if images else ""
    if extra:
        t["reason"] += f" [{label} {extra}]" if label else f"; {extra}"
    return t


def binomial_se(acc_percent: float, n_images: int) -> float:
    """Standard error (percentage points) of an accuracy measured on ``n_images`` images."""
    p = acc_percent / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / max(n_images, 1))


def plateaued(history: Sequence[dict], window: int = 3, tol: float = 1.0,
              key: str = "test_acc") -> dict:
    """Has training reached a plateau?  The mean test accuracy of the last ``window``
    evaluations rose by less than ``tol`` points over the ``window`` before them.

    Returns ``{"plateau": bool, "last": mean of the last window, "gain": its rise}``;
    ``plateau`` is False when there are fewer than ``2 * window`` evaluations.
    """
    acc = [h[key] for h in history if key in h and h[key] is not None]
    if len(acc) < 2 * window:
        return {"plateau": False, "last": float(np.mean(acc)) if acc else float("nan"),
                "gain": float("nan")}
    last, prev = float(np.mean(acc[-window:])), float(np.mean(acc[-2 * window:-window]))
    return {"plateau": last - prev < tol, "last": last, "gain": last - prev}


# --------------------------------------------------------------------------- seeds, spread, notes
# General helpers of the evidence pipelines: a config per seed, per-group spread, a combined
# verdict, the plateau sentence, the run-cost sentence, error-bar plots, the notebook's section.


def seeded(cfg, seed: int):
    """One seed of an evidence run: :func:`reprolib.configs.seeded`."""
    from reprolib.configs import seeded as _seeded

    return _seeded(cfg, seed)


def seed_suffix(seed: int, base_seed: int | None = None) -> str:
    """The stage-name suffix of a replicate seed: ``-s<seed>``; "" when ``seed`` is
    ``base_seed`` (a pipeline whose own-seed stages keep the names its other tables read)."""
    return "" if base_seed is not None and int(seed) == int(base_seed) else f"-s{int(seed)}"


def split_seed(name: str) -> tuple[str, int | None]:
    """``"retrain-mlp-s2"`` -> ``("retrain-mlp", 2)``: a stage name without its
    :func:`seed_suffix` and the seed; ``(name, None)`` for a name without one."""
    head, sep, tail = name.rpartition("-s")
    return (head, int(tail)) if sep and head and tail.isdigit() else (name, None)


def spread(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Per group of ``by``: ``mean``, ``std`` (ddof=1, 0 for one value), ``n`` of ``value``
    and ``shown`` (:func:`fmt`), in the groups' first-seen order."""
    rows = []
    for key, g in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        m, s, n = mean_std(g[value])
        rows.append({**dict(zip(by, key)), "mean": m, "std": s, "n": n, "shown": fmt(g[value])})
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "shown"])


def all_of(results: Iterable[dict]) -> dict:
    """One test of a claim made of several (e.g. "SVD beats QR and LU"), as an
    intersection-union test: it holds when every part rejects its null in the claim's
    favour, so its p is the largest of the parts' (valid at the same level, no adjustment);
    when some part points the other way, its p is the smallest of those parts' (a shown
    reversal of any part is a shown failure of the whole).  ``verdict`` holds when every
    part holds, does not hold when any does not, else inconclusive; ``reason`` joins the
    parts' reasons; ``gain`` / ``sd`` are those of the part that decides (for the power
    computation: the one that needs the most seeds)."""
    results = list(results)
    vs = [r["verdict"] for r in results]
    verdict = ("holds" if vs and all(v == "holds" for v in vs) else
               "does not hold" if "does not hold" in vs else "inconclusive")
    out = {"verdict": verdict, "reason": "; ".join(r["reason"] for r in results)}
    tested = [r for r in results if math.isfinite(r.get("p", float("nan")))
              and math.isfinite(r.get("gain", float("nan")))]
    if tested and len(tested) == len(results):
        against = [r for r in tested if r["gain"] < 0]
        key = (min(against, key=lambda r: r["p"]) if against
               else max(tested, key=lambda r: r["p"]))
        out.update({k: key[k] for k in ("p", "gain", "sd", "paired") if k in key})
        out["test"] = " & ".join(dict.fromkeys(r.get("test", "") for r in results))
        out["n"] = key.get("n", "")
        out["parts"] = results
    return out


def any_of(results: Sequence[dict]) -> dict:
    """One test of "some one of these k cells satisfies the claim" (a union, Bonferroni): its
    p is k x the smallest p among the parts in the claim's favour (capped at 1); when every
    part points the other way, the claim fails only if all do, so its p is the largest of
    theirs (intersection-union).  Verdict from that p at 0.05 (the table's Holm follows)."""
    k = len(results)
    good = [r for r in results if r.get("gain", float("nan")) > 0]
    if good:
        best = min(good, key=lambda r: r["p"])
        p, key = min(1.0, k * best["p"]), best
    else:
        key = max(results, key=lambda r: r["p"])
        p = key["p"]
    out = {k2: key[k2] for k2 in ("gain", "sd", "paired", "n") if k2 in key}
    out.update(p=p, test=f"{key.get('test', '')}, Bonferroni over {k}", part=key,
               verdict=("holds" if p < 0.05 and out["gain"] > 0 else
                        "does not hold" if p < 0.05 and out["gain"] < 0 else "inconclusive"))
    return out


def train_images(dataset: str) -> int | None:
    """The size of ``dataset``'s training split (for the images a budget saw), None when it
    cannot be read here (a data set not on this machine)."""
    return _train_images(str(dataset))


@functools.lru_cache(maxsize=None)
def _train_images(dataset: str) -> int | None:
    from reprolib.data import get_data

    try:
        return int(get_data(dataset, batch_size=256).train_size)
    except Exception:       # absent / unreadable data: the budget then shows epochs and time
        return None


def _epochs(m: dict) -> int:
    """Epochs a record's stage trained: its ``epochs`` (or ``finetune_epochs``), else the
    length of its history (summed over phases where the history is kept per phase)."""
    stated = m.get("epochs") or m.get("finetune_epochs")
    if stated:
        return int(stated)
    h = m.get("history") or []
    return sum(len(v) for v in h.values()) if isinstance(h, dict) else len(h)


def budget(arms: dict[str, Sequence[dict]], train_images: int | None = None) -> str:
    """The training budget of each arm of a comparison, from its records (mean over seeds):
    epochs, images seen (epochs x ``train_images``, or the record's own ``train_images``)
    and recorded training time: ``"learned 3 ep, 15k img, 15 s · uniform 3 ep, 15k img, 14 s"``."""
    parts = []
    for name, recs in arms.items():
        ms = [r.get("metrics", r) for r in recs if r]
        if not ms:
            continue
        ep = float(np.mean([_epochs(m) for m in ms]))
        secs = float(np.mean([m.get("train_time_s") or r.get("wall_time_s") or 0.0
                              for m, r in zip(ms, [r for r in recs if r])]))
        n = ms[0].get("train_images") or train_images
        img = f", {ep * n / 1e3:.3g}k img" if n and ep else ""
        parts.append(f"{name} {ep:g} ep{img}, {secs:.0f} s")
    return " · ".join(parts)


def seed_cost(records: Iterable[dict], seeds: int) -> float:
    """Recorded stage time of one seed of an evidence run (all its arms), in seconds."""
    recs = [r for r in records if r]
    return sum(float(r.get("wall_time_s") or 0.0) for r in recs) / max(int(seeds), 1)


def plateau_note(histories: Sequence[Sequence[dict]], window: int = 3, tol: float = 1.0,
                 what: str = "the dense baseline", unit: str = "seeds") -> str:
    """How the plateau was decided, in one sentence, over the histories of several seeds
    (:func:`plateaued` on each); ``unit`` names what the histories are ("seeds", "runs")."""
    res = [plateaued(h, window, tol) for h in histories]
    k = sum(r["plateau"] for r in res)
    gains = " / ".join("n/a" if math.isnan(r["gain"]) else f"{r['gain']:+.1f}" for r in res)
    return (f"plateau rule (mean test accuracy of the last {window} epochs of {what} rose by "
            f"less than {tol:g} pp over the {window} before): met in {k} of {len(res)} {unit} "
            f"(rise {gains} pp)")


def cost_note(records: Iterable[dict]) -> str:
    """"N stage records, X min of recorded stage time on DEVICE": the cost of an evidence run
    from its records (``wall_time_s``, ``device``)."""
    from reprolib.core.report import device_label

    recs = [r for r in records if r]
    secs = sum(float(r.get("wall_time_s") or 0.0) for r in recs)
    took = f"{secs / 60:.0f} min" if secs >= 120 else f"{secs:.0f} s"
    return f"{len(recs)} stage records, {took} of recorded stage time on {device_label(recs)}"


def plot_mean_std(ax, df: pd.DataFrame, x: str, y: str, hue: str, *, order=None, styles=None,
                  offset: float = 0.0, label_fmt: str = "{}"):
    """Mean ± standard deviation of ``y`` per (``hue``, ``x``) as error bars joined by lines,
    one series per ``hue`` value (``order``); ``styles``: ``{hue value: matplotlib kwargs}``
    (colour, marker, linestyle); ``offset``: shift each series by this fraction of the x
    spacing so coinciding bars stay visible.  Returns the per-group :func:`spread` frame."""
    order = list(order if order is not None else dict.fromkeys(df[hue]))
    sp = spread(df, [hue, x], y)
    xs = sorted(df[x].unique())
    step = (min(b - a for a, b in zip(xs, xs[1:])) if len(xs) > 1 else 1.0) * offset
    for i, h in enumerate(order):
        g = sp[sp[hue] == h].sort_values(x)
        if not len(g):
            continue
        kw = {"marker": "o", "capsize": 3, "lw": 1.2, "ms": 5, **(styles or {}).get(h, {})}
        shift = (i - (len(order) - 1) / 2) * step
        ax.errorbar(g[x] + shift, g["mean"], yerr=g["std"], label=label_fmt.format(h), **kw)
    return sp


def claims_markdown(paper: str, cfg=None, profile: str = "evidence") -> str:
    """What a paper notebook ends with, its "Claims" section: the claims table (caption, then
    the table as Markdown) of ``cfg`` when that is an evidence run (``profile`` or seeds),
    else of the paper's ``profile`` once every one of its stages has a record; otherwise the
    sentence of :func:`not_run` saying how to make them."""
    from reprolib.configs import get_config, get_paper
    from reprolib.experiments import get_experiment
    from reprolib.core.report import to_markdown

    exp = get_experiment(paper)
    if cfg is not None and (cfg.profile == profile or getattr(cfg, "seeds", ())):
        ev = cfg
    elif profile in get_paper(paper).presets:
        ev = get_config(paper, profile)
    else:
        return f"{paper} has no `{profile}` profile."
    empty = not_run(paper, ev, exp.stages(ev))
    if empty is not None:
        return empty.attrs["caption"]
    df = exp.claims(ev)
    if df.empty:
        return df.attrs.get("caption", "")
    head = "" if ev is cfg else f"From the records of the `{profile}` profile (not this run). "
    return f"{head}{df.attrs.get('caption', '')}\n\n{to_markdown(df)}\n"
