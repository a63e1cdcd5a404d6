"""Baselines at equal size: the arithmetic of 'as many values as a latent', bicubic and patch PCA."""

import math

import pytest
import torch
import torch.nn.functional as F

from latentlab.baselines import PatchPCA, bicubic_roundtrip, bicubic_size, equal_size_scale, latent_values
from latentlab.errors import InputError
from latentlab.images import psnr


def _smooth_images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator("cpu").manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)


def test_equal_size_scale_is_one_over_sqrt_48():
    assert equal_size_scale() == pytest.approx(1 / math.sqrt(48))
    assert equal_size_scale(factor=8, latent_channels=16) == pytest.approx(math.sqrt(16 / 192))
    assert latent_values(512, 512) == 64 * 64 * 4


def test_bicubic_size_keeps_about_the_latent_count():
    h, w = bicubic_size(256, 256, latent_values(256, 256))
    assert (h, w) == (37, 37)  # 3 * 37 * 37 = 4107 ~ 4096
    assert abs(3 * h * w - 4096) / 4096 < 0.01
    h, w = bicubic_size(256, 512, latent_values(256, 512))
    assert w == 2 * h or abs(w - 2 * h) <= 1


def test_bicubic_roundtrip_shape_range_and_quality():
    x = _smooth_images()
    y = bicubic_roundtrip(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert psnr(x, y).min() > 25  # smooth images survive shrinking
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator("cpu").manual_seed(1)) * 2 - 1
    assert psnr(noise, bicubic_roundtrip(noise)).item() < 15  # white noise does not
    more = bicubic_roundtrip(noise, keep_values=3 * 24 * 24)
    assert psnr(noise, more).item() > psnr(noise, bicubic_roundtrip(noise)).item()


def test_bicubic_roundtrip_rejects_bad_input():
    with pytest.raises(InputError):
        bicubic_roundtrip(torch.zeros(1, 4, 32, 32))
    with pytest.raises(InputError):
        bicubic_roundtrip(torch.zeros(1, 3, 32, 32), keep_values=0)


def test_patch_pca_recovers_a_low_rank_patch_space_exactly():
    g = torch.Generator("cpu").manual_seed(0)
    p, k = 4, 3
    basis = torch.linalg.qr(torch.randn(3 * p * p, k, generator=g))[0].T * 0.2  # (k, 48)
    mean = torch.rand(3 * p * p, generator=g) * 0.4 - 0.2
    codes = torch.randn(2 * 8 * 8, k, generator=g)  # 2 images of 8x8 patches
    flat = (codes @ basis + mean).reshape(2, 64, 3 * p * p).transpose(1, 2)  # (2, 48, 64)
    images = F.fold(flat, output_size=(32, 32), kernel_size=p, stride=p).clamp(-1, 1)
    pca = PatchPCA(patch_size=p, n_components=k).fit(images)
    assert torch.allclose(pca.components @ pca.components.T, torch.eye(k), atol=1e-5)
    z = pca.encode(images)
    assert z.shape == (2, k, 8, 8)
    assert torch.allclose(pca.decode(z), images, atol=1e-4)


def test_patch_pca_matches_svd_and_improves_with_components():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator("cpu").manual_seed(2)) * 2 - 1
    pca = PatchPCA(patch_size=8, n_components=4).fit(x)
    patches = F.unfold(x, 8, stride=8).transpose(1, 2).reshape(-1, 192).double()
    _, _, vh = torch.linalg.svd(patches - patches.mean(0), full_matrices=False)
    # same subspace as the top-4 right singular vectors: projections agree
    proj_ours = pca.components.double().T @ pca.components.double()
    proj_svd = vh[:4].T @ vh[:4]
    assert torch.allclose(proj_ours, proj_svd, atol=1e-6)
    errors = [F.mse_loss(PatchPCA(8, k).fit(x).roundtrip(x), x).item() for k in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]
    assert pca.values_per_image_factor == 48


def test_patch_pca_errors_are_one_sentence():
    pca = PatchPCA()
    with pytest.raises(InputError, match="not fitted"):
        pca.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(InputError, match="divisible"):
        pca.fit(torch.zeros(1, 3, 20, 16))
    with pytest.raises(InputError):
        PatchPCA(patch_size=2, n_components=13)


def test_patch_pca_with_nothing_to_keep_gets_one_sentence():
    for kwargs in ({"patch_size": 0}, {"n_components": 0}):
        with pytest.raises(InputError, match="must both be at least 1"):
            PatchPCA(**kwargs)


def test_patch_pca_with_fewer_patches_than_values_finds_the_same_axes_and_variances():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator("cpu").manual_seed(3)) * 2 - 1  # 8 patches of 768 values
    pca = PatchPCA(patch_size=16, n_components=5).fit(x)  # the SVD branch
    patches = F.unfold(x, 16, stride=16).transpose(1, 2).reshape(-1, 768).double()
    centered = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(centered.T @ centered / (patches.shape[0] - 1))
    top = eigenvectors[:, -5:].T  # eigh sorts ascending: the 5 largest are last
    assert torch.allclose(pca.components.double().T @ pca.components.double(), top.T @ top, atol=1e-5)
    assert torch.allclose(pca.explained_variance.double(), eigenvalues[-5:].flip(0), rtol=1e-4)
    assert psnr(pca.roundtrip(x), x).mean() > psnr(PatchPCA(16, 1).fit(x).roundtrip(x), x).mean()
