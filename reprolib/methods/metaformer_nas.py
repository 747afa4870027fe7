"""MetaFormer-NAS: token-mixer search with a shared-weight DAG, an LSTM controller and
REINFORCE (Zhang & Liu, "基于 MetaFormer 的高效神经架构搜索"; ENAS-style, Pham et al. 2018).

Search space (paper §3.1, fig. 5).  A token mixer is a DAG of N nodes.  The controller
emits, for node 1, an op in {identity, pooling} (its predecessor is the mixer entrance, no
decision), and for node i = 2..N a predecessor j in {1..i-1} and an op.  The number of
distinct decision sequences -- and architectures, since every (j, i) has its own weight
W_{j,i} -- is 2 * prod_{i=2..N} 2(i-1) = 2^N (N-1)!  (paper §4.1; 96 for N = 4, 92,160 for
N = 7).  ``count_architectures`` counts it from the controller's own decision list.

Controller (§3.2).  An LSTM cell with 64 hidden units; the first input is empty (zeros);
each decision is embedded and fed as the next input; softmax heads give the predecessor
(masked to the i-1 valid nodes) and the op, with optional temperature T and tanh constant
c (logits -> c tanh(logits / T)).  A decision is embedded together with its step ("node 3
takes node 1" and "node 2 takes node 1" are different inputs) from N(0, 1) embeddings: with
one ±0.1 embedding per choice shared by all steps the LSTM sees nearly the same input at
every op step, the shared op head moves every node's op together, a node whose best op is
the minority collapses onto the other op and, never sampling its own again, gets no signal
(the toy-reward check failed on every seed that way).

Search (§3.2, §4.1).  Rounds alternate
  (1) shared weights w: one epoch over the training set, minimising
      E_{m~pi}[L(m; w)] with the Monte-Carlo estimate of eq. (5) at M = 1 -- one
      architecture sampled per step (``arch_per="step"``) or per epoch -- AdamW lr 1e-3,
      wd 1e-4, batch 128;
  (2) controller theta: ``controller_samples`` (100) architectures, reward R = accuracy on
      one validation batch, REINFORCE with baseline:
          loss = -(R - b) log pi(m; theta) - beta H(pi),   b <- d b + (1 - d) R
      Adam lr 3.5e-4, controller gradients clipped to ``controller_clip``.
Optionally (``uniform_samples`` > 0) each round also scores that many uniformly sampled
architectures on the same shared weights and the same kind of reward: the mean reward of a
uniform policy, the reference a learning controller's sampled cells must rise above.
The state after each round is checkpointed (``search.pt``, written with
``reprolib.io.save_torch`` and read with ``weights_only=True``: tensors and plain data only),
so a killed search resumes at the next round with the same random streams.  Derive: sample
K architectures, keep the one with the best reward; it is retrained from scratch as
``create_model(backbone, mixer=arch.to_json())``.

The pipeline (stages, tables, figures, drawing a cell) is ``reprolib.experiments.metaformer_nas``.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprolib import paths
from reprolib.core import io
from reprolib.errors import ReprolibError, check_number, choose
from reprolib.models.metaformer import (OPS, Architecture, MetaFormer,
                                        load_architecture, save_architecture)

__all__ = ["Architecture", "Controller", "NASConfig", "batch_accuracy", "count_architectures",
           "decision_space", "decode", "derive", "encode", "enumerate_architectures",
           "load_architecture", "paper_space_size", "reinforce_step", "save_architecture",
           "search", "toy_reinforce", "uniform_architecture", "uniform_entropy"]


# --------------------------------------------------------------------------- search space
def decision_space(n_nodes: int) -> list[tuple[int, str, int]]:
    """The controller's decisions in order: ``(node, kind, n_choices)`` with kind "prev"
    (choice c means predecessor node c + 1) or "op" (choice c means ``OPS[c]``).
    Node 1 has only an op decision; its input is the mixer entrance."""
    if int(n_nodes) != n_nodes or n_nodes < 1:
        raise ReprolibError(f"n_nodes={n_nodes!r} must be an integer >= 1")
    steps = []
    for i in range(1, int(n_nodes) + 1):
        if i > 1:
            steps.append((i, "prev", i - 1))
        steps.append((i, "op", len(OPS)))
    return steps


def decode(n_nodes: int, choices) -> Architecture:
    """The architecture of a decision sequence (one integer per ``decision_space`` step)."""
    nodes, prev = [], 0
    for (i, kind, n), c in zip(decision_space(n_nodes), choices, strict=True):
        if not 0 <= c < n:
            raise ReprolibError(f"decision {c} at node {i} ({kind}) is outside [0, {n})")
        if kind == "prev":
            prev = c + 1
        else:
            nodes.append((prev if i > 1 else 0, OPS[c]))
    return Architecture(tuple(nodes))


def encode(arch: Architecture) -> list[int]:
    """The decision sequence of ``arch`` (inverse of ``decode``)."""
    out = []
    for i, (p, op) in enumerate(arch.nodes, start=1):
        if i > 1:
            out.append(p - 1)
        out.append(OPS.index(op))
    return out


def enumerate_architectures(n_nodes: int):
    """Every decision sequence the controller can emit, decoded (a generator)."""
    ranges = [range(n) for _, _, n in decision_space(n_nodes)]
    for choices in itertools.product(*ranges):
        yield decode(n_nodes, choices)


@functools.lru_cache(maxsize=None)
def count_architectures(n_nodes: int, max_enumerate: int = 7) -> int:
    """The number of distinct architectures the controller can emit for ``n_nodes`` nodes.

    n_nodes: DAG nodes N (>= 1).  max_enumerate (default 7): up to this N every decision
    sequence is generated, decoded and the distinct architectures are counted (92,160 at
    N = 7); above it the decision tree of ``decision_space`` is counted level by level
    (each level's branching does not depend on earlier choices, so the number of leaves is
    the product of the branchings).  Equals 2^N (N-1)! (``paper_space_size``).
    """
    space = decision_space(n_nodes)
    if n_nodes <= max_enumerate:
        return len({a.nodes for a in enumerate_architectures(n_nodes)})
    leaves = 1
    for _, _, n in space:
        leaves *= n
    return leaves


def paper_space_size(n_nodes: int) -> int:
    """The paper's closed form 2^N (N-1)! (§4.1)."""
    return 2 ** n_nodes * math.factorial(n_nodes - 1)


