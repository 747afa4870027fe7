"""The Cascade Mask R-CNN Swin detector (reprolib.models.detection), SiDT on it, and the
pure-PyTorch roi_align torchvision's detection parts need on a machine without its compiled
operators (reprolib._compat)."""

import copy
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

import reprolib  # noqa: F401,I001  (installs the torchvision shim before timm)
from reprolib.core import _compat
from reprolib.errors import ReprolibError
from reprolib.core.measure import count_flops, count_params
from reprolib.methods import sidt
from reprolib.models import detection

LOSSES = {"loss_objectness", "loss_rpn_box_reg"} | {
    f"loss_{k}_{s}" for k in ("classifier", "box_reg", "mask") for s in (1, 2, 3)}


# --------------------------------------------------------------------------- roi_align


def _kernel_roi_align(inp, rois, scale, ph, pw, sr, aligned):
    """torchvision's roi_align CPU kernel, transcribed loop by loop."""
    n, c, h, w = inp.shape
    out = torch.zeros(len(rois), c, ph, pw, dtype=inp.dtype)

    def bil(f, y, x):
        if y < -1.0 or y > h or x < -1.0 or x > w:
            return torch.zeros(c, dtype=inp.dtype)
        y, x = max(y, 0.0), max(x, 0.0)
        yl, xl = int(y), int(x)
        if yl >= h - 1:
            yh = yl = h - 1
            y = float(yl)
        else:
            yh = yl + 1
        if xl >= w - 1:
            xh = xl = w - 1
            x = float(xl)
        else:
            xh = xl + 1
        ly, lx = y - yl, x - xl
        return ((1 - ly) * (1 - lx) * f[:, yl, xl] + (1 - ly) * lx * f[:, yl, xh]
                + ly * (1 - lx) * f[:, yh, xl] + ly * lx * f[:, yh, xh])

    off = 0.5 if aligned else 0.0
    for k, r in enumerate(rois.tolist()):
        sw, sh = r[1] * scale - off, r[2] * scale - off
        rw, rh = r[3] * scale - off - sw, r[4] * scale - off - sh
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = sr if sr > 0 else math.ceil(rh / ph)
        gw = sr if sr > 0 else math.ceil(rw / pw)
        f = inp[int(r[0])]
        for p in range(ph):
            for q in range(pw):
                acc = torch.zeros(c, dtype=inp.dtype)
                for iy in range(gh):
                    y = sh + p * rh / ph + (iy + .5) * rh / ph / gh
                    for ix in range(gw):
                        acc += bil(f, y, sw + q * rw / pw + (ix + .5) * rw / pw / gw)
                out[k, :, p, q] = acc / max(gh * gw, 1)
    return out


def _rois(n, g, lo=-8.0, hi=(80.0, 60.0), size=50.0):
    b = torch.randint(0, 2, (n, 1), generator=g).double()
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor(hi) + lo
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    return torch.cat([b, xy, xy + wh], 1)


@pytest.mark.parametrize("sr,aligned", [(0, False), (0, True), (2, False), (3, True)])
def test_roi_align_fallback_equals_the_kernel(sr, aligned):
    g = torch.Generator().manual_seed(sr)
    x = torch.randn(2, 3, 13, 17, generator=g, dtype=torch.float64)
    rois = _rois(12, g)               # some reach outside the map: sampled as 0 there
    rois[0, 3:] = rois[0, 1:3]        # an empty box
    ours = _compat.roi_align_reference(x, rois, 0.25, 4, 3, sr, aligned)
    assert torch.allclose(ours, _kernel_roi_align(x, rois, 0.25, 4, 3, sr, aligned), atol=1e-12)


def test_roi_align_fallback_equals_torchvisions_python_version_inside_the_map():
    # torchvision's own Python transcription of the CUDA kernel (its deterministic path)
    ra = importlib.import_module("torchvision.ops.roi_align")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 13, 17, generator=g, dtype=torch.float64)
    rois = _rois(20, g, lo=0.0, hi=(40.0, 30.0), size=20.0)
    for sr, al in ((0, False), (0, True), (2, True)):
        want = ra._roi_align.__wrapped__(x, rois, 0.25, 7, 7, sr, al)
        assert torch.allclose(_compat.roi_align_reference(x, rois, 0.25, 7, 7, sr, al), want,
                              atol=1e-12)


