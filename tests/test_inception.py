"""The Flax FID Inception-v3 without its weights file (no network here).

Checked: a missing file is a clear error naming it; pool3 is (B, 2048) for 299x299 and for
resized 32x32 inputs; the state-dict -> Flax mapping round-trips on a random state dict whose
keys and shapes are derived here from torchvision's Inception3 + pytorch-fid's FID blocks (an
independent enumeration), also through a saved ``.pth``; the resize and the FID pools equal
torch's. tests/test_inception_parity.py checks the features against an independent torch twin of
pytorch-fid's network on random weights; the real ``pt_inception-2015-12-05-6726825d.pth`` is not
available here (no network).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.common import param_count
from models.inception import (FEATURE_DIM, FID_WEIGHTS_FILE, FIDInception, avg_pool_3x3, inception_features,
                              load_fid_inception, max_pool_3x3, resize_bilinear, state_dict_to_variables,
                              variable_shapes, variables_to_state_dict)


def fid_inception_convs():
    """(name, in, out, kh, kw) of every BasicConv2d of pytorch-fid's fid_inception_v3."""
    convs = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
             ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]

    def block(prefix, rows):
        convs.extend((f"{prefix}.{name}", *shape) for name, *shape in rows)

    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        block(name, [("branch1x1", cin, 64, 1, 1), ("branch5x5_1", cin, 48, 1, 1), ("branch5x5_2", 48, 64, 5, 5),
                     ("branch3x3dbl_1", cin, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
                     ("branch3x3dbl_3", 96, 96, 3, 3), ("branch_pool", cin, pool, 1, 1)])
    block("Mixed_6a", [("branch3x3", 288, 384, 3, 3), ("branch3x3dbl_1", 288, 64, 1, 1),
                       ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3)])
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        block(name, [("branch1x1", 768, 192, 1, 1), ("branch7x7_1", 768, c7, 1, 1), ("branch7x7_2", c7, c7, 1, 7),
                     ("branch7x7_3", c7, 192, 7, 1), ("branch7x7dbl_1", 768, c7, 1, 1),
                     ("branch7x7dbl_2", c7, c7, 7, 1), ("branch7x7dbl_3", c7, c7, 1, 7),
                     ("branch7x7dbl_4", c7, c7, 7, 1), ("branch7x7dbl_5", c7, 192, 1, 7),
                     ("branch_pool", 768, 192, 1, 1)])
    block("Mixed_7a", [("branch3x3_1", 768, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3),
                       ("branch7x7x3_1", 768, 192, 1, 1), ("branch7x7x3_2", 192, 192, 1, 7),
                       ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)])
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        block(name, [("branch1x1", cin, 320, 1, 1), ("branch3x3_1", cin, 384, 1, 1), ("branch3x3_2a", 384, 384, 1, 3),
                     ("branch3x3_2b", 384, 384, 3, 1), ("branch3x3dbl_1", cin, 448, 1, 1),
                     ("branch3x3dbl_2", 448, 384, 3, 3), ("branch3x3dbl_3a", 384, 384, 1, 3),
                     ("branch3x3dbl_3b", 384, 384, 3, 1), ("branch_pool", cin, 192, 1, 1)])
    return convs


