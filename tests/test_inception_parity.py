"""Parity of the Flax FID Inception with an independent plain-torch twin of pytorch-fid's network.

The twin below is written from the architecture (torchvision's ``Inception3`` layout with
pytorch-fid's FID blocks ``FIDInceptionA/C/E_1/E_2``: 3x3 average pools that exclude the zero
padding in Mixed_5b-d, 6b-e and 7b, a 3x3 max pool in Mixed_7c's pool branch; conv without bias,
BatchNorm eps 1e-3 on running statistics, ReLU) and runs as pytorch-fid's
``InceptionV3(resize_input=True, normalize_input=True)`` does: bilinear resize to 299
(``align_corners=False``), ``2x - 1``, the four blocks, adaptive average pool -> 2048 ("pool3").
Its ``state_dict()`` keys are pytorch-fid's (``Mixed_5b.branch1x1.conv.weight``, ..., ``fc.*``),
so random weights (random BatchNorm statistics too) go through ``models.inception``'s own loader
(a saved ``.pth`` read by ``load_fid_inception``), and the Flax features must equal the twin's,
block by block (via Flax's ``capture_intermediates``) and at pool3, for 299x299 and resized
32x32 images. Controls check that undoing either FID patch (padding counted in the average
pools; an average pool in Mixed_7c) lands far outside the tolerance, so the check can fail.
"""
import jax
import numpy as np
import pytest

from models.inception import FEATURE_DIM, FID_WEIGHTS_FILE, FIDInception, load_fid_inception

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

RTOL = 1e-4  # relative to the largest |feature| of each compared tensor
CHECKED = ("Conv2d_4a_3x3", "Mixed_5b", "Mixed_5d", "Mixed_6a", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


class Conv(nn.Module):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def pool_branch(x, kind):
    """The 3x3 stride-1 pool before a ``branch_pool`` conv: FID's ('avg_valid', 'max') or torchvision's ('avg')."""
    if kind == "max":
        return F.max_pool2d(x, 3, stride=1, padding=1)
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=(kind == "avg"))


class BlockA(nn.Module):
    """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 -> 224 + pool_features channels."""

    def __init__(self, cin, pool_features, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(cin, 48, 1), Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = Conv(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(64, 96, 3, padding=1), Conv(96, 96, 3, padding=1)
        self.branch_pool = Conv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(pool_branch(x, self.pool))], 1)


class BlockB(nn.Module):
    """Mixed_6a (grid 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 64, 1), Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    """Mixed_6b-e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | pool-1x1, 4 x 192 channels."""

    def __init__(self, cin, c7, pool):
        super().__init__()
        self.pool = pool
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = Conv(cin, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = Conv(cin, c7, 1), Conv(c7, c7, **row), Conv(c7, 192, **col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = Conv(cin, c7, 1), Conv(c7, c7, **col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = Conv(c7, c7, **row), Conv(c7, c7, **col)
        self.branch7x7dbl_5 = Conv(c7, 192, **row)
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(pool_branch(x, self.pool))], 1)


class BlockD(nn.Module):
    """Mixed_7a (grid 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(cin, 192, 1), Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = Conv(cin, 192, 1)
        self.branch7x7x3_2 = Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1 -> 2048 channels."""

    def __init__(self, cin, pool):
        super().__init__()
        self.pool = pool
        self.branch1x1 = Conv(cin, 320, 1)
        self.branch3x3_1 = Conv(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = Conv(384, 384, (1, 3), padding=(0, 1)), Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(cin, 448, 1), Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = Conv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
                          self.branch_pool(pool_branch(x, self.pool))], 1)


class TorchFIDInception(nn.Module):
    """pytorch-fid's InceptionV3 (pool3 output) over fid_inception_v3.

    ``avg="avg"`` (padding counted) and ``pool_7c="avg"`` undo FID's patches (torchvision's blocks).
    """

    def __init__(self, avg="avg_valid", pool_7c="max"):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = Conv(3, 32, 3, stride=2), Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = Conv(64, 80, 1), Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32, avg), BlockA(256, 64, avg), BlockA(288, 64, avg)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c = BlockC(768, 128, avg), BlockC(768, 160, avg)
        self.Mixed_6d, self.Mixed_6e = BlockC(768, 160, avg), BlockC(768, 192, avg)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, avg), BlockE(2048, pool_7c)
        self.fc = nn.Linear(2048, 1008)  # in the state dict, unused by pool3

    def forward(self, images):
        """NCHW images in [0, 1] -> {block name: NCHW output, "pool3": (B, 2048)}."""
        x = 2 * F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) - 1
        out = {}
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool",
                     "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool", "Mixed_5b", "Mixed_5c", "Mixed_5d",
                     "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = F.max_pool2d(x, 3, stride=2) if name == "maxpool" else getattr(self, name)(x)
            out[name] = x
        out["pool3"] = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return out


def randomize_(model, seed=0):
    """Random weights in place: He-scaled convs and random BatchNorm affine and running statistics."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        shape, leaf = tuple(value.shape), key.rsplit(".", 1)[-1]
        if key.endswith("conv.weight"):
            a = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif leaf == "num_batches_tracked":
            continue
        elif leaf == "running_var":
            a = rng.uniform(0.5, 2.0, shape)
        elif leaf == "weight" and ".bn." in key:
            a = rng.uniform(0.5, 1.5, shape)
        else:  # bn bias, bn running_mean, fc
            a = 0.2 * rng.standard_normal(shape)
        state[key] = torch.from_numpy(a.astype(np.float32))
    model.load_state_dict(state, strict=False)
    return model.eval()