def uniform_architecture(n_nodes: int, generator: torch.Generator | None = None) -> Architecture:
    """One architecture drawn uniformly from the ``n_nodes`` search space: every decision of
    ``decision_space`` uniform over its choices (decision sequences and architectures are in
    one-to-one correspondence, so every architecture has probability 1 / 2^N (N-1)!)."""
    return decode(n_nodes, [int(torch.randint(n, (1,), generator=generator))
                            for _, _, n in decision_space(n_nodes)])


def uniform_entropy(n_nodes: int) -> float:
    """The summed per-decision entropy (nats) of the uniform policy = ln 2^N (N-1)!, the
    largest value the controller's ``entropy`` can take."""
    return sum(math.log(n) for _, _, n in decision_space(n_nodes))


# --------------------------------------------------------------------------- controller
class Controller(nn.Module):
    """LSTM policy over ``decision_space(n_nodes)`` (paper §3.2).

    n_nodes: DAG nodes N.  hidden (default 64): LSTM units and embedding width.
    temperature (default None = 1): logits are divided by it.  tanh_c (default None = off):
    logits -> tanh_c * tanh(logits), bounding them (ENAS uses 5.0 and 2.5 / 1.1).
    The input after decision t is ``emb[t, choice]`` (one N(0, 1) embedding per step and
    choice); LSTM and heads are initialised U(-0.1, 0.1) as in ENAS.
    """

    def __init__(self, n_nodes: int, hidden: int = 64, temperature: float | None = None,
                 tanh_c: float | None = None):
        super().__init__()
        self.n_nodes, self.hidden = n_nodes, hidden
        self.temperature, self.tanh_c = temperature, tanh_c
        self.steps = decision_space(n_nodes)
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.prev_head = nn.Linear(hidden, max(n_nodes - 1, 1))
        self.op_head = nn.Linear(hidden, len(OPS))
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)
        # decision embeddings: row t * width + choice for decision t (N(0, 1) init)
        self._width = max(n_nodes - 1, len(OPS))
        self.emb = nn.Embedding(len(self.steps) * self._width, hidden)

    def _logits(self, h, kind, n):
        z = (self.prev_head(h) if kind == "prev" else self.op_head(h))[:, :n]
        if self.temperature:
            z = z / self.temperature
        if self.tanh_c:
            z = self.tanh_c * torch.tanh(z)
        return z

    def forward(self, arch: Architecture | None = None, greedy: bool = False,
                generator: torch.Generator | None = None):
        """Sample an architecture (or score the given ``arch``; or decode greedily).

        Returns ``(arch, log_prob, entropy)``: the summed log-probability of the decisions
        and the summed entropy of the per-step distributions (tensors with grad).
        """
        dev = self.op_head.weight.device
        given = encode(Architecture.parse(arch)) if arch is not None else None
        if given is not None and len(given) != len(self.steps):
            raise ReprolibError(f"this controller emits {self.n_nodes}-node architectures")
        h = c = torch.zeros(1, self.hidden, device=dev)
        inp = torch.zeros(1, self.hidden, device=dev)                # the empty first input
        logp = torch.zeros((), device=dev)
        ent = torch.zeros((), device=dev)
        choices = []
        for t, (_, kind, n) in enumerate(self.steps):
            h, c = self.lstm(inp, (h, c))
            lp = F.log_softmax(self._logits(h, kind, n), dim=-1)[0]
            if given is not None:
                a = given[t]
            elif greedy:
                a = int(lp.argmax())
            else:
                a = int(torch.multinomial(lp.exp(), 1, generator=generator))
            logp = logp + lp[a]
            ent = ent - (lp.exp() * lp).sum()
            choices.append(a)
            inp = self.emb(torch.tensor([t * self._width + a], device=dev))
        return decode(self.n_nodes, choices), logp, ent

    def sample(self, generator=None):
        return self(generator=generator)

    def log_prob(self, arch) -> torch.Tensor:
        """log pi(arch; theta), recomputed by feeding the architecture's decisions."""
        return self(arch)[1]

    @torch.no_grad()
    def most_likely(self) -> Architecture:
        """Greedy (argmax at every step) decoding: the policy's most likely architecture."""
        return self(greedy=True)[0]


