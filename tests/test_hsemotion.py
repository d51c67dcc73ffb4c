"""EmotiEffLib / HSEmotion EfficientNets: architecture, ONNX-initializer conversion, loading, analyze's classifier.

ONNX fixtures are made here in two layouts: (1) the way EmotiEffLib wrote its files (``torch.onnx.export`` of the
eval-mode model, opset 11, constant folding: BatchNorm folded into the convolutions, generated tensor names), and
(2) a graph written node by node with ``onnx.helper`` from the state dict alone, with ONNX's own ``SAME_UPPER``
padding (TensorFlow's "same") and unfolded BatchNorm nodes: run with ``onnx.reference`` it is an implementation of
the network independent of emovid's. Nothing is downloaded.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from emovid.errors import ModelError, WeightsUnavailableError  # noqa: E402
from emovid.models import create_model  # noqa: E402
from emovid.models.hsemotion import (  # noqa: E402
    HSEMOTION_LABELS,
    PUBLISHED_FILES,
    DepthwiseSeparable,
    HSEmotionEfficientNet,
    scaled_arch,
    tf_same_pad,
)
from emovid.models.hsemotion_onnx import git_blob_sha1, onnx_state_dict  # noqa: E402

TINY = "test_hsemotion_enet"
SIZE = 52


def randomised(name: str = TINY, seed: int = 0, **kw) -> HSEmotionEfficientNet:
    """A model whose BatchNorms hold non-trivial statistics (so folding them is visible)."""
    torch.manual_seed(seed)
    m = create_model(name, **kw).eval()
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.weight.data = torch.rand(n, generator=g) + 0.5
            mod.bias.data = torch.rand(n, generator=g) - 0.5
            mod.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return m


def export_like_emotiefflib(model: torch.nn.Module, path, size: int = SIZE) -> None:
    """``training_and_examples/convert_pt_to_onnx.py``'s call (TorchScript exporter, opset 11)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            torch.randn(1, 3, size, size),
            str(path),
            opset_version=11,
            do_constant_folding=True,
            export_params=True,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch_size"}, "output": {0: "batch_size"}},
            dynamo=False,
        )