def test_roi_align_is_differentiable_and_reached_through_torchvision():
    import torchvision

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1., 2., 20., 30.], [1, -3., 4., 40., 15.], [0, 10., 10., 12., 13.]],
                        dtype=torch.float64)
    f = lambda t: torchvision.ops.roi_align(t, rois, (3, 4), 0.25, 0, True)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.allclose(f(x), _compat.roi_align_reference(x, rois, 0.25, 3, 4, 0, True))
    assert torchvision.ops.roi_align(x, rois[:0], 7).shape == (0, 2, 7, 7)


# --------------------------------------------------------------------------- the detector


def _batch(g, sizes=((90, 101), (77, 96))):
    imgs, targets = [], []
    for h, w in sizes:
        imgs.append(torch.rand(3, h, w, generator=g))
        boxes = torch.tensor([[10., 12., 40., 50.], [45., 20., 80., 70.]])
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        for i, b in enumerate(boxes.int().tolist()):
            masks[i, b[1]:b[3], b[0]:b[2]] = 1
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 3]), "masks": masks})
    return imgs, targets


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return reprolib.create_model("cascade_mask_rcnn_swin_tiny")


def test_train_mode_returns_every_loss(tiny):
    imgs, targets = _batch(torch.Generator().manual_seed(0))
    tiny.train()
    losses = tiny(imgs, targets)
    assert set(losses) == LOSSES
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    body = tiny.backbone.body.layers[0].blocks[0].attn.qkv.weight
    head = tiny.roi_heads.mask_predictors[2].mask_fcn_logits.weight
    assert body.grad is not None and body.grad.abs().sum() > 0
    assert head.grad is not None
    tiny.zero_grad(set_to_none=True)
    with pytest.raises(ReprolibError, match="needs targets"):
        tiny.roi_heads(None, None, None, None)


def test_eval_mode_returns_torchvision_detections(tiny):
    imgs, _ = _batch(torch.Generator().manual_seed(1), sizes=((61, 97), (100, 83)))
    tiny.eval()
    with torch.no_grad():
        out = tiny(imgs)
    assert len(out) == 2
    for o, img in zip(out, imgs):
        n = len(o["boxes"])
        assert set(o) == {"boxes", "labels", "scores", "masks"}
        assert o["boxes"].shape == (n, 4) and o["masks"].shape == (n, 1, *img.shape[1:])
        assert n <= 100 and (o["scores"] > 0.05).all() and (o["scores"] <= 1).all()
        assert ((o["labels"] >= 1) & (o["labels"] <= 3)).all()
        assert (o["boxes"][:, 2:] >= o["boxes"][:, :2]).all()
        assert (o["boxes"][:, 2] <= img.shape[2]).all() and (o["boxes"][:, 3] <= img.shape[1]).all()
        assert ((o["masks"] >= 0) & (o["masks"] <= 1)).all()


def test_scores_are_averaged_over_the_stages(tiny, monkeypatch):
    """The final class scores are the softmax of the three stages' logits averaged."""
    imgs, _ = _batch(torch.Generator().manual_seed(2))
    heads = tiny.roi_heads
    logits = []
    orig = heads._box_forward

    def spy(*a, **k):
        out = orig(*a, **k)
        logits.append(out[0])
        return out

    monkeypatch.setattr(heads, "_box_forward", spy)
    monkeypatch.setattr(heads, "score_thresh", 0.0)
    monkeypatch.setattr(heads, "detections_per_img", 10 ** 6)
    monkeypatch.setattr(heads, "nms_thresh", 1.0)
    tiny.eval()
    with torch.no_grad():
        out = tiny(imgs[:1])
    assert len(logits) == 3
    want = F.softmax(torch.stack(logits).mean(0), -1)[:, 1:]
    got = out[0]["scores"].sort(descending=True).values
    assert torch.allclose(got, want.reshape(-1).sort(descending=True).values[:len(got)])