def reinforce_step(controller: Controller, opt: torch.optim.Optimizer,
                   reward_fn: Callable[[Architecture], float], baseline: float | None, *,
                   baseline_decay: float = 0.95, entropy_weight: float = 1e-2,
                   clip: float | None = 5.0, generator=None):
    """One REINFORCE-with-baseline update from one sampled architecture.

    reward_fn: ``arch -> R`` (here: accuracy in [0, 1] on one validation batch).
    baseline: the exponential moving average of past rewards (None: the first reward).
    The update is the textbook score-function estimate: the loss
    -(R - b) * sum_t log pi(a_t | a_<t) - beta * sum_t H(pi(. | a_<t)) is minimised, so its
    gradient is -(R - b) grad log pi(m) - beta grad H (log-probability and entropy summed
    over the 2N - 1 decisions).
    baseline_decay d (default 0.95): b <- d b + (1 - d) R, updated before the advantage
        (as in ENAS; R - b_new = d (R - b_old), b_old independent of this sample).
    entropy_weight beta (default 1e-2): bonus beta * H(pi) on the summed entropy (nats).
    clip (default 5.0): max global norm of the controller's gradients (None: no clipping).
    Returns ``(arch, reward, entropy, new_baseline)``.
    """
    arch, logp, ent = controller.sample(generator)
    r = float(reward_fn(arch))
    baseline = r if baseline is None else baseline_decay * baseline + (1 - baseline_decay) * r
    loss = -(r - baseline) * logp - entropy_weight * ent
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(controller.parameters(), clip)
    opt.step()
    return arch, r, float(ent.detach()), baseline