@pytest.fixture(scope="module")
def twin_and_variables(tmp_path_factory):
    twin = randomize_(TorchFIDInception())
    path = tmp_path_factory.mktemp("fid") / FID_WEIGHTS_FILE
    torch.save(twin.state_dict(), path)  # read back as the real weights file is
    return twin, load_fid_inception(str(path))


_capture = jax.jit(lambda variables, x: FIDInception().apply(
    variables, x, capture_intermediates=lambda module, method: module.name in CHECKED, mutable=["intermediates"]))


def flax_outputs(variables, images):
    """{block name: NHWC output, "pool3": (B, 2048)} of the Flax network."""
    pool3, state = _capture(variables, images)
    out = {name: np.asarray(state["intermediates"][name]["__call__"][0]) for name in CHECKED}
    return {**out, "pool3": np.asarray(pool3)}


def twin_outputs(twin, images):
    with torch.no_grad():
        out = twin(torch.from_numpy(images).permute(0, 3, 1, 2))
    return {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).numpy() for k, v in out.items()}


def relative_gap(ours, ref):
    """(max |ours - ref|, that over max |ref|)."""
    gap = float(np.max(np.abs(ours - ref)))
    return gap, gap / float(np.max(np.abs(ref)))


@pytest.mark.parametrize("size", [299, 32])
def test_flax_features_equal_torch_twin(twin_and_variables, size):
    twin, variables = twin_and_variables
    images = np.random.default_rng(size).uniform(size=(2, size, size, 3)).astype(np.float32)
    ours, ref = flax_outputs(variables, images), twin_outputs(twin, images)
    assert ours["pool3"].shape == (2, FEATURE_DIM)
    print()
    for name in (*CHECKED, "pool3"):
        assert ours[name].shape == ref[name].shape, name
        gap, rel = relative_gap(ours[name], ref[name])
        print(f"{size}x{size} {name:14s} max|ref| {np.max(np.abs(ref[name])):8.3f}  "
              f"max abs gap {gap:.2e}  relative {rel:.2e}")
        assert rel < RTOL, f"{name} at {size}x{size}: relative gap {rel:.2e} >= {RTOL}"
    # the features are image-dependent and not degenerate (random BN keeps them O(1))
    assert np.max(np.abs(ref["pool3"][0] - ref["pool3"][1])) > 1e-2 * np.max(np.abs(ref["pool3"]))
    assert 0.05 < np.std(ref["pool3"]) < 20.0
    print(f"pool3 std {np.std(ref['pool3']):.3f}, mean {np.mean(ref['pool3']):.3f}")


def test_twin_state_dict_is_pytorch_fids(twin_and_variables):
    """The twin's keys and shapes equal test_inception's independent enumeration of pytorch-fid's."""
    from tests.test_inception import fid_inception_convs

    expected = {"fc.weight": (1008, FEATURE_DIM), "fc.bias": (1008,)}
    for name, cin, cout, kh, kw in fid_inception_convs():
        expected[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{name}.bn.{leaf}"] = (cout,)
        expected[f"{name}.bn.num_batches_tracked"] = ()
    assert {k: tuple(v.shape) for k, v in twin_and_variables[0].state_dict().items()} == expected


@pytest.mark.parametrize("avg, pool_7c", [("avg", "max"), ("avg_valid", "avg")], ids=["pad-counted", "7c-avg"])
def test_unpatched_blocks_are_outside_the_tolerance(twin_and_variables, avg, pool_7c):
    """Control: undoing either FID patch (same weights) moves pool3 far beyond the tolerance."""
    twin, variables = twin_and_variables
    plain = TorchFIDInception(avg, pool_7c).eval()
    plain.load_state_dict(twin.state_dict())
    images = np.random.default_rng(32).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    _, rel = relative_gap(flax_outputs(variables, images)["pool3"], twin_outputs(plain, images)["pool3"])
    print(f"\npools ({avg}, Mixed_7c {pool_7c}) vs ours: pool3 relative gap {rel:.2e}")
    assert rel > 100 * RTOL
