"""Unit tests of MetaFormer-NAS: search-space size, DAG mixer semantics, controller
log-probabilities, REINFORCE on a toy reward, JSON and compressed-model round trips, search
resume and the search checkpoint that is never unpickled."""

import json
import math

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.experiments import metaformer_nas as E
from reprolib.methods import metaformer_nas as M
from reprolib.models.metaformer import Architecture, DAGMixer

FIG5 = [[0, "identity"], [1, "pooling"], [1, "identity"], [3, "pooling"]]   # paper fig. 5


@pytest.mark.parametrize("n", range(1, 8))
def test_count_architectures_closed_form(n):
    assert M.count_architectures(n) == 2 ** n * math.factorial(n - 1)


def test_count_architectures_paper_values_and_large_n():
    assert M.count_architectures(4) == 96
    assert M.count_architectures(7) == 92_160
    assert M.count_architectures(10) == 2 ** 10 * math.factorial(9)
    with pytest.raises(ReprolibError):
        M.count_architectures(0)


def test_decision_sequences_are_distinct_and_roundtrip():
    seen = set()
    for a in M.enumerate_architectures(4):
        assert M.decode(4, M.encode(a)) == a
        seen.add(a.nodes)
    assert len(seen) == 96


def test_unknown_mixer_names_choices():
    with pytest.raises(ReprolibError, match="pooling, mlp, attention"):
        reprolib.create_model("metaformer_s12", mixer="conv", num_classes=10)
    with pytest.raises(ReprolibError):
        Architecture.parse([[0, "identity"], [2, "pooling"]])        # node 2 cannot see node 2
    with pytest.raises(ReprolibError):
        Architecture.parse([[0, "maxpool"]])


def test_metaformer_s12_shape_and_grids():
    m = reprolib.create_model("metaformer_s12", mixer="pooling", num_classes=102)
    assert m.grids == [16, 8, 4, 2]                                 # 16x16 tokens at 224 px
    blocks = [b for b in m.stages if b.__class__.__name__ == "MetaFormerBlock"]
    assert len(blocks) == 12
    assert m.head.out_features == 102
    n = sum(p.numel() for p in m.parameters())
    assert 11.5e6 < n < 12.0e6                                      # PoolFormer-S12 ~ 11.9 M


def test_layer_scale_init_is_an_option_and_defaults_to_poolformer():
    from reprolib.configs import get_config
    blocks = lambda m: [b for b in m.stages if b.__class__.__name__ == "MetaFormerBlock"]
    for b in blocks(reprolib.create_model("test_metaformer", mixer="mlp")):
        assert torch.allclose(b.layer_scale1.scale, torch.full_like(b.layer_scale1.scale, 1e-5))
        assert torch.allclose(b.layer_scale2.scale, torch.full_like(b.layer_scale2.scale, 1e-5))
    for b in blocks(reprolib.create_model("test_metaformer", mixer=FIG5, layer_scale_init_value=0.5)):
        assert torch.equal(b.layer_scale1.scale, torch.full_like(b.layer_scale1.scale, 0.5))
        assert torch.equal(b.layer_scale2.scale, torch.full_like(b.layer_scale2.scale, 0.5))
    assert get_config("metaformer_nas", "paper").layer_scale_init == 1e-5
    cpu = get_config("metaformer_nas", "cpu")
    assert cpu.layer_scale_init == 1.0
    assert E.search_run_config(cpu, 4)["layer_scale_init"] == 1.0   # part of the record hash


@pytest.mark.parametrize("mixer", ["pooling", "mlp", "attention", FIG5])
def test_tiny_models_run(mixer):
    m = reprolib.create_model("test_metaformer", mixer=mixer, num_classes=7)
    y = m(torch.randn(3, 3, 16, 16))
    assert y.shape == (3, 7) and torch.isfinite(y).all()