def toy_reinforce(n_nodes: int, target, samples: int = 400, lr: float = 0.003,
                  seed: int = 0, temperature: float | None = None,
                  tanh_c: float | None = None, **kw) -> dict:
    """REINFORCE on a toy reward where one architecture is best: R(m) = fraction of the
    controller's decisions that agree with ``target``'s (1 only at ``target``).

    n_nodes: DAG nodes.  target: the best architecture.  samples (default 400): controller
    updates.  lr (default 0.003): Adam learning rate of the controller (larger than the
    paper's 3.5e-4 so a few hundred updates suffice).  seed: controller init and sampling.
    temperature, tanh_c (default None): the controller's logit options.  Other keywords go
    to ``reinforce_step`` (entropy weight 1e-2, baseline decay 0.95 by default).  Returns a dict with the per-sample
    ``reward``, ``entropy``, ``p_target`` (pi(target)) lists and the final ``most_likely``.
    """
    torch.manual_seed(seed)
    target = Architecture.parse(target)
    tgt = encode(target)
    ctrl = Controller(n_nodes, temperature=temperature, tanh_c=tanh_c)
    opt = torch.optim.Adam(ctrl.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    reward = lambda a: sum(x == y for x, y in zip(encode(a), tgt)) / len(tgt)  # noqa: E731
    hist = {"reward": [], "entropy": [], "p_target": []}
    b = None
    for _ in range(samples):
        _, r, e, b = reinforce_step(ctrl, opt, reward, b, generator=g, **kw)
        with torch.no_grad():
            hist["p_target"].append(float(ctrl.log_prob(target).exp()))
        hist["reward"].append(r)
        hist["entropy"].append(e)
    hist["most_likely"] = ctrl.most_likely().to_json()
    hist["target"] = target.to_json()
    return hist


# --------------------------------------------------------------------------- the search
@dataclass
class NASConfig:
    """Hyperparameters of one search (paper §3.2 and §4.1)."""

    n_nodes: int = 7                    # DAG nodes N (the paper searches N = 4 and N = 7)
    rounds: int = 100                   # alternations of (1) shared training and (2) controller
    shared_epochs: int = 1              # passes over the training set per round in step (1)
    arch_per: str = "step"              # sample a new architecture every "step" or "epoch"
    shared_lr: float = 1e-3             # AdamW learning rate of the shared weights w
    shared_wd: float = 1e-4             # AdamW (decoupled) weight decay of w
    shared_clip: float | None = None    # max grad norm of w (None: the paper clips nothing)
    max_train_batches: int | None = None  # cap on step-(1) batches per epoch (None: all)
    controller_samples: int = 100       # architectures sampled (and updates) per round
    controller_lr: float = 3.5e-4       # Adam learning rate of the controller theta
    controller_hidden: int = 64         # LSTM hidden units
    controller_clip: float | None = 5.0  # max grad norm of theta
    temperature: float | None = None    # softmax temperature of the controller's heads
    tanh_c: float | None = None         # tanh constant of the controller's logits
    entropy_weight: float = 1e-2        # beta: bonus on the summed entropy (ENAS range 1e-4..1e-2)
    baseline_decay: float = 0.95        # d: EMA decay of the REINFORCE baseline
    derive_samples: int = 100           # K: architectures sampled when deriving the result
    derive_batches: int = 1             # validation batches scoring each derived candidate
    reward_batches: int = 1             # validation batches averaged into one reward (paper 1)
    uniform_samples: int = 0            # per round, uniformly sampled cells scored alike (the
    #                                     uniform policy's reward, a reference; 0 = none)

    def __post_init__(self):
        check_number("n_nodes", self.n_nodes, 1, 64)
        choose("arch_per", self.arch_per, ("step", "epoch"))
        check_number("baseline_decay", self.baseline_decay, 0.0, 1.0)
        check_number("reward_batches", self.reward_batches, 1, 10_000)
        check_number("uniform_samples", self.uniform_samples, 0, 1_000_000)


@torch.no_grad()
def batch_accuracy(model: MetaFormer, arch: Architecture, batch) -> float:
    """Accuracy in [0, 1] of the shared model running ``arch`` on one (x, y) batch."""
    was = model.training
    model.eval()
    model.set_arch(arch)
    x, y = batch
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc


def _reward(model, arch, next_batch, n_batches: int) -> float:
    """Mean accuracy of ``arch`` on the next ``n_batches`` validation batches."""
    return sum(batch_accuracy(model, arch, next_batch()) for _ in range(n_batches)) / n_batches


class _Cycle:
    """Endless iteration over a loader's batches (a new validation batch per reward).
    ``pos`` counts the batches handed out, so a resumed search continues where it was."""

    def __init__(self, loader, pos: int = 0):
        self.loader, self.pos = loader, 0
        self.it = iter(loader)
        n = len(loader) if hasattr(loader, "__len__") else 0
        for _ in range(pos % n if n else pos):
            self()
        self.pos = pos

    def __call__(self):
        self.pos += 1
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)


