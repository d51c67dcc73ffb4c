import numpy as np
import pytest
import torch

from conftest import frame_index
from emovid.errors import ConfigError
from emovid.video import (
    ClipSampler,
    VideoReader,
    center_clip_indices,
    indices_at_rate,
    parse_sampler,
    random_clip_indices,
    sliding_window_indices,
    uniform_indices,
)
from emovid.video import transforms as T


def test_uniform_indices_are_segment_centres():
    assert uniform_indices(48, 4) == [6, 18, 30, 42]
    assert uniform_indices(360, 16) == [int((i + 0.5) * 22.5) for i in range(16)]
    assert uniform_indices(3, 6) == [0, 0, 1, 1, 2, 2]
    assert uniform_indices(0, 4) == []


def test_random_clip_is_strided_in_bounds_and_seeded():
    for seed in range(50):
        clip = random_clip_indices(48, 8, 3, seed)
        assert np.all(np.diff(clip) == 3) and clip[0] >= 0 and clip[-1] < 48
    assert random_clip_indices(48, 8, 3, 7) == random_clip_indices(48, 8, 3, 7)
    starts = {random_clip_indices(48, 8, 3, s)[0] for s in range(200)}
    assert starts == set(range(0, 48 - 22 + 1))  # span 22: every start 0..26 is reachable
    # Longer than the video: padded with the last frame.
    assert random_clip_indices(5, 4, 2, 0) == [0, 2, 4, 4]


def test_center_clip():
    assert center_clip_indices(48, 4, 2) == [20, 22, 24, 26]


def test_sliding_windows_cover_the_video():
    wins = sliding_window_indices(20, 8, 5)
    assert [w[0] for w in wins] == [0, 5, 10, 12]
    assert all(w == list(range(w[0], w[0] + 8)) for w in wins)
    assert sliding_window_indices(20, 8, 5, cover_end=False)[-1][0] == 10
    assert sliding_window_indices(4, 8, 5) == [[0, 1, 2, 3, 3, 3, 3, 3]]
    with pytest.raises(ConfigError):
        sliding_window_indices(20, 8, 0)


def test_indices_at_rate():
    times = np.arange(30) / 30  # 1 s at 30 fps
    assert indices_at_rate(times, 5) == [0, 6, 12, 18, 24]
    assert indices_at_rate(times, 60) == list(range(30))  # faster than the video: each frame once


def test_parse_sampler_round_trip():
    for spec in ["uniform:16", "random:16x4", "center:8x2", "sliding:16x1:8", "rate:5"]:
        assert str(parse_sampler(spec)) == spec
    assert parse_sampler("sliding:16:8") == ClipSampler("sliding", num_frames=16, stride=1, hop=8)
    with pytest.raises(ConfigError, match="bad sampler spec"):
        parse_sampler("every:3")


def test_samplers_decode_the_frames_they_name(gop_video):
    with VideoReader(gop_video) as r:
        for sampler in [parse_sampler(s) for s in ["uniform:16", "random:8x4", "sliding:8x2:50", "rate:3"]]:
            for clip in sampler(len(r), r.frame_times, rng=0):
                assert [frame_index(f) for f in r.get_frames(clip)] == clip


# ---- transforms ------------------------------------------------------------------------------------------------


def test_to_tensor_layout_and_range():
    frames = np.zeros((4, 6, 8, 3), np.uint8)
    frames[2, 1, 3] = (255, 0, 51)
    x = T.to_tensor(frames)
    assert x.shape == (3, 4, 6, 8) and x.dtype == torch.float32
    assert x[:, 2, 1, 3].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_resize_short_side_and_crops():
    x = torch.rand(3, 2, 60, 80)
    y = T.ResizeShortSide(30)(x)
    assert y.shape == (3, 2, 30, 40)
    c = T.CenterCrop(20)(y)
    torch.testing.assert_close(c, y[..., 5:25, 10:30])
    g = torch.Generator().manual_seed(0)
    r1 = T.RandomCrop((10, 12), g)(x)
    g = torch.Generator().manual_seed(0)
    r2 = T.RandomCrop((10, 12), g)(x)
    torch.testing.assert_close(r1, r2)
    assert r1.shape == (3, 2, 10, 12)
    # The crop is a window of the input, the same for every frame.
    found = any(torch.equal(r1, x[..., i : i + 10, j : j + 12]) for i in range(60 - 10 + 1) for j in range(80 - 12 + 1))
    assert found


def test_constant_clip_survives_resize():
    x = torch.full((3, 2, 37, 53), 0.25)
    torch.testing.assert_close(T.ResizeShortSide(16)(x), torch.full((3, 2, 16, 23), 0.25))


def test_flip_and_normalize():
    x = torch.arange(2 * 1 * 1 * 4, dtype=torch.float32).view(2, 1, 1, 4) / 10
    always = T.RandomHorizontalFlip(p=1.0)
    torch.testing.assert_close(always(x), x.flip(-1))
    torch.testing.assert_close(T.RandomHorizontalFlip(p=0.0)(x), x)
    n = T.Normalize((0.5, 0.1), (0.5, 0.2))(x)
    torch.testing.assert_close(n[0], (x[0] - 0.5) / 0.5)
    torch.testing.assert_close(n[1], (x[1] - 0.1) / 0.2)


def test_clip_transform_eval_and_train_shapes():
    x = torch.rand(3, 4, 64, 96)
    assert T.clip_transform(32)(x).shape == (3, 4, 32, 32)
    assert T.clip_transform((32, 48), train=True, generator=torch.Generator().manual_seed(1))(x).shape == (3, 4, 32, 48)