def test_det_block_pads_before_shifting():
    """A feature map that is not a multiple of the window is padded first, then shifted:
    the same as timm's block run on the padded map, cropped."""
    from timm.models.swin_transformer import SwinTransformerBlock

    swin = detection.det_swin(embed_dim=16, depths=(2,), num_heads=(2,), window_size=4,
                              drop_path_rate=0.0)
    blk = swin.layers[0].blocks[1]
    assert isinstance(blk, SwinTransformerBlock) and blk.shift_size == (2, 2)
    x = torch.randn(1, 9, 11, 16)
    ours = blk._attn(x)
    ref = SwinTransformerBlock._attn(blk, F.pad(x, (0, 0, 0, 1, 0, 3)))[:, :9, :11]
    assert torch.allclose(ours, ref, atol=1e-6)
    y = torch.randn(1, 8, 12, 16)         # multiples of the window: timm's own block
    assert torch.allclose(blk._attn(y), SwinTransformerBlock._attn(blk, y), atol=1e-6)


def _closed_form(num_classes, agnostic=False) -> int:
    """Parameters of the Swin-T Cascade Mask R-CNN, layer by layer."""
    d, depths, heads, m = 96, (2, 2, 6, 2), (3, 6, 12, 24), 7
    swin = 3 * d * 16 + d + 2 * d                                  # patch embed + its norm
    for s, (n, h) in enumerate(zip(depths, heads)):
        c = d * 2 ** s
        if s:
            swin += 4 * (c // 2) * 2 + 4 * (c // 2) * c            # merging: norm + reduction
        blk = 2 * c + (3 * c * c + 3 * c) + (c * c + c) + (2 * m - 1) ** 2 * h \
            + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c)
        swin += n * blk
    swin += 2 * 8 * d                                              # timm's final norm (stage 4)
    norms = sum(2 * d * 2 ** s for s in range(3))
    fpn = sum(d * 2 ** s * 256 + 256 + 9 * 256 * 256 + 256 for s in range(4))
    rpn = 9 * 256 * 256 + 256 + 256 * 3 + 3 + 256 * 12 + 12
    reg = 4 if agnostic else 4 * (num_classes - 1)
    box = 4 * (9 * 256 * 256 + 2 * 256) + 256 * 49 * 1024 + 1024 \
        + 1024 * num_classes + num_classes + 1024 * reg + reg
    mask = 4 * (9 * 256 * 256 + 256) + 4 * 256 * 256 + 256 + 256 * (num_classes - 1) \
        + num_classes - 1
    return swin + norms + fpn + rpn + 3 * (box + mask)


@pytest.fixture(scope="module")
def swin_t_det():
    return reprolib.create_model("cascade_mask_rcnn_swin_t", num_classes=81)


def test_swin_t_detector_has_the_baselines_size(swin_t_det):
    n = count_params(swin_t_det)
    assert n == _closed_form(81) == 85_629_804            # the Swin baseline: 86 M
    assert round(n / 1e6) == 86
    body = count_params(swin_t_det.backbone.body) + count_params(swin_t_det.backbone.norms)
    assert round(body / 1e6) == 28                        # Table II backbone column
    agn = reprolib.create_model("cascade_mask_rcnn_swin_t", num_classes=81, class_agnostic=True)
    assert count_params(agn) == _closed_form(81, agnostic=True)


def test_pruned_swin_t_detector_counts(swin_t_det):
    scored = sidt.attach_scores(copy.deepcopy(swin_t_det))
    dense = count_params(scored) - sum(a.numel() for a in sidt.scores(scored).values())
    body = scored.backbone.body
    for ratio in (0.2, 0.4):
        small = sidt.prune(scored, ratio, "layer")
        arch = sidt.arch(small.backbone.body)
        removed = count_params(body) - sum(a.numel() for a in sidt.scores(body).values()) \
            - sidt.param_count_closed_form(body, arch)
        assert count_params(small) == dense - removed
        bb = count_params(small.backbone.body) + count_params(small.backbone.norms)
        assert round(bb / 1e6) == {0.2: 22, 0.4: 17}[ratio]       # paper: 22 / 16 M
        assert count_params(small.roi_heads) == count_params(scored.roi_heads)


def test_flop_count_at_1280x800_matches_the_baseline(swin_t_det):
    flops = count_flops(_meta(swin_t_det).flops_probe(), (3, 800, 1280))
    assert abs(flops / 1e9 - 745) < 5                    # Swin baseline: 745 G


def _meta(model):
    return copy.deepcopy(model).to("meta")


def test_meta_flop_count_equals_the_real_one(tiny):
    real = count_flops(tiny.flops_probe(50, 10), (3, 96, 128))
    assert count_flops(_meta(tiny).flops_probe(50, 10), (3, 96, 128)) == real > 0