def test_dag_mixer_matches_figure5_by_hand():
    torch.manual_seed(0)
    arch = Architecture.parse(FIG5)
    mix = DAGMixer(8, (4, 4), arch).eval()
    x = torch.randn(2, 8, 4, 4)
    u = mix.entrance_x(x) + mix.entrance_attn(mix.attn(x))
    e = mix.edges
    k1 = e["0_1"](u)
    k2 = mix.pool(e["1_2"](k1))
    k3 = e["1_3"](k1)
    k4 = mix.pool(e["3_4"](k3))
    ref = (k2 + k4) / 2                                              # leaves 2 and 4 averaged
    assert arch.leaves == [2, 4]
    assert torch.allclose(mix(x), ref, atol=1e-6)
    # the pooling op is PoolFormer's AvgPool3x3(x) - x
    t = torch.randn(1, 1, 4, 4)
    assert torch.allclose(mix.pool(t), torch.nn.functional.avg_pool2d(
        t, 3, 1, 1, count_include_pad=False) - t)


def test_searched_model_is_the_shared_model_restricted():
    torch.manual_seed(0)
    shared = reprolib.create_model("test_metaformer", mixer={"shared": 4}, num_classes=5).eval()
    arch = Architecture.parse(FIG5)
    child = reprolib.create_model("test_metaformer", mixer=arch.to_json(), num_classes=5).eval()
    sd = shared.state_dict()
    child.load_state_dict({k: sd[k] for k in child.state_dict()})   # strict: keys are a subset
    x = torch.randn(2, 3, 16, 16)
    diff = (shared.set_arch(arch)(x) - child(x)).abs().max().item()
    assert diff == 0.0
    n_shared = sum(p.numel() for p in shared.parameters())
    n_child = sum(p.numel() for p in child.parameters())
    assert n_child < n_shared                                       # only 4 of 7 edges built


def test_every_sampled_architecture_is_valid_and_runs():
    torch.manual_seed(1)
    shared = reprolib.create_model("test_metaformer", mixer={"shared": 5}, num_classes=4)
    ctrl = M.Controller(5)
    x = torch.randn(2, 3, 16, 16)
    for _ in range(8):
        arch, logp, ent = ctrl.sample()
        assert arch.n_nodes == 5 and arch.nodes[0][0] == 0
        assert all(1 <= p < i for i, (p, _) in enumerate(arch.nodes, start=1) if i > 1)
        assert arch.n_nodes in arch.leaves and logp.item() < 0 and ent.item() > 0
        y = shared.set_arch(arch)(x)
        assert y.shape == (2, 4) and torch.isfinite(y).all()


def test_log_prob_recomputed_matches_sample():
    torch.manual_seed(2)
    for ctrl in (M.Controller(7), M.Controller(4, temperature=5.0, tanh_c=2.5)):
        for _ in range(5):
            arch, logp, _ = ctrl.sample()
            assert abs(ctrl.log_prob(arch).item() - logp.item()) < 1e-5
    # probabilities over the whole space sum to 1 (N = 3: 16 architectures)
    ctrl = M.Controller(3)
    with torch.no_grad():
        total = sum(ctrl.log_prob(a).exp().item() for a in M.enumerate_architectures(3))
    assert abs(total - 1) < 1e-5


def test_reinforce_converges_on_toy_reward():
    """N = 4, the paper's figure-5 cell as the best architecture, default entropy weight
    (1e-2) and baseline decay (0.95): pi(best) rises from 1/96 to > 0.5 in 250 updates."""
    torch.set_num_threads(1)
    hist = M.toy_reinforce(4, FIG5, samples=250, lr=3e-3, seed=0)
    assert hist["most_likely"]["nodes"] == FIG5
    assert hist["p_target"][-1] > 0.5 > 0.02 > hist["p_target"][0]
    assert sum(hist["reward"][-50:]) / 50 > 0.85 > sum(hist["reward"][:50]) / 50