def random_state_dict(seed=0):
    """A state dict with the FID Inception's keys and torch shapes; He-scaled convs, identity BN."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, cin, cout, kh, kw in fid_inception_convs():
        sd[f"{name}.conv.weight"] = (rng.standard_normal((cout, cin, kh, kw)) * np.sqrt(2.0 / (cin * kh * kw)))
        sd[f"{name}.bn.weight"] = 1.0 + 0.1 * rng.standard_normal(cout)
        sd[f"{name}.bn.bias"] = 0.1 * rng.standard_normal(cout)
        sd[f"{name}.bn.running_mean"] = 0.1 * rng.standard_normal(cout)
        sd[f"{name}.bn.running_var"] = 1.0 + 0.1 * rng.uniform(size=cout)
        sd[f"{name}.bn.num_batches_tracked"] = np.zeros((), np.int64)
    sd["fc.weight"], sd["fc.bias"] = 0.01 * rng.standard_normal((1008, FEATURE_DIM)), np.zeros(1008)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in sd.items()}


def test_missing_weights_name_the_expected_file(tmp_path):
    with pytest.raises(ValueError, match=f"{FID_WEIGHTS_FILE}.*https://github.com/mseitzer/pytorch-fid"):
        load_fid_inception(str(tmp_path))  # a directory without the file
    with pytest.raises(ValueError, match="not found at .*/nowhere.pth"):
        load_fid_inception(str(tmp_path / "nowhere.pth"))


def test_pool3_shape_for_299_and_resized_32():
    variables = variable_shapes()
    print(f"\nFID Inception: {param_count(variables['params']):,} params, "
          f"{param_count(variables['batch_stats']):,} batch-norm statistics")
    for size in (299, 32):
        out = jax.eval_shape(FIDInception().apply, variables, jax.ShapeDtypeStruct((4, size, size, 3), jnp.float32))
        assert out.shape == (4, FEATURE_DIM)
    with pytest.raises(ValueError, match="images must have shape"):
        jax.eval_shape(FIDInception().apply, variables, jax.ShapeDtypeStruct((4, 32, 32, 1), jnp.float32))


def test_state_dict_mapping_round_trips_and_runs(tmp_path):
    torch = pytest.importorskip("torch")
    sd = random_state_dict()
    variables = state_dict_to_variables(sd)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, variables)
    assert shapes == jax.tree_util.tree_map(lambda s: s.shape, variable_shapes())
    back = variables_to_state_dict(variables)
    assert set(back) == {k for k in sd if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k])
    # the same through a saved .pth in a directory, as the real weights are read
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, tmp_path / FID_WEIGHTS_FILE)
    loaded = load_fid_inception(str(tmp_path))
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)
    # features: finite, non-negative (post-ReLU means), image-dependent; value_range maps [-1, 1] to [0, 1]
    images = np.random.default_rng(0).uniform(-1.0, 1.0, (3, 32, 32, 3)).astype(np.float32)
    feats = inception_features(variables, images, batch_size=2, value_range=(-1.0, 1.0))
    assert feats.shape == (3, FEATURE_DIM) and feats.dtype == np.float64
    assert np.all(np.isfinite(feats)) and np.all(feats >= 0) and np.max(np.abs(feats[0] - feats[1])) > 1e-3
    np.testing.assert_allclose(inception_features(variables, (images[2:] + 1) / 2, batch_size=2), feats[2:],
                               rtol=1e-5, atol=1e-5)


def test_wrong_weights_are_rejected():
    sd = random_state_dict()
    with pytest.raises(ValueError, match="not the FID weights"):
        state_dict_to_variables({**sd, "fc.weight": np.zeros((1000, FEATURE_DIM), np.float32)})
    with pytest.raises(ValueError, match="1 tensors do not fit.*AuxLogits"):
        state_dict_to_variables({**sd, "AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)})
    with pytest.raises(ValueError, match="1 parameters of the architecture are missing.*Mixed_7c/branch_pool/bn/mean"):
        state_dict_to_variables({k: v for k, v in sd.items() if k != "Mixed_7c.branch_pool.bn.running_mean"})
    with pytest.raises(ValueError, match=r"Mixed_5b.branch1x1.conv.weight has shape"):
        state_dict_to_variables({**sd, "Mixed_5b.branch1x1.conv.weight": np.zeros((64, 191, 1, 1), np.float32)})


def test_resize_and_pools_equal_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for size in (32, 400):  # up- and downsampling (no antialiasing in pytorch-fid)
        x = rng.uniform(size=(2, size, size, 3)).astype(np.float32)
        ref = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299), mode="bilinear",
                            align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(np.asarray(resize_bilinear(jnp.asarray(x))), ref, atol=2e-6)
    x = rng.standard_normal((2, 9, 9, 4)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    back = lambda t: t.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(avg_pool_3x3(jnp.asarray(x)),
                               back(F.avg_pool2d(xt, 3, stride=1, padding=1, count_include_pad=False)), atol=1e-6)
    np.testing.assert_allclose(max_pool_3x3(jnp.asarray(x)), back(F.max_pool2d(xt, 3, stride=1, padding=1)))
    np.testing.assert_allclose(max_pool_3x3(jnp.asarray(x), 2), back(F.max_pool2d(xt, 3, stride=2)))
