"""The exercise checks pass right answers, name common mistakes, and never let an exercise break the lesson."""

import pytest
import torch

from latentlab import checks
from latentlab.vae import DiagonalGaussian


def _unfinished(*args):
    raise NotImplementedError


# ---- reparameterize

def test_reference_reparameterize_matches_the_vae_sample():
    g = torch.Generator("cpu").manual_seed(0)
    params = torch.randn(2, 8, 3, 3, generator=g)
    posterior = DiagonalGaussian(params)
    z = posterior.sample(torch.Generator("cpu").manual_seed(5))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator("cpu").manual_seed(5))
    assert torch.allclose(checks.reference_reparameterize(posterior.mean, posterior.logvar, noise), z, atol=1e-6)


def test_correct_reparameterize_passes_and_is_returned():
    def mine(mean, logvar, noise):
        return mean + (0.5 * logvar).exp() * noise

    verdict = checks.diagnose_reparameterize(mine)
    assert verdict.passed, verdict.message
    assert checks.check_reparameterize(mine) is mine


def test_unfinished_reparameterize_continues_with_the_reference(capsys):
    fn = checks.check_reparameterize(_unfinished)
    out = capsys.readouterr().out
    assert fn is checks.reference_reparameterize
    assert "not done yet" in out and "reference" in out and "hint" in out


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda m, lv, n: m + lv.exp() * n, "0.5"),
        (lambda m, lv, n: m + lv * n, "logvar itself"),
        (lambda m, lv, n: m - (0.5 * lv).exp() * n, "sign"),
        (lambda m, lv, n: (0.5 * lv).exp() * n, "forgot to add the mean"),
        (lambda m, lv, n: m + n, "scale the noise"),
        (lambda m, lv, n: m + (0.5 * lv).exp() * torch.randn_like(m), "draw new noise"),
        (lambda m, lv, n: (m + (0.5 * lv).exp() * n).sum(), "shape"),
        (lambda m, lv, n: m + (0.5 * lv).exp() * n + 0.01, "differs"),
        (lambda m, lv, n: m + undefined_name, "NameError"),  # noqa: F821 - a learner's typo
    ],
)
def test_reparameterize_mistakes_get_specific_hints(wrong, words, capsys):
    verdict = checks.diagnose_reparameterize(wrong)
    assert not verdict.passed
    assert words in verdict.message
    assert checks.check_reparameterize(wrong) is checks.reference_reparameterize
    assert words in capsys.readouterr().out


# ---- KL

def test_reference_kl_is_the_closed_form_and_zero_at_the_prior():
    mean, logvar = torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)
    assert torch.equal(checks.reference_kl(mean, logvar), torch.zeros(2))
    # against a Monte Carlo estimate of E_q[log q(z) - log p(z)] for one scalar Gaussian
    m, lv = torch.tensor(0.7), torch.tensor(-0.5)
    q = torch.distributions.Normal(m, (0.5 * lv).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    exact = torch.distributions.kl_divergence(q, p)
    ours = checks.reference_kl(m.reshape(1, 1, 1, 1), lv.reshape(1, 1, 1, 1))
    assert torch.allclose(ours, exact.reshape(1), atol=1e-6)


def test_correct_kl_passes_both_ways_of_writing_it():
    def plus_form(mean, logvar):
        return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))

    def minus_form(mean, logvar):
        return -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp(), dim=[1, 2, 3])

    for fn in (plus_form, minus_form):
        verdict = checks.diagnose_kl(fn)
        assert verdict.passed, verdict.message
        assert checks.check_kl(fn) is fn


def test_unfinished_kl_continues_with_the_reference(capsys):
    assert checks.check_kl(_unfinished) is checks.reference_kl
    out = capsys.readouterr().out
    assert "not done yet" in out and "hint" in out


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda m, lv: 0.5 * (1 + lv - m**2 - lv.exp()).sum(dim=(1, 2, 3)), "sign"),
        (lambda m, lv: (m**2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)), "0.5"),
        (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).mean(dim=(1, 2, 3)), "averaged"),
        (lambda m, lv: 0.5 * (m**2 + lv.exp() - lv).sum(dim=(1, 2, 3)), "-1"),
        (lambda m, lv: 0.5 * (m**2 + (0.5 * lv).exp() - 1 - lv).sum(dim=(1, 2, 3)), "standard deviation"),
        (lambda m, lv: 0.5 * (m + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)), "squared"),
        (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(), "batch"),
        (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv), "every latent value"),
        (lambda m, lv: 0.5 * (m**2 + lv - 1 - lv.log()).sum(dim=(1, 2, 3)), "NaN"),
    ],
)
def test_kl_mistakes_get_specific_hints(wrong, words):
    verdict = checks.diagnose_kl(wrong)
    assert not verdict.passed
    assert words in verdict.message, verdict.message
    assert checks.check_kl(wrong) is checks.reference_kl