# --------------------------------------------------------------------------- SiDT on the detector


def test_sidt_on_the_detector_ratio0_identity_and_saving(tmp_path):
    torch.manual_seed(0)
    det = reprolib.create_model("cascade_mask_rcnn_swin_tiny").eval()
    imgs, _ = _batch(torch.Generator().manual_seed(3))
    sidt.attach_scores(det)
    sc = sidt.scores(det)
    assert len(sc) == 16 and all(n.startswith("backbone.body.layers.") for n in sc)
    with torch.no_grad():
        for a in sc.values():
            a.uniform_(0.5, 1.5)
        ref = det(imgs)
    p0, p4 = sidt.prune(det, 0.0), sidt.prune(det, 0.4)
    assert not sidt.scores(p0) and det.roi_heads is not p0.roi_heads
    with torch.no_grad():
        out = p0(imgs)
    for a, b in zip(ref, out):
        assert torch.equal(a["labels"], b["labels"]) and len(a["boxes"]) == len(b["boxes"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
        assert torch.allclose(a["scores"], b["scores"], atol=1e-5)
    assert count_params(p0) == count_params(det) - sum(a.numel() for a in sc.values())
    assert count_params(p4) < count_params(p0)
    assert count_params(p4.roi_heads) == count_params(p0.roi_heads)
    assert p4.reprolib_spec["builder"] == "cascade_mask_rcnn_swin_tiny"
    reprolib.save_compressed(p4, tmp_path / "p4")
    back = reprolib.load_compressed(tmp_path / "p4").eval()
    assert count_params(back) == count_params(p4)
    with torch.no_grad():
        for a, b in zip(p4.eval()(imgs), back(imgs)):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    reprolib.save_compressed(det, tmp_path / "scored")          # the searched detector too
    assert len(sidt.scores(reprolib.load_compressed(tmp_path / "scored"))) == 16


def test_bad_detector_arguments():
    with pytest.raises(ReprolibError, match="num_classes=1"):
        reprolib.create_model("cascade_mask_rcnn_swin_tiny", num_classes=1)
    with pytest.raises(ReprolibError, match="box loss.*giou"):
        reprolib.create_model("cascade_mask_rcnn_swin_tiny", box_loss="l2")


def test_smooth_l1_and_class_agnostic_variants_train():
    torch.manual_seed(0)
    det = reprolib.create_model("cascade_mask_rcnn_swin_tiny", class_agnostic=True,
                                box_loss="smooth_l1").train()
    imgs, targets = _batch(torch.Generator().manual_seed(4))
    losses = det(imgs, targets)
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    assert det.roi_heads.box_predictors[0].bbox_pred.out_features == 4


# --------------------------------------------------------------------------- the pipeline's graph


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu", "paper"])
def test_detection_graph_declares_what_each_stage_reads(profile):
    """Every stage of every profile declares the stages it reads (a static check of its
    function), every training stage its recipe and model; the roles the tables read."""
    from reprolib.configs import get_config, profiles
    from reprolib.core.stage import declared_reads
    from reprolib.experiments.sidt_detection import PIPELINE

    assert profile in profiles("sidt_detection")
    cfg = get_config("sidt_detection", profile)
    g = PIPELINE.graph(cfg)
    assert g.roles() == ["train", "search", "finetune", "reference"]
    for s in g:
        assert declared_reads(s) == [], (s.name, declared_reads(s))
        assert (s.train is not None) == (s.role != "reference"), s.name
        if s.train is not None:
            assert s.model_spec is not None and s.model_spec.builder == cfg.model
            assert s.train.recipe is getattr(cfg, s.train.recipe_name)
    train, search = g.get("train"), g.get("search")
    tunes = g.select("finetune")
    assert [t.tags["ratio"] for t in tunes] == [0.0, *cfg.ratios]
    assert search.after == [train] and all(t.after == [search] for t in tunes)
    assert g.get("reference").after == tunes
    assert search.train.l1 == cfg.l1_strength and tunes[0].train.l1 == 0
    # the classes the spec counts are the ones the data gives the detector (background too)
    n = train.model_spec.kwargs["num_classes"]
    assert n == (4 if cfg.dataset == "coco_shapes" else 81)