@pytest.mark.slow
@pytest.mark.parametrize("n,seed", [(4, 1), (4, 2), (7, 0), (7, 2)])
def test_reinforce_converges_on_toy_reward_seeds(n, seed):
    """The notebook's toy check (lr 1.5e-3, 800 updates) converges at N = 4 and 7."""
    torch.set_num_threads(1)
    hist = M.toy_reinforce(n, E.toy_target(n), samples=800, lr=1.5e-3, seed=seed)
    assert hist["most_likely"] == hist["target"] and hist["p_target"][-1] > 0.5


def test_reinforce_step_is_the_score_function_estimate():
    """One update's gradient equals -(R - b) grad log pi(m) - beta grad H, with
    b = d b_old + (1 - d) R, log pi and H summed over the decisions."""
    torch.manual_seed(3)
    ctrl = M.Controller(3)
    g = torch.Generator().manual_seed(5)
    arch, _, _ = ctrl.sample(torch.Generator().manual_seed(5))
    _, logp, ent = ctrl(arch)
    r, b_old, d, beta = 0.7, 0.4, 0.9, 0.05
    adv = r - (d * b_old + (1 - d) * r)
    ref = torch.autograd.grad(-adv * logp - beta * ent, list(ctrl.parameters()))
    opt = torch.optim.SGD(ctrl.parameters(), lr=1.0)
    before = [p.detach().clone() for p in ctrl.parameters()]
    a2, r2, _, b = M.reinforce_step(ctrl, opt, lambda a: r, b_old, baseline_decay=d,
                                    entropy_weight=beta, clip=None, generator=g)
    assert a2 == arch and r2 == r and abs(b - (d * b_old + (1 - d) * r)) < 1e-12
    for p0, p1, gr in zip(before, ctrl.parameters(), ref):
        assert torch.allclose(p0 - p1.detach(), gr, atol=1e-6)


def test_architecture_json_roundtrip(tmp_path):
    arch = Architecture.parse(FIG5)
    p = M.save_architecture(arch, tmp_path / "a.json")
    assert M.load_architecture(p) == arch
    assert Architecture.parse(json.dumps(arch.to_json())) == arch
    assert Architecture.parse(str(p)) == arch
    m = reprolib.create_model("test_metaformer", mixer=str(p), num_classes=3)
    assert m.arch == arch


def _digits(seed=0):
    from reprolib.data import get_data
    return get_data("digits", image_size=16, batch_size=32, val_fraction=0.1, seed=seed)


def test_search_resumes_exactly(tmp_path):
    torch.set_num_threads(1)
    cfg = M.NASConfig(n_nodes=3, rounds=2, max_train_batches=2, controller_samples=3,
                      derive_samples=4)

    def run(ckpt):
        torch.manual_seed(0)
        model = reprolib.create_model("test_metaformer", mixer={"shared": 3}, num_classes=10)
        return M.search(model, _digits(), cfg, ckpt_dir=ckpt, seed=0)

    class Killed(Exception):
        pass

    full = run(tmp_path / "a")
    save = M.io.save_torch

    def save_then_die(obj, path):          # killed right after round 1's checkpoint
        save(obj, path)
        raise Killed

    M.io.save_torch = save_then_die
    try:
        with pytest.raises(Killed):
            run(tmp_path / "b")
    finally:
        M.io.save_torch = save
    assert M.load_search_checkpoint(tmp_path / "b" / "search.pt")["state"]["round"] == 1
    resumed = run(tmp_path / "b")
    keys = ("train_loss", "reward", "entropy", "most_likely")
    for h1, h2 in zip(full["history"], resumed["history"]):
        assert all(h1[k] == h2[k] for k in keys)
    assert full["arch"] == resumed["arch"] and len(full["history"]) == 2
    assert full["space_size"] == 16