def helper_graph(model: HSEmotionEfficientNet, path, torch_names: bool) -> None:
    """The network as an ONNX graph built from its state dict: SAME_UPPER convs, BatchNormalization nodes."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    inits, nodes = [], []
    counter = iter(range(10**6))

    def tensor(key: str) -> str:
        if not torch_names:
            name = f"t{next(counter)}"
        elif key.startswith("classifier."):  # EmotiEffLib's nn.Sequential(nn.Linear) head
            name = "classifier.0." + key[len("classifier.") :]
        else:
            name = key
        inits.append(numpy_helper.from_array(np.asarray(sd[key], np.float32), name))
        return name

    def out(prefix: str) -> str:
        return f"{prefix}_{next(counter)}"

    def silu(x: str) -> str:
        s, y = out("sig"), out("silu")
        nodes.extend([helper.make_node("Sigmoid", [x], [s]), helper.make_node("Mul", [x, s], [y])])
        return y

    def conv(x: str, name: str, bias: bool = False) -> str:
        c = model.get_submodule(name)
        y = out("conv")
        ins = [x, tensor(f"{name}.weight")] + ([tensor(f"{name}.bias")] if bias else [])
        nodes.append(
            helper.make_node(
                "Conv",
                ins,
                [y],
                kernel_shape=list(c.kernel_size),
                strides=list(c.stride),
                group=c.groups,
                auto_pad="SAME_UPPER",
            )
        )
        return y

    def bn(x: str, name: str) -> str:
        y = out("bn")
        ins = [x] + [tensor(f"{name}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        nodes.append(helper.make_node("BatchNormalization", ins, [y], epsilon=model.get_submodule(name).eps))
        return y

    def se(x: str, prefix: str) -> str:
        p = out("pool")
        nodes.append(helper.make_node("GlobalAveragePool", [x], [p]))
        s = conv(silu(conv(p, f"{prefix}.conv_reduce", True)), f"{prefix}.conv_expand", True)
        g, y = out("gate"), out("se")
        nodes.extend([helper.make_node("Sigmoid", [s], [g]), helper.make_node("Mul", [x, g], [y])])
        return y

    x = silu(bn(conv("input", "conv_stem"), "bn1"))
    for si, stage in enumerate(model.blocks):
        for bi, block in enumerate(stage):
            p = f"blocks.{si}.{bi}"
            if isinstance(block, DepthwiseSeparable):
                y = se(silu(bn(conv(x, f"{p}.conv_dw"), f"{p}.bn1")), f"{p}.se")
                y = bn(conv(y, f"{p}.conv_pw"), f"{p}.bn2")
            else:
                y = silu(bn(conv(x, f"{p}.conv_pw"), f"{p}.bn1"))
                y = se(silu(bn(conv(y, f"{p}.conv_dw"), f"{p}.bn2")), f"{p}.se")
                y = bn(conv(y, f"{p}.conv_pwl"), f"{p}.bn3")
            if block.has_skip:
                s = out("add")
                nodes.append(helper.make_node("Add", [x, y], [s]))
                y = s
            x = y
    x = silu(bn(conv(x, "conv_head"), "bn2"))
    p, f = out("pool"), out("flat")
    nodes.extend([helper.make_node("GlobalAveragePool", [x], [p]), helper.make_node("Flatten", [p], [f])])
    nodes.append(
        helper.make_node("Gemm", [f, tensor("classifier.weight"), tensor("classifier.bias")], ["output"], transB=1)
    )
    graph = helper.make_graph(
        nodes,
        "hsemotion_fixture",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", model.num_classes])],
        inits,
    )
    # opset 15: onnx.reference runs BatchNormalization-9..14 with batch statistics when momentum is set (its default)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(ReferenceEvaluator(str(path)).run(None, {"input": x.numpy()})[0])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """(model, file) exported the way EmotiEffLib exported its models."""
    m = randomised()
    path = tmp_path_factory.mktemp("hse") / "tiny_va_mtl.onnx"
    export_like_emotiefflib(m, path)
    return m, path


def probe(n: int = 3, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- architecture ------------------------------------------------------------------------------------------------


def test_tf_same_padding():
    assert tf_same_pad(224, 3, 2) == (0, 1)  # the odd pixel goes bottom/right
    assert tf_same_pad(112, 5, 2) == (1, 2)
    assert tf_same_pad(13, 5, 2) == (2, 2)
    assert tf_same_pad(260, 3, 2) == (0, 1) and tf_same_pad(65, 5, 2) == (2, 2)
    assert tf_same_pad(7, 3, 1) == (1, 1)


def test_sizes_match_timm_tf_efficientnets():
    # timm: tf_efficientnet_b0 5,288,548 and tf_efficientnet_b2 9,109,994 parameters with the 1000-class head
    with torch.device("meta"):
        b0 = create_model("enet_b0_8_va_mtl", num_classes=1000)
        b2 = create_model("enet_b2_8", num_classes=1000)
    assert sum(p.numel() for p in b0.parameters()) == 5_288_548
    assert sum(p.numel() for p in b2.parameters()) == 9_109_994
    assert [c for *_, c in scaled_arch(1.1, 1.2)] == [16, 24, 48, 88, 120, 208, 352]
    assert [r for _, r, *_ in scaled_arch(1.1, 1.2)] == [2, 3, 3, 4, 4, 5, 2]
    assert (b0.num_features, b2.num_features) == (1280, 1408)
    assert len(b0.layout()) == 81 and len(b2.layout()) == 115
    for name, size, outs, extra in (
        ("enet_b0_8_best_vgaf", 224, 8, ()),
        ("enet_b0_8_va_mtl", 224, 10, ("valence", "arousal")),
        ("enet_b2_8", 260, 8, ()),
    ):
        with torch.device("meta"):
            m = create_model(name)
        cfg = m.pretrained_cfg
        assert m.num_classes == outs and m.extra_outputs == extra and cfg.input_size == (size, size)
        assert cfg.label_names == HSEMOTION_LABELS and cfg.face_crop and cfg.in_chans == 3
        assert cfg.mean == (0.485, 0.456, 0.406) and cfg.std == (0.229, 0.224, 0.225)
        assert "AffectNet" in cfg.license and "research" in cfg.license and "Apache-2.0" in cfg.license
        src = cfg.weights[cfg.default_tag]
        assert src.url.endswith(f"/models/affectnet_emotions/onnx/{name}.onnx") and src.filename == f"{name}.onnx"
        assert src.filename in PUBLISHED_FILES
    # another head: the valence/arousal naming goes with the 10-output head only
    assert create_model(TINY, num_classes=3).extra_outputs == ()


def test_fuse_for_inference_keeps_outputs():
    m = randomised()
    x = probe()
    with torch.no_grad():
        ref = m(x)
        fused = m.fuse_for_inference()
        assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in fused.modules())
        torch.testing.assert_close(fused(x), ref, atol=1e-5, rtol=1e-5)


# ---- ONNX -> PyTorch ------------------------------------------------------------------------------------------------


def test_emotiefflib_export_layout_round_trip(tiny_onnx):
    src, path = tiny_onnx
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    # the official layout: BatchNorm folded away, TF padding as Pad nodes, SiLU as Sigmoid * x, Gemm last
    assert "BatchNormalization" not in ops and "Pad" in ops and graph.node[-1].op_type == "Gemm"
    assert any(i.name.startswith("onnx::Conv_") for i in graph.initializer)
    model = create_model(TINY).eval()
    sd, info = onnx_state_dict(path, model)
    assert info["mapping"] == "graph" and info["bn_folded"] and info["num_classes"] == 10
    model.load_state_dict(sd)  # strict
    x = probe()
    with torch.no_grad():
        ours = model(x)
        torch.testing.assert_close(ours, src(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours, run_onnx(path, x), atol=1e-5, rtol=0)
    # through the registry, as pretrained=FILE
    loaded = create_model(TINY, pretrained=str(path)).eval()
    assert loaded.load_report.ok
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ours, atol=0, rtol=0)


@pytest.mark.parametrize("torch_names", [True, False], ids=["torch-named", "anonymous"])
def test_independent_graph_with_batchnorm_nodes(tmp_path, torch_names):
    src = randomised(seed=3)
    path = tmp_path / "tiny.onnx"
    helper_graph(src, path, torch_names)
    model = create_model(TINY, pretrained=str(path)).eval()
    sd, info = onnx_state_dict(path, create_model(TINY))
    assert info["mapping"] == ("names" if torch_names else "graph") and not info["bn_folded"]
    x = probe(2, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), run_onnx(path, x), atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), src(x), atol=1e-5, rtol=0)


def test_converter_tool_writes_safetensors(tiny_onnx, tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import convert_hsemotion

    src, path = tiny_onnx
    out = tmp_path / "tiny.safetensors"
    assert convert_hsemotion.main([str(path), "--model", TINY, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["extra_outputs"] == ["valence", "arousal"] and len(summary["probe_probs"]) == 8
    assert summary["git_blob_sha1"] == git_blob_sha1(path)
    m = create_model(TINY, pretrained=str(out)).eval()
    x = probe(1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), src(x), atol=1e-5, rtol=0)


# ---- analyze's classifier ----------------------------------------------------------------------------------------


def test_classifier_gives_probabilities_and_valence_arousal(tiny_onnx):
    from emovid.analyze.classifier import EmotionClassifier

    src, path = tiny_onnx
    clf = EmotionClassifier(TINY, pretrained=str(path))
    assert clf.labels == HSEMOTION_LABELS and clf.extra_names == ("valence", "arousal") and clf.has_valence_arousal
    rgb = np.random.default_rng(0).integers(0, 255, (80, 90, 3), np.uint8)
    crops = [clf.crop(rgb, None, (10, 12, 60, 70)), clf.crop(rgb, None, (0, 0, 40, 40))]
    assert crops[0].shape == (SIZE, SIZE, 3)
    probs, extra = clf.predict_all(crops)
    assert probs.shape == (2, 8) and extra.shape == (2, 2)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(clf.model.pretrained_cfg.mean).view(1, 3, 1, 1)) / torch.tensor(
        clf.model.pretrained_cfg.std
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        raw = src(x)
    np.testing.assert_allclose(extra, raw[:, 8:].numpy(), atol=1e-4)
    np.testing.assert_allclose(probs, raw[:, :8].softmax(-1).numpy(), atol=1e-5)
    np.testing.assert_array_equal(clf.predict(crops), probs)
    e0, v0 = clf.predict_all([])
    assert e0.shape == (0, 8) and v0.shape == (0, 2)
    # an 8-class model: no extra outputs
    plain = EmotionClassifier(TINY, pretrained=None, num_classes=8)
    assert plain.extra_names == () and not plain.has_valence_arousal and plain.predict_all(crops)[1].shape == (2, 0)


# ---- weights: fetch, offline, damaged files ---------------------------------------------------------------------


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    monkeypatch.setenv("EMOVID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EMOVID_CACHE", raising=False)
    return tmp_path / "home" / "weights"


def test_offline_fetch_is_one_line_naming_the_file(offline_home):
    with pytest.raises(WeightsUnavailableError) as e:
        create_model("enet_b0_8_va_mtl", pretrained=True)
    msg = str(e.value)
    assert "\n" not in msg and "enet_b0_8_va_mtl.onnx" in msg
    assert "EMOVID_OFFLINE=1" in msg and "emovid weights fetch enet_b0_8_va_mtl.affectnet" in msg
    assert "raw.githubusercontent.com/sb-ai-lab/EmotiEffLib/" in msg
    assert e.value.path == str(offline_home / "enet_b0_8_va_mtl.onnx")


def test_tampered_published_file_is_refused(offline_home, tiny_onnx):
    _, path = tiny_onnx
    offline_home.mkdir(parents=True)
    (offline_home / "enet_b0_8_va_mtl.onnx").write_bytes(path.read_bytes())  # right format, not the published file
    with pytest.raises(ModelError, match=r"not the published enet_b0_8_va_mtl.onnx \(git blob") as e:
        create_model("enet_b0_8_va_mtl", pretrained=True)
    assert "\n" not in str(e.value) and "emovid weights fetch" in str(e.value)


def test_git_blob_sha1(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"


def _one_line_error(path, model=None, match: str = ""):
    with pytest.raises(ModelError, match=match) as e:
        create_model(TINY, pretrained=str(path)) if model is None else onnx_state_dict(path, model)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_malformed_onnx_files_give_clear_errors(tmp_path, tiny_onnx):
    _, path = tiny_onnx
    data = path.read_bytes()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07" + bytes(range(256)) * 4)
    _one_line_error(junk, match="not a readable ONNX file|convolutions")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(cut, match="not a readable ONNX file|convolutions|damaged|not a weight")
    # another architecture: the same network with another head, or another width
    _one_line_error(path, create_model(TINY, num_classes=8), match=r"classifier is \(10, 24\).*\(8, 24\)")
    _one_line_error(path, create_model(TINY, stem_chans=16), match=r"conv_stem weight is \(8, 3, 3, 3\)")
    _one_line_error(path, create_model("test_hsemotion_enet", arch=((("ds", 1, 3, 1, 1, 8),))), match="convolutions")
    # a weight altered to NaN
    m = onnx.load(str(path))
    w = next(i for i in m.graph.initializer if i.name.startswith("onnx::Conv_"))
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] = np.nan
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    bad = tmp_path / "nan.onnx"
    onnx.save(m, str(bad))
    _one_line_error(bad, match="NaN")
    # weights in an external file are never read
    m = onnx.load(str(path))
    t = m.graph.initializer[0]
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    t.external_data.add(key="location", value="../../../etc/passwd")
    ext = tmp_path / "ext.onnx"
    ext.write_bytes(m.SerializeToString())
    _one_line_error(ext, match="external data file")
