"""VAERR's ten losses (VAERR) against their formulas, computed here by hand in plain Python on fixed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from emovid import losses_vaerr as V
from emovid.errors import ConfigError

# N = 3 frames, bins = 2: per dimension [p_bin0, p_bin1, value]; dimension 0 arousal, 1 valence.
PRED = [
    [[0.7, 0.3, 0.1], [0.6, 0.4, -0.3]],
    [[0.2, 0.8, 0.4], [0.1, 0.9, 0.2]],
    [[0.3, 0.7, -0.2], [0.3, 0.7, 0.5]],
]
TARGET = [
    [[1.0, 0.0, 0.0], [1.0, 0.0, -0.5]],
    [[0.0, 1.0, 0.5], [0.0, 1.0, 0.3]],
    [[1.0, 0.0, -0.5], [0.0, 1.0, 0.6]],
]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def col(rows, d, k):
    return [r[d][k] for r in rows]


def mean(x):
    return sum(x) / len(x)


def var(x):  # unbiased, as torch.var in VAERR's cccLoss.py
    m = mean(x)
    return sum((a - m) ** 2 for a in x) / (len(x) - 1)


def ccc_loss_by_hand(p, t, eps=1e-10):
    mt, mp = mean(t) + eps, mean(p) + eps
    vt, vp = var(t) + eps, var(p) + eps
    dp, dt = [a - mp for a in p], [b - mt for b in t]
    cov = sum(a * b for a, b in zip(dp, dt, strict=True))
    cor = cov / (math.sqrt(sum(a * a for a in dp)) * math.sqrt(sum(b * b for b in dt)))
    sdt, sdp = math.sqrt(var(t)) + eps, math.sqrt(var(p)) + eps
    return 1 - 2 * cor * sdt * sdp / (vt + vp + (mt - mp) ** 2)


def ce_by_hand(d):
    """nn.CrossEntropyLoss on the bin outputs (log-softmax of the probabilities VAERR's network emits)."""
    total = 0.0
    for r, t in zip(PRED, TARGET, strict=False):
        z = r[d][:2]
        label = max(range(2), key=lambda k: (t[d][k], -k))
        total += -(z[label] - math.log(sum(math.exp(v) for v in z)))
    return total / len(PRED)


def mse_by_hand(d):
    return mean([(a - b) ** 2 for a, b in zip(col(PRED, d, 2), col(TARGET, d, 2), strict=False)])


CCC = [ccc_loss_by_hand(col(PRED, d, 2), col(TARGET, d, 2)) for d in (0, 1)]
CE = [ce_by_hand(d) for d in (0, 1)]
MSE = [mse_by_hand(d) for d in (0, 1)]


def loss(name, **kw):
    return float(V.vaerr_loss(name, _t(PRED), _t(TARGET), **kw))


def test_ccc_loss_formula_and_extremes():
    p, t = [0.1, 0.4, -0.2, 0.3], [0.0, 0.5, -0.5, 0.2]
    assert float(V.vaerr_ccc_loss(_t(p), _t(t))) == pytest.approx(ccc_loss_by_hand(p, t), rel=1e-9)
    assert float(V.vaerr_ccc_loss(_t(t), _t(t))) == pytest.approx(0.0, abs=1e-8)  # perfect agreement
    z = [0.2, 0.5, -0.5, -0.2]  # zero mean: its mirror image disagrees completely
    assert float(V.vaerr_ccc_loss(_t([-x for x in z]), _t(z))) == pytest.approx(2.0, abs=1e-6)


def test_losses_1_to_8_match_their_formulas():
    assert loss(1) == pytest.approx(
        mean([(a - b) ** 2 for d in (0, 1) for a, b in zip(col(PRED, d, 2), col(TARGET, d, 2), strict=False)])
    )
    assert loss(2) == pytest.approx(CCC[0] + CCC[1])
    assert loss(3) == pytest.approx(CE[0] + CE[1])
    bce = [
        mean(
            [
                -(t * math.log(p) + (1 - t) * math.log(1 - p))
                for r, q in zip(PRED, TARGET, strict=False)
                for p, t in zip(r[d][:2], q[d][:2], strict=False)
            ]
        )
        for d in (0, 1)
    ]
    assert loss(4) == pytest.approx(bce[0] + bce[1])
    assert loss(5) == pytest.approx(sum(0.5 * CCC[d] + 0.5 * CE[d] for d in (0, 1)))
    assert loss(6) == pytest.approx(sum(0.5 * CCC[d] + 0.25 * CE[d] + 0.25 * MSE[d] for d in (0, 1)))
    assert loss(7) == pytest.approx(CCC[0] + 0.5 * CE[0] + CCC[1])
    assert loss(8) == pytest.approx(CCC[0] + 0.5 * CE[0] + 0.5 * MSE[0] + CCC[1])


def test_names_and_numbers_are_the_same_losses():
    for n, name in V.VAERR_LOSS_NAMES.items():
        assert V.vaerr_loss_name(n) == V.vaerr_loss_name(str(n)) == name
        if n < 9:
            assert loss(name) == loss(n)
    assert V.VAERR_LOSS_NAMES[5] == "ccc+ce" and V.VAERR_LOSS_NAMES[9] == "ccc+ncce"
    with pytest.raises(ConfigError, match="1..10"):
        V.vaerr_loss_name("11")


def soft_ce_by_hand(d):
    total = 0.0
    for r, t in zip(PRED, TARGET, strict=False):
        z = r[d][:2]
        lse = math.log(sum(math.exp(v) for v in z))
        total += -sum(t[d][k] * (z[k] - lse) for k in range(2))
    return total / len(PRED)


def test_ncce_losses_9_and_10():
    # k-means with k = 2 on the one-hot targets starts from their first two rows and keeps them: arousal targets
    # are clusters [0, 1, 0]; continued on the predictions [0.7 0.3], [0.2 0.8], [0.3 0.7] -> [0, 1, 1], so the
    # costs 1 + |k(y) - k(p)| are [1, 1, 2]. Valence: targets [0, 1, 1], predictions [0, 1, 1] -> costs 1.
    params = [torch.tensor([3.0, 4.0])]  # L2 term: 0.01 * ||(3, 4)|| = 0.05
    l2 = 0.01 * 5.0
    ncce_a = (4 / 3) * soft_ce_by_hand(0) + l2
    ncce_v = 1.0 * soft_ce_by_hand(1) + l2
    expected9 = CCC[0] + CCC[1] + ncce_a / 10 + ncce_v / 10
    assert loss(9, params=params) == pytest.approx(expected9)
    assert loss("ccc+ncce+mse", params=params) == pytest.approx(expected9 + MSE[0] + MSE[1])


def test_kmeans_centres_carry_over_between_batches():
    state = V.KMeansState()
    V.vaerr_loss(9, _t(PRED), _t(TARGET), state=state, params=[])
    # arousal: fitted on the targets ([1, 0], [0, 1]), then on the predictions: the means of their clusters
    torch.testing.assert_close(state.centres[0], torch.tensor([[0.7, 0.3], [0.25, 0.75]]))
    labels, centres = V.kmeans(torch.tensor([[0.9, 0.1], [0.0, 1.0]]), 2, centres=state.centres[0])
    assert labels.tolist() == [0, 1]
    # an empty cluster keeps its centre (VAERR would divide by zero)
    labels, centres = V.kmeans(
        torch.tensor([[1.0, 0.0], [0.9, 0.1]]), 2, centres=torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    )
    assert labels.tolist() == [0, 0] and centres[1].tolist() == [0.0, 1.0]


def test_targets_layout_is_arousal_first_one_hot_then_value():
    va = torch.tensor([[0.3, -0.9]])  # emovid order: valence, arousal
    t = V.vaerr_targets(va, 4)
    assert t.shape == (1, 2, 5)
    assert t[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0, -0.9])  # arousal -0.9: first of 4 bins of [-1, 1]
    assert t[0, 1].tolist() == pytest.approx([0.0, 0.0, 1.0, 0.0, 0.3])  # valence 0.3: third bin [0, 0.5)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\[N, 2, bins\+1\]"):
        V.vaerr_loss(5, torch.zeros(3, 42), torch.zeros(3, 42))
