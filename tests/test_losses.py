import math

import pytest
import torch
import torch.nn as nn

from emovid import losses as L


def test_pair_targets_rule():
    a = torch.tensor([3.0, 1.0, 2.0, 2.05])
    b = torch.tensor([1.0, 3.0, 2.0, 2.0])
    assert L.pair_targets(a, b).tolist() == [1.0, 0.0, 0.5, 1.0]
    assert L.pair_targets(a, b, tol=0.1).tolist() == [1.0, 0.0, 0.5, 0.5]


def test_ranknet_matches_formula():
    sa, sb, t = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([0.5, 1.0, 0.3]), torch.tensor([1.0, 0.0, 0.5])
    d = sa - sb
    expected = -(t * torch.log(torch.sigmoid(d)) + (1 - t) * torch.log(1 - torch.sigmoid(d))).mean()
    torch.testing.assert_close(L.ranknet_loss(sa, sb, t), expected)
    # A tie at equal scores costs log 2 (the minimum for t = 0.5).
    torch.testing.assert_close(
        L.ranknet_loss(torch.zeros(1), torch.zeros(1), torch.tensor([0.5])), torch.tensor(math.log(2))
    )


def test_pairwise_accuracy_ignores_ties():
    sa, sb = torch.tensor([1.0, 0.0, 5.0, 1.0]), torch.tensor([0.0, 1.0, 1.0, 1.0])
    t = torch.tensor([1.0, 1.0, 0.5, 0.0])
    # right, wrong, (tie target: ignored), equal scores for a decided pair: half credit.
    assert float(L.pairwise_accuracy(sa, sb, t)) == pytest.approx(0.5)


def test_listnet_matches_formula_and_masks_padding():
    s = torch.tensor([[0.1, 0.7, -0.2, 0.0]])
    rel = torch.tensor([[0.0, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    p = torch.softmax(rel[:, :3], -1)
    q = torch.log_softmax(s[:, :3], -1)
    torch.testing.assert_close(L.listnet_loss(s, rel, mask), -(p * q).sum())


def test_plackett_luce_matches_formula():
    s = torch.tensor([[2.0, 0.5, -1.0]])
    expected = -(
        (2.0 - torch.logsumexp(s[0, :], 0))
        + (0.5 - torch.logsumexp(s[0, 1:], 0))
        + (-1.0 - torch.logsumexp(s[0, 2:], 0))
    )
    torch.testing.assert_close(L.plackett_luce_loss(s), expected)
    padded = torch.tensor([[2.0, 0.5, -1.0, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(L.plackett_luce_loss(padded, mask), expected)
    # The right order is likelier than the reverse.
    assert L.plackett_luce_loss(s) < L.plackett_luce_loss(s.flip(-1))


def test_ccc_matches_definition():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(100, generator=g), torch.randn(100, generator=g)
    y = 0.6 * x + 0.3 + 0.2 * y
    mx, my = x.mean(), y.mean()
    vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
    cov = ((x - mx) * (y - my)).mean()
    torch.testing.assert_close(L.ccc(x, y), 2 * cov / (vx + vy + (mx - my) ** 2))
    assert float(L.ccc(x, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(L.ccc_loss(torch.stack([x, x], 1), torch.stack([x, y], 1))) == pytest.approx(
        (1 - float(L.ccc(x, y))) / 2, abs=1e-6
    )
    from torchmetrics.functional.regression import concordance_corrcoef

    # torchmetrics uses n-1 moments; the two agree to O(1/n).
    assert float(L.ccc(x, y)) == pytest.approx(float(concordance_corrcoef(x, y)), abs=1e-3)


def test_balanced_kl_reduces_to_kldivloss():
    g = torch.Generator().manual_seed(1)
    logp = torch.log_softmax(torch.randn(5, 7, generator=g), -1)
    t = torch.softmax(torch.randn(5, 7, generator=g), -1)
    t[0] = torch.nn.functional.one_hot(torch.tensor(6), 7).float()
    torch.testing.assert_close(L.balanced_kl_div(logp, t), nn.KLDivLoss(reduction="batchmean")(logp, t))
    w = torch.arange(1, 8, dtype=torch.float32)
    manual = (w * torch.where(t > 0, t * (t.clamp_min(1e-12).log() - logp), 0)).sum(-1).mean()
    torch.testing.assert_close(L.balanced_kl_div(logp, t, w), manual)


def test_inverse_frequency_weights():
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    w = L.inverse_frequency_weights(t)
    assert float(w[1] / w[0]) == pytest.approx(3.0, rel=1e-4) and float(w.mean()) == pytest.approx(1.0)


def test_info_nce_matches_clip_formula():
    g = torch.Generator().manual_seed(2)
    a = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    logits = 10 * a @ b.t()
    rows = -torch.log_softmax(logits, 1).diagonal().mean()
    cols = -torch.log_softmax(logits, 0).diagonal().mean()
    torch.testing.assert_close(L.info_nce(a, b, 10.0), (rows + cols) / 2)
    assert L.info_nce(a, a, 50.0) < L.info_nce(a, b, 50.0)


def test_bins_round_trip():
    v = torch.tensor([-1.0, -0.51, 0.0, 0.49, 1.0])
    assert L.value_bins(v, 4).tolist() == [0, 0, 2, 2, 3]
    torch.testing.assert_close(L.bin_centers(4), torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    logits = torch.full((1, 4), -1e4)
    logits[0, 2] = 0
    torch.testing.assert_close(L.expected_value(logits), torch.tensor([0.25]))
    assert float(L.binned_cross_entropy(logits, torch.tensor([0.3]))) == pytest.approx(0.0, abs=1e-4)