def test_search_checkpoint_is_plain_data(tmp_path):
    """search.pt holds tensors and plain data only: it loads with weights_only=True."""
    torch.set_num_threads(1)
    model = reprolib.create_model("test_metaformer", mixer={"shared": 2}, num_classes=10)
    cfg = M.NASConfig(n_nodes=2, rounds=1, max_train_batches=1, controller_samples=2,
                      derive_samples=2)
    M.search(model, _digits(), cfg, ckpt_dir=tmp_path, seed=0)
    ck = torch.load(tmp_path / "search.pt", weights_only=True)
    assert ck["state"]["round"] == 1 and ck["generator"].dtype == torch.uint8
    assert M.load_search_checkpoint(tmp_path / "search.pt")["config"]["n_nodes"] == 2


class _Planted:
    """Unpickling this calls open(path, "w"): it would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_planted_pickle_search_checkpoint_is_refused(tmp_path):
    target = tmp_path / "pwned.txt"
    ck = tmp_path / "ckpt"
    ck.mkdir()
    torch.save({"model": _Planted(target), "state": {"round": 0}}, ck / "search.pt")
    model = reprolib.create_model("test_metaformer", mixer={"shared": 2}, num_classes=10)
    cfg = M.NASConfig(n_nodes=2, rounds=1, max_train_batches=1, controller_samples=1,
                      derive_samples=1)
    with pytest.raises(ReprolibError, match="search checkpoint .*refused"):
        M.search(model, _digits(), cfg, ckpt_dir=ck, seed=0)
    assert not target.exists()
    # the same pickle really does create the file when unpickled without the guard
    torch.load(ck / "search.pt", weights_only=False)
    assert target.exists()


def test_corrupt_or_foreign_search_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "search.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ReprolibError, match="corrupt or unreadable"):
        M.load_search_checkpoint(tmp_path / "search.pt")
    torch.save({"model": {}}, tmp_path / "search.pt")
    with pytest.raises(ReprolibError, match="not a MetaFormer-NAS search checkpoint"):
        M.load_search_checkpoint(tmp_path / "search.pt")


def test_searched_metaformer_compressed_roundtrip(tmp_path):
    """A searched model is data: builder + mixer=<architecture JSON>; save_compressed /
    load_compressed rebuild it with the same outputs, also when built from a JSON path."""
    torch.manual_seed(0)
    path = M.save_architecture(FIG5, tmp_path / "arch.json")
    model = reprolib.create_model("test_metaformer", mixer=str(path), num_classes=5,
                                  layer_scale_init_value=1.0).eval()
    spec = model.reprolib_spec
    assert spec["builder"] == "test_metaformer"
    assert spec["kwargs"]["mixer"] == Architecture.parse(FIG5).to_json()    # not the path
    js = reprolib.save_compressed(model, tmp_path / "searched")
    path.unlink()                                                # the model no longer needs it
    back = reprolib.load_compressed(js).eval()
    assert back.arch == Architecture.parse(FIG5)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), back(x))
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in model.parameters())


def test_compressed_file_of_another_architecture_is_refused(tmp_path):
    a = reprolib.create_model("test_metaformer", mixer=FIG5, num_classes=5)
    other = [[0, "identity"], [1, "pooling"], [2, "identity"], [3, "pooling"]]
    b = reprolib.create_model("test_metaformer", mixer=other, num_classes=5)
    reprolib.save_compressed(a, tmp_path / "a")
    reprolib.save_compressed(b, tmp_path / "b")
    (tmp_path / "b.safetensors").replace(tmp_path / "a.safetensors")  # a's JSON, b's weights
    with pytest.raises(ReprolibError, match="do not fit"):
        reprolib.load_compressed(tmp_path / "a")


def test_base_mixer_models_roundtrip(tmp_path):
    for mixer in ("pooling", "mlp", "attention"):
        m = reprolib.create_model("test_metaformer", mixer=mixer, num_classes=3).eval()
        assert m.reprolib_spec["kwargs"]["mixer"] == mixer
        back = reprolib.load_compressed(reprolib.save_compressed(m, tmp_path / mixer)).eval()
        x = torch.randn(1, 3, 16, 16)
        assert torch.equal(m(x), back(x))


def test_bad_architecture_json_is_a_clear_error():
    with pytest.raises(ReprolibError, match="cannot read an architecture"):
        Architecture.parse('{"nodes": [[0, "identity"]')


def test_uniform_architecture_is_uniform_over_the_space():
    """Every one of the 16 three-node cells is drawn with probability 1/16 (chi-square, 4,800
    draws), and the uniform policy's entropy is ln |space|."""
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    counts = {}
    for _ in range(4800):
        a = M.uniform_architecture(3, g)
        counts[a.nodes] = counts.get(a.nodes, 0) + 1
    assert len(counts) == 16
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3
    for n in (1, 4, 7):
        assert M.uniform_entropy(n) == pytest.approx(math.log(M.count_architectures(n)))