def _shared_epoch(model, controller, data, opt, cfg: NASConfig, epoch: int, gen) -> dict:
    """Step (1): one epoch of the shared weights, a sampled architecture per step/epoch."""
    model.train()
    data.train.set_epoch(epoch)
    tot = correct = loss_sum = 0.0
    arch = None
    for b, (x, y) in enumerate(data.train):
        if cfg.max_train_batches is not None and b >= cfg.max_train_batches:
            break
        if arch is None or cfg.arch_per == "step":
            with torch.no_grad():
                arch = controller.sample(gen)[0]
            model.set_arch(arch)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.shared_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.shared_clip)
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += (out.argmax(1) == y).sum().item()
        tot += len(y)
    return {"train_loss": loss_sum / max(tot, 1), "train_acc": 100 * correct / max(tot, 1)}


_CKPT_KEYS = ("model", "controller", "shared_opt", "ctrl_opt", "generator", "torch_rng",
              "state")


_STATE_KEYS = {"round": int, "baseline": (float, int, type(None)), "history": list,
               "val_pos": int}


def load_search_checkpoint(path, config: dict | None = None) -> dict:
    """Read a ``search.pt`` written by :func:`search` with ``reprolib.io.load_torch``
    (``weights_only=True``: nothing in the file is executed).  A file that holds objects or
    code, a corrupt file, or one that is not a search checkpoint is a ``ReprolibError``; with
    ``config`` (the search's settings and seed), so is one saved by a search with other
    settings (:func:`reprolib.io.check_resume`)."""
    ck = io.load_torch(path, "search checkpoint")
    state = ck.get("state") if isinstance(ck, dict) else None
    if not isinstance(ck, dict) or any(k not in ck for k in _CKPT_KEYS) \
            or not isinstance(state, dict) \
            or any(not isinstance(state.get(k), t) or isinstance(state.get(k), bool)
                   for k, t in _STATE_KEYS.items()):
        raise ReprolibError(f"search checkpoint {paths.rel(path)} is not a MetaFormer-NAS "
                            f"search checkpoint (it needs {', '.join(_CKPT_KEYS)}, and a state "
                            f"of {', '.join(_STATE_KEYS)}); delete it to restart the search")
    if config is not None:
        io.check_resume(ck, path, config, "search checkpoint", _CKPT_KEYS)
        if not 0 <= state["round"] <= config["rounds"] or len(state["history"]) != state["round"]:
            raise ReprolibError(f"search checkpoint {paths.rel(path)}: round "
                                f"{state['round']} does not fit a search of {config['rounds']} "
                                "rounds; delete it to restart the search")
    return ck


