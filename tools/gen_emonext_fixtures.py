"""Generate tests/fixtures/emonext_keys/ from the reference EmoNeXt code and timm's ConvNeXt (run once, by hand).

Neither reference is part of emovid, and both need torchvision, which must not enter emovid's venv (see DESIGN.md).
The script runs in a scratch venv and replaces ``torchvision`` by a stub module (EmoNeXt only imports
``StochasticDepth``, identity at eval / drop rate 0, and an unused VGG; timm only imports names at module level)::

    python3 -m venv /tmp/ref_emonext
    /tmp/ref_emonext/bin/pip install torch==2.13.0 numpy pillow pyyaml safetensors huggingface_hub
    /tmp/ref_emonext/bin/pip install --no-deps timm                      # timm 1.0.31 was used
    git clone https://github.com/yelboudouri/EmoNeXt /tmp/scratch/emonext  # ce77dc13e13d3b09742f0f4efb9dd83fcf3b6c95
    /tmp/ref_emonext/bin/python tools/gen_emonext_fixtures.py --emonext /tmp/scratch/emonext \\
        --emonext-commit ce77dc13e13d3b09742f0f4efb9dd83fcf3b6c95 --out tests/fixtures/emonext_keys

Writes:

* ``emonext_tiny_ref.json``: keys/shapes of ``EmoNeXt(depths=[1,1,2,1], dims=[8,16,32,64], num_classes=7)`` (FB
  ConvNeXt layout + STN, SE, attention), and for formula weights (``tools/fixture_weights.py``) on a formula input
  ``[2, 3, 224, 224]``: the embedding ``forward_features(stn(x))``, the logits and the attention regulariser.
* ``emonext_base_ref.json``: keys/shapes of ``EmoNeXt`` with ConvNeXt-Base dims and the ImageNet-22k head.
* ``timm_convnext_tiny_cfg.json``: keys/shapes of timm ``ConvNeXt(depths=(1,1,2,1), dims=(8,16,32,64),
  num_classes=5)`` and its pre-logits features for formula weights on a formula input ``[2, 3, 64, 64]``.
* ``timm_convnext_base.json``: keys/shapes of ``timm.create_model("convnext_base", num_classes=21841)``.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_weights import formula_input, formula_state_dict  # noqa: E402


def install_torchvision_stub() -> None:
    """Make ``import torchvision...`` succeed with placeholder names (identity modules / opaque constants)."""

    class _Meta(type(nn.Module)):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return f"torchvision-stub.{name}"

    class _Placeholder(nn.Module, metaclass=_Meta):
        def __init__(self, *args, **kwargs):
            super().__init__()

        def forward(self, x):
            return x

    class _Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Placeholder

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            mod = _Module(spec.name)
            mod.__path__ = []
            return mod

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Finder())


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _r(t: torch.Tensor) -> list[float]:
    return [round(float(v), 6) for v in t.flatten()]


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=0) + "\n")


def emonext(repo: Path, commit: str, out: Path) -> None:
    sys.path.insert(0, str(repo))
    from models import EmoNeXt

    torch.manual_seed(0)
    ref = EmoNeXt(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64], num_classes=7).eval()
    shapes = _shapes(ref)
    ref.load_state_dict(formula_state_dict(shapes))
    x = formula_input((2, 3, 224, 224), seed=0)
    with torch.no_grad():
        feats = ref.forward_features(ref.stn(x))
        logits = ref.head(feats)
        _, weights = ref.attention(feats)
        reg = torch.mean((weights - torch.mean(weights)) ** 2)
    src = "yelboudouri/EmoNeXt models.py"
    _write(
        out / "emonext_tiny_ref.json",
        {
            "source": f"{src} EmoNeXt(depths=[1,1,2,1], dims=[8,16,32,64], num_classes=7)",
            "commit": commit,
            "command": "tools/gen_emonext_fixtures.py (see its docstring)",
            "keys": shapes,
            "reference_output": {
                "input": "formula_input((2, 3, 224, 224), seed=0)",
                "weights": "formula_state_dict(keys)",
                "features": _r(feats),
                "logits": _r(logits),
                "attention_loss": float(reg),
            },
        },
    )
    base = EmoNeXt(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024], num_classes=21841)
    _write(
        out / "emonext_base_ref.json",
        {
            "source": f"{src} EmoNeXt(depths=[3,3,27,3], dims=[128,256,512,1024], num_classes=21841)",
            "commit": commit,
            "command": "tools/gen_emonext_fixtures.py (see its docstring)",
            "keys": _shapes(base),
        },
    )


def timm_layouts(out: Path) -> None:
    import timm
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(0)
    tiny = ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64), num_classes=5).eval()
    shapes = _shapes(tiny)
    tiny.load_state_dict(formula_state_dict(shapes))
    x = formula_input((2, 3, 64, 64), seed=1)
    with torch.no_grad():
        pre = tiny.forward_head(tiny.forward_features(x), pre_logits=True)
    _write(
        out / "timm_convnext_tiny_cfg.json",
        {
            "source": f"timm {timm.__version__} timm.models.convnext.ConvNeXt(depths=(1,1,2,1), dims=(8,16,32,64), "
            "num_classes=5)",
            "command": "tools/gen_emonext_fixtures.py (see its docstring)",
            "keys": shapes,
            "reference_output": {
                "input": "formula_input((2, 3, 64, 64), seed=1)",
                "weights": "formula_state_dict(keys)",
                "pre_logits": _r(pre),
            },
        },
    )
    base = timm.create_model("convnext_base", pretrained=False, num_classes=21841)
    _write(
        out / "timm_convnext_base.json",
        {
            "source": f"timm {timm.__version__} timm.create_model('convnext_base', num_classes=21841)",
            "command": "tools/gen_emonext_fixtures.py (see its docstring)",
            "keys": _shapes(base),
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emonext", type=Path, required=True, help="EmoNeXt source tree (holds models.py)")
    ap.add_argument("--emonext-commit", help="commit of --emonext when it is not a git checkout")
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/emonext_keys"))
    a = ap.parse_args()
    install_torchvision_stub()
    a.out.mkdir(parents=True, exist_ok=True)
    commit = a.emonext_commit
    if not commit:
        commit = subprocess.check_output(["git", "-C", str(a.emonext), "rev-parse", "HEAD"], text=True).strip()
    emonext(a.emonext, commit, a.out)
    timm_layouts(a.out)


if __name__ == "__main__":
    main()
