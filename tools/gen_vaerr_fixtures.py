"""Generate tests/fixtures/vaerr_keys/ from the reference VAERR and lipreading model code (run once, by hand).

The reference code is NOT part of emovid. Get the two repositories (any machine with git), then run this script
with the emovid venv (the reference models need only torch and numpy)::

    git clone https://github.com/Instassa/VAERR_SelfSupervisedVE /tmp/scratch/vaerr
    git clone https://github.com/mpc001/Lipreading_using_Temporal_Convolutional_Networks /tmp/scratch/lip
    /work/venv/bin/python tools/gen_vaerr_fixtures.py --vaerr /tmp/scratch/vaerr --lipreading /tmp/scratch/lip \\
        --out tests/fixtures/vaerr_keys

(the committed fixtures were made from trees exported with ``git archive``, passing ``--vaerr-commit
b28442c1f98419423e72e3c14ed5a89d9d94de7d --lipreading-commit 0cc99fab046bd959578f2baac52e654746da4825``).

Writes:

* ``vaerr_emotion_model_video.json``: keys and shapes of VAERR's ``EmotionModelVideo`` as ``main.py`` builds it
  (``n_classes = 2 * (bins + 1) = 42``, ``relu_type="relu"``, GRU hidden 256), plus the raw per-frame outputs of its
  classifier ``gru.fc`` and the trunk features for a formula-weighted model (``tools/fixture_weights.py``) on a
  formula input ``[1, 5, 88, 88]`` (VAERR's ``[B, T, H, W]`` greyscale layout).
* ``lipreading_resnet18_mstcn.json`` / ``lipreading_resnet18_prelu_tcn.json``: keys and shapes of mpc001's
  ``Lipreading`` model for its ``configs/lrw_resnet18_mstcn.json`` (Swish, the LRW model zoo) and for the
  class default ``relu_type="prelu"`` (single-branch TCN), i.e. the ``model_state_dict`` of their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_weights import formula_input, formula_state_dict  # noqa: E402


def _commit(repo: Path) -> str:
    try:
        return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


def _shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _r(t: torch.Tensor) -> list:
    return [round(float(v), 6) for v in t.flatten()]


def vaerr(repo: Path, out: Path, commit: str) -> None:
    sys.path.insert(0, str(repo))
    from model.modelVideoClassReg import EmotionModelVideo

    torch.manual_seed(0)
    model = EmotionModelVideo(n_classes=2 * (20 + 1), bins=20).eval()
    shapes = _shapes(model)
    model.load_state_dict(formula_state_dict(shapes))
    captured = {}
    model.trunk.register_forward_hook(lambda m, i, o: captured.__setitem__("trunk", o.detach()))
    model.gru.fc.register_forward_hook(lambda m, i, o: captured.__setitem__("fc", o.detach()))
    x = formula_input((1, 5, 88, 88), seed=0)
    with torch.no_grad():
        model(x, [5])
    data = {
        "source": "Instassa/VAERR_SelfSupervisedVE model/modelVideoClassReg.py "
        "EmotionModelVideo(n_classes=42, bins=20)",
        "commit": commit,
        "command": "tools/gen_vaerr_fixtures.py (see its docstring)",
        "keys": shapes,
        "reference_output": {
            "input": "formula_input((1, 5, 88, 88), seed=0) as [B, T, H, W]",
            "weights": "formula_state_dict(keys)",
            "gru_fc": _r(captured["fc"]),
            "gru_fc_shape": list(captured["fc"].shape),
            "trunk_first8": _r(captured["trunk"][:, :8]),
            "trunk_shape": list(captured["trunk"].shape),
            "trunk_sum": round(float(captured["trunk"].sum()), 4),
        },
    }
    (out / "vaerr_emotion_model_video.json").write_text(json.dumps(data, indent=0) + "\n")
    sys.path.remove(str(repo))


def lipreading(repo: Path, out: Path, commit: str) -> None:
    sys.path.insert(0, str(repo))
    from lipreading.model import Lipreading

    cfg = json.loads((repo / "configs" / "lrw_resnet18_mstcn.json").read_text())
    tcn = {
        "num_layers": cfg["tcn_num_layers"],
        "kernel_size": cfg["tcn_kernel_size"],
        "dropout": cfg["tcn_dropout"],
        "dwpw": cfg["tcn_dwpw"],
        "width_mult": cfg["tcn_width_mult"],
    }
    variants = {
        "lipreading_resnet18_mstcn.json": dict(relu_type=cfg["relu_type"], tcn_options=tcn),
        "lipreading_resnet18_prelu_tcn.json": dict(relu_type="prelu", tcn_options={**tcn, "kernel_size": [3]}),
    }
    for name, kw in variants.items():
        model = Lipreading(modality="video", hidden_dim=256, backbone_type="resnet", num_classes=500, **kw)
        data = {
            "source": f"mpc001/Lipreading_using_Temporal_Convolutional_Networks lipreading/model.py Lipreading({kw})",
            "commit": commit,
            "command": "tools/gen_vaerr_fixtures.py (see its docstring)",
            "keys": _shapes(model),
        }
        (out / name).write_text(json.dumps(data, indent=0) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vaerr", type=Path, required=True)
    ap.add_argument("--lipreading", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/vaerr_keys"))
    ap.add_argument("--vaerr-commit", help="commit of --vaerr when it is an exported tree, not a git checkout")
    ap.add_argument("--lipreading-commit", help="commit of --lipreading when it is an exported tree")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    vaerr(a.vaerr, a.out, a.vaerr_commit or _commit(a.vaerr))
    lipreading(a.lipreading, a.out, a.lipreading_commit or _commit(a.lipreading))


if __name__ == "__main__":
    main()