def search(model: MetaFormer, data, cfg: NASConfig, *, ckpt_dir=None, device="cpu",
           seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Run the MetaFormer-NAS search on the shared model (paper §3.2).

    model: a shared-weight ``MetaFormer`` built with ``mixer={"shared": cfg.n_nodes}``.
    data: a ``reprolib.data.Data`` with a held-out ``val`` split (rewards; falls back to
        ``test`` when absent).  cfg: the ``NASConfig``.  ckpt_dir: folder for ``search.pt``,
        written after every round and resumed from when present.  device: where to run.
    seed: controller init and architecture sampling.  log: called with one line per round.
    Returns a dict: ``history`` (one entry per round: train loss/acc, mean reward, mean
    entropy, baseline, most likely architecture and its reward, seconds), ``arch`` (the
    derived architecture, JSON form), ``reward`` (its reward), ``candidates`` (the K
    derived samples with rewards), ``search_time_s`` (wall time of all rounds, resumed
    rounds included), ``derive_time_s``, ``space_size``.
    """
    from reprolib.core.train import TrainConfig, build_optimizer

    device = torch.device(device)
    torch.manual_seed(seed)
    controller = Controller(cfg.n_nodes, cfg.controller_hidden, cfg.temperature, cfg.tanh_c)
    model.to(device)
    controller.to(device)
    shared_opt = build_optimizer(model, TrainConfig(optimizer="adamw", lr=cfg.shared_lr,
                                                    weight_decay=cfg.shared_wd))
    ctrl_opt = torch.optim.Adam(controller.parameters(), lr=cfg.controller_lr)
    gen = torch.Generator().manual_seed(seed)
    state = {"round": 0, "baseline": None, "history": [], "val_pos": 0}
    ckpt = Path(ckpt_dir) / "search.pt" if ckpt_dir else None
    config = {**asdict(cfg), "seed": seed}      # what the checkpoint must have been saved by
    if ckpt is not None and ckpt.exists():
        ck = load_search_checkpoint(ckpt, config)
        what = "search checkpoint"
        io.load_state(model, ck["model"], ckpt, what, "shared model")
        io.load_state(controller, ck["controller"], ckpt, what, "controller")
        io.load_state(shared_opt, ck["shared_opt"], ckpt, what, "shared optimizer state")
        io.load_state(ctrl_opt, ck["ctrl_opt"], ckpt, what, "controller optimizer state")
        io.load_state(gen, ck["generator"], ckpt, what, "generator state")
        try:
            torch.set_rng_state(ck["torch_rng"])
        except (RuntimeError, TypeError) as e:
            raise ReprolibError(f"{what} {paths.rel(ckpt)}: its torch RNG state does not "
                                f"fit ({e}); delete it to restart the search") from None
        state = ck["state"]
    val = data.val if getattr(data, "val", None) is not None else data.test
    next_val = _Cycle(val, state["val_pos"])
    for rnd in range(state["round"], cfg.rounds):
        t0 = time.perf_counter()
        rec = {"round": rnd + 1}
        for e in range(cfg.shared_epochs):
            rec.update(_shared_epoch(model, controller, data, shared_opt, cfg,
                                     rnd * cfg.shared_epochs + e, gen))
        if cfg.uniform_samples:
            uni = [_reward(model, uniform_architecture(cfg.n_nodes, gen), next_val,
                           cfg.reward_batches) for _ in range(cfg.uniform_samples)]
            rec.update(uniform_reward=sum(uni) / len(uni), uniform_reward_max=max(uni))
        rewards, ents, b = [], [], state["baseline"]
        controller.train()
        for _ in range(cfg.controller_samples):
            _, r, ent, b = reinforce_step(
                controller, ctrl_opt,
                lambda a: _reward(model, a, next_val, cfg.reward_batches), b,
                baseline_decay=cfg.baseline_decay, entropy_weight=cfg.entropy_weight,
                clip=cfg.controller_clip, generator=gen)
            rewards.append(r)
            ents.append(ent)
        state["baseline"] = b
        best = controller.most_likely()
        rec.update(reward=sum(rewards) / len(rewards), reward_max=max(rewards),
                   entropy=sum(ents) / len(ents), baseline=b, most_likely=best.to_json(),
                   most_likely_str=str(best),
                   most_likely_reward=_reward(model, best, next_val, cfg.reward_batches),
                   time_s=time.perf_counter() - t0)
        state["history"].append(rec)
        state["round"] = rnd + 1
        state["val_pos"] = next_val.pos
        if log:
            log(f"round {rnd + 1}/{cfg.rounds}: loss {rec.get('train_loss', float('nan')):.3f} "
                f"reward {rec['reward']:.3f} entropy {rec['entropy']:.3f} "
                f"best {best} ({rec['time_s']:.1f}s)")
        if ckpt is not None:
            # tensors and plain data only (the generator states are ByteTensors), so that
            # io.load_torch reads it back with weights_only=True
            io.save_torch({"model": model.state_dict(), "controller": controller.state_dict(),
                           "shared_opt": shared_opt.state_dict(),
                           "ctrl_opt": ctrl_opt.state_dict(), "generator": gen.get_state(),
                           "torch_rng": torch.get_rng_state(), "state": state,
                           "config": config}, ckpt)
    t0 = time.perf_counter()
    batches = [b for b, _ in zip(val, range(cfg.derive_batches))]
    best, cands = derive(model, controller, batches, cfg.derive_samples, generator=gen)
    return {"history": state["history"], "arch": best[0].to_json(), "arch_str": str(best[0]),
            "reward": best[1], "candidates": [(a.to_json(), r) for a, r in cands],
            "search_time_s": sum(h["time_s"] for h in state["history"]),
            "derive_time_s": time.perf_counter() - t0,
            "space_size": count_architectures(cfg.n_nodes)}


@torch.no_grad()
def derive(model: MetaFormer, controller: Controller, batches, k: int = 100, generator=None):
    """Sample ``k`` architectures from ``controller`` and score each on the same list of
    validation ``batches`` (mean accuracy in [0, 1]); returns ``((best_arch, reward),
    candidates)`` where candidates lists every distinct sampled architecture with its reward,
    best first."""
    scores: dict[tuple, float] = {}
    for _ in range(k):
        a = controller.sample(generator)[0]
        if a.nodes not in scores:
            scores[a.nodes] = sum(batch_accuracy(model, a, b) for b in batches) / len(batches)
    cands = sorted(((Architecture(n), r) for n, r in scores.items()), key=lambda t: -t[1])
    return cands[0], cands