def test_search_rewards_average_batches_and_log_the_uniform_policy(monkeypatch):
    """reward_batches = k: each controller reward is the mean accuracy over k validation
    batches; uniform_samples: the uniform policy's mean reward is logged every round."""
    torch.set_num_threads(1)
    seen = []
    real = M.batch_accuracy

    def spy(model, arch, batch):
        seen.append(len(batch[1]))
        return real(model, arch, batch)

    monkeypatch.setattr(M, "batch_accuracy", spy)
    model = reprolib.create_model("test_metaformer", mixer={"shared": 3}, num_classes=10)
    cfg = M.NASConfig(n_nodes=3, rounds=2, max_train_batches=1, controller_samples=2,
                      reward_batches=3, uniform_samples=2, derive_samples=2)
    out = M.search(model, _digits(), cfg, seed=0)
    # per round: 2 uniform + 2 controller rewards + the most likely cell, 3 batches each
    assert len(seen) == 2 * (2 + 2 + 1) * 3 + 2 * 1      # + derive: 2 samples x 1 batch
    for h in out["history"]:
        assert 0 <= h["uniform_reward"] <= 1 and h["uniform_reward_max"] >= h["uniform_reward"]


def test_every_search_option_is_in_the_search_key(monkeypatch):
    """Every NASConfig field enters a search stage's key (no field left out at its default:
    the committed records were re-keyed once, tools/rekey_records.py), and the committed cpu
    records are found under those keys."""
    import dataclasses

    from reprolib import paths
    from reprolib.configs import get_config
    from reprolib.methods.metaformer_nas import NASConfig

    monkeypatch.setenv("REPROLIB_RESULTS", str(paths.ROOT / "results"))   # the committed ones
    cpu = get_config("metaformer_nas", "cpu")
    key = E.search_run_config(cpu, 4)
    assert {f.name for f in dataclasses.fields(NASConfig)} <= set(key)
    more = get_config("metaformer_nas", "cpu", reward_batches=4)
    assert E.search_run_config(more, 4)["reward_batches"] == 4
    assert all(s.done for s in E.stages(cpu))


# --------------------------------------------------------------------------- the stage graph


@pytest.mark.parametrize("profile", ["smoke", "cpu", "evidence", "gpu", "paper"])
def test_every_stage_declares_what_it_reads_builds_and_trains(profile):
    """No stage's function reaches a stage it does not declare in ``after``; every stage
    that trains declares its training and the model it builds (countable on the meta
    device); the toy check trains neither a model nor on data."""
    import dataclasses

    from reprolib.configs import get_config
    from reprolib.core.stage import declared_reads

    cfg = get_config("metaformer_nas", profile)
    g = E.PIPELINE.graph(cfg)
    for s in g:
        assert declared_reads(s) == [], s.name
        if s.role == "toy":
            assert s.train is None and s.model_spec is None
            continue
        assert s.train is not None and s.model_spec is not None, s.name
        params, _ = s.model_spec.counts()
        assert params > 0
    for s in g.select("search"):
        assert s.train.recipe_name == "search" and s.train.val_split
        assert s.train.recipe.epochs == cfg.rounds * cfg.shared_epochs
        assert s.train.recipe.lr == cfg.shared_lr and s.train.recipe.optimizer == "adamw"
    for s in g.select("retrain"):
        assert s.train.recipe_name == "retrain"        # its seed's copy of the recipe
        assert dataclasses.replace(s.train.recipe, seed=cfg.retrain.seed) == cfg.retrain
        assert s.train.val_split == (cfg.retrain.select_every > 0)


@pytest.mark.parametrize("profile", ["cpu", "evidence"])
def test_cells_are_retrained_from_the_stage_that_chose_them(profile):
    """retrain-nas<N> reads (only) its seed's search stage, retrain-random<N> (only) its
    seed's random-search stage: found by role and tags, never by parsing names."""
    from reprolib.configs import get_config

    cfg = get_config("metaformer_nas", profile)
    g = E.PIPELINE.graph(cfg)
    seeds = cfg.seeds or (cfg.seed,)
    for seed in seeds:
        for n in cfg.node_counts:
            nas = g.get("retrain", mixer=f"nas{n}", seed=seed)
            assert nas.after == [g.get("search", n_nodes=n, seed=seed)]
            assert nas.tags["searched"] and nas.tags["origin"] == "search"
            if cfg.random_samples:
                rnd = g.get("retrain", mixer=f"random{n}", seed=seed)
                assert rnd.after == [g.get("random", n_nodes=n, seed=seed)]
                assert not rnd.tags["searched"] and rnd.tags["origin"] == "random"
        for b in cfg.baselines:
            assert g.get("retrain", mixer=b, seed=seed).after == []
    assert len(g.select("toy")) == len(cfg.node_counts)
    assert len(g.select("search")) == len(cfg.node_counts) * len(seeds)


def test_nas_config_is_built_field_by_field():
    """Every NASConfig field comes from the paper config field of the same name (or is the
    stated constant shared_clip=None): changing any config field changes the NASConfig."""
    import dataclasses

    from reprolib.configs import get_config

    cfg = get_config("metaformer_nas", "evidence")
    nas = E.nas_config(cfg, 5)
    assert nas.n_nodes == 5 and nas.shared_clip is None
    names = {f.name for f in dataclasses.fields(M.NASConfig)} - {"n_nodes", "shared_clip"}
    changed = {"rounds": 3, "shared_epochs": 2, "arch_per": "epoch", "shared_lr": 0.5,
               "shared_wd": 0.25, "max_train_batches": 7, "controller_samples": 9,
               "controller_lr": 0.125, "controller_hidden": 5, "controller_clip": 0.75,
               "temperature": 2.5, "tanh_c": 1.5, "entropy_weight": 0.375,
               "baseline_decay": 0.5, "derive_samples": 11, "derive_batches": 3,
               "reward_batches": 4, "uniform_samples": 13}
    assert set(changed) == names
    for k in names:
        assert getattr(nas, k) == getattr(cfg, k), k
    other = E.nas_config(dataclasses.replace(cfg, **changed), 5)
    for k, v in changed.items():
        assert getattr(other, k) == v, k


def test_stated_values_for_plan():
    """What the paper states per recipe (for ``reprolib plan``) lives on the pipeline."""
    assert E.PIPELINE.stated["search"]["epochs"][0] == 100
    assert E.PIPELINE.stated["retrain"]["select_every"][0] == 10
    assert E.PIPELINE.departures[("search", "epochs")] == "rounds x shared_epochs"


def test_claims_without_seeds_are_an_empty_table_saying_why():
    from reprolib.configs import get_config

    cl = E.claims(get_config("metaformer_nas", "smoke"))
    assert cl.empty and "has no seeds" in cl.attrs["caption"]
