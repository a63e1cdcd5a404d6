"""The exercise checks: right answers pass, typical wrong answers get a hint naming the mistake, an untouched stub
says "not done yet" without the answer, and every failure hands the lesson latentlab's version so it goes on."""

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentlab import checks, diffusion
from latentlab.exercises import lesson03, lesson06, lesson08
from latentlab.vae import VAE, DiagonalGaussian, VAEConfig, estimate_scaling_factor

pytestmark = pytest.mark.usefixtures("one_thread")


def _unfinished(*args):
    raise NotImplementedError  # your code here


@dataclass
class Case:
    """one exercise: learners' right answers, typical wrong ones with the words their message must contain, and
    fragments of the solution's code that no message may show"""

    exercise: object
    right: list
    wrong: list  # (fn, words in the message, which check fails)
    solution: list = field(default_factory=list)


# ---- learners' answers, written the way learners write them


def _bicubic_size(height, width, keep_values):
    scale = math.sqrt(keep_values / (3 * height * width))
    return round(height * scale), round(width * scale)


def _reparameterize_in_place(mean, logvar, noise):
    mean += torch.exp(0.5 * logvar) * noise
    return mean


def _fit(latents, images, pixel_target=False, permute=True, bias=True):
    target = images[:, :, ::8, ::8] if pixel_target else F.avg_pool2d(images, 8)  # (B, 3, h, w)
    if permute:
        x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    else:
        x = latents.reshape(-1, latents.shape[1])
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    if not bias:
        return torch.linalg.lstsq(x, y).solution, torch.zeros(3)
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], dim=1), y).solution
    return solution[:-1], solution[-1]


def _fit_pinv(latents, images):
    x = latents.permute(0, 2, 3, 1).flatten(0, 2).double()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    y = F.adaptive_avg_pool2d(images, latents.shape[-2:]).permute(0, 2, 3, 1).flatten(0, 2).double()
    solution = torch.linalg.pinv(x) @ y
    return solution[:-1].float(), solution[-1].float()


def _to_rgb(latents, weight, bias, clip=True, channels_last=False):
    rgb = latents.permute(0, 2, 3, 1) @ weight + bias  # (B, h, w, 3)
    rgb = rgb.clamp(-1, 1) if clip else rgb
    return rgb if channels_last else rgb.permute(0, 3, 1, 2)


def _abar_loop(betas):
    kept, out = torch.tensor(1.0), []
    for beta in betas:
        kept = kept * (1 - beta)
        out.append(kept)
    return torch.stack(out)


def _q_sample(x0, t, noise, alphas_cumprod, sqrt=True, reshape=True):
    a = alphas_cumprod[t]
    a = a.reshape(-1, 1, 1, 1) if reshape else a
    return a.sqrt() * x0 + (1 - a).sqrt() * noise if sqrt else a * x0 + (1 - a) * noise


def _q_sample_in_place(x0, t, noise, alphas_cumprod):
    a = alphas_cumprod[torch.as_tensor(t)].view(-1, 1, 1, 1)
    return x0.mul_(a.sqrt()).add_((1 - a).sqrt() * noise)


def _embedding(timesteps, dim, sin_first=False, denominator=None, interleave=False):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / (denominator or half))
    angles = timesteps[:, None] * freqs[None, :]
    if interleave:
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).flatten(1)
    parts = [torch.sin(angles), torch.cos(angles)] if sin_first else [torch.cos(angles), torch.sin(angles)]
    return torch.cat(parts, dim=-1)


def _embedding_power(timesteps, dim):
    i = torch.arange(dim // 2, dtype=torch.float32)
    angles = timesteps.float().unsqueeze(1) * 10000 ** (-i / (dim // 2))
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def _up_channels(block_out_channels, layers_per_block, concatenate=True, fifo=False, extra=1):
    skips = [block_out_channels[0]]  # conv_in's output
    for i, width in enumerate(block_out_channels):
        skips += [width] * layers_per_block
        if i < len(block_out_channels) - 1:
            skips.append(width)  # the downsampler's output
    x, inputs = block_out_channels[-1], []
    for width in reversed(block_out_channels):
        for _ in range(layers_per_block + extra):
            skip = skips.pop(0) if fifo else skips.pop()
            inputs.append(x + skip if concatenate else x)
            x = width
    return inputs


def _eps_loss(model, x0, t, noise, alphas_cumprod, target="noise", model_input="x_t", detach=False):
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    prediction = model(x_t if model_input == "x_t" else x0, t)
    prediction = prediction.detach() if detach else prediction
    return F.mse_loss(prediction, noise if target == "noise" else x0)


def _eps_loss_no_grad(model, x0, t, noise, alphas_cumprod):
    with torch.no_grad():
        return _eps_loss(model, x0, t, noise, alphas_cumprod)


def _ddim(x_t, eps, alpha_bar_t, alpha_bar_prev, back_to=None, stop_at_x0=False):
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5
    if stop_at_x0:
        return x0
    level = alpha_bar_prev if back_to is None else back_to
    return level**0.5 * x0 + (1 - level) ** 0.5 * eps


def _ddim_in_place(x_t, eps, alpha_bar_t, alpha_bar_prev):
    x_t -= (1 - alpha_bar_t).sqrt() * eps
    x_t /= alpha_bar_t.sqrt()
    return alpha_bar_prev.sqrt() * x_t + (1 - alpha_bar_prev).sqrt() * eps


CASES = {
    "reconstruction_error": Case(
        checks.lesson02.RECONSTRUCTION_ERROR,
        right=[lambda r, b: ((r - b) ** 2).mean(), F.mse_loss],
        wrong=[(lambda r, b: ((r - b) ** 2).mean().item(), "Keep it a tensor", "kind"),
               (lambda r, b: (r - b).abs().mean(), "mean absolute error", "mistake"),
               (lambda r, b: ((r - b) ** 2).sum(), "added the squared errors up", "mistake"),
               (lambda r, b: ((r.detach() - b) ** 2).mean(), "does not require grad", "gradient")],
        solution=["** 2", "pow(2)", ".mean()", "mse_loss"],
    ),
    "bicubic_size": Case(
        checks.lesson02.BICUBIC_SIZE,
        right=[_bicubic_size, lambda h, w, k: (round(h * (k / (3 * h * w)) ** 0.5), round(w * (k / (3 * h * w)) ** 0.5))],
        wrong=[(lambda h, w, k: (int(h * math.sqrt(k / (3 * h * w))), int(w * math.sqrt(k / (3 * h * w)))),
                "rounds down", "mistake"),
               (lambda h, w, k: (round(h * math.sqrt(k / (h * w))), round(w * math.sqrt(k / (h * w)))),
                "3 values per pixel", "mistake"),
               (lambda h, w, k: (h * math.sqrt(k / (3 * h * w)), w * math.sqrt(k / (3 * h * w))), "whole number",
                "kind")],
        solution=["math.sqrt", "round(h", "** 0.5", "keep_values / (3"],
    ),
    "reparameterize": Case(
        checks.lesson03.REPARAMETERIZE,
        right=[lambda m, lv, n: m + (0.5 * lv).exp() * n, lambda m, lv, n: m + torch.sqrt(torch.exp(lv)) * n],
        wrong=[(_reparameterize_in_place, "changed its input `mean` in place", "changed input"),
               (lambda m, lv, n: m.detach() + torch.exp(0.5 * lv) * n, "no gradient reaches `mean`", "gradient"),
               (lambda m, lv, n: torch.from_numpy(m.numpy() + np.exp(0.5 * lv.numpy()) * n.numpy()), "numpy",
                "gradient"),
               (lambda m, lv, n: m + lv.exp() * n, "by the variance", "mistake"),
               (lambda m, lv, n: m + torch.exp(0.5 * lv) * torch.randn_like(m), "random numbers of its own",
                "random")],
        solution=["exp(0.5", "0.5 * logvar", "logvar / 2", "logvar.exp", "torch.exp"],
    ),
    "kl_divergence": Case(
        checks.lesson03.KL,
        right=[lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)),
               lambda m, lv: -0.5 * torch.sum(1 + lv - m.pow(2) - lv.exp(), dim=[1, 2, 3])],
        wrong=[(lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(), "over the batch too", "mistake"),
               (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).mean(dim=(1, 2, 3)), "averaged", "mistake"),
               (lambda m, lv: 0.5 * (m**2 + (0.5 * lv).exp() - 1 - lv).sum(dim=(1, 2, 3)), "standard deviation",
                "mistake"),
               (lambda m, lv: 0.5 * (m.detach() ** 2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)),
                "no gradient reaches `mean`", "gradient"),
               (lambda m, lv: 0.5 * (m**2 + lv - 1 - lv.log()).sum(dim=(1, 2, 3)), "NaN", "not finite")],
        solution=["0.5 * (", "mean**2", "mean.pow", "logvar.exp", "dim=(1, 2, 3)", "-0.5",
                  "½(mean² + σ² − 1 − log σ²)"],
    ),
    "scaling_factor": Case(
        checks.lesson03.SCALING_FACTOR,
        right=[lambda z: 1 / z.std().item(), lambda z: 1 / z.std(), lambda z: 1 / np.std(z.numpy())],
        wrong=[(lambda z: z.std().item(), "the spread itself", "mistake"),
               (lambda z: 1 / z.std(dim=(0, 2, 3)), "one factor for all channels", "mistake"),
               (lambda z: 1 / z.sub_(z.mean()).std().item(), "changed its input `latents` in place", "changed input")],
        solution=[".std()", "1 / latents", "1.0 /"],
    ),
    "fit_latent_rgb": Case(
        checks.lesson04.FIT_LATENT_RGB,
        right=[_fit, _fit_pinv],
        wrong=[(lambda z, x: _fit(z, x, bias=False), "no bias", "mistake"),
               (lambda z, x: _fit(z, x, permute=False), "mix up positions and channels", "mistake"),
               (lambda z, x: _fit(z, x, pixel_target=True), "one pixel per block", "mistake"),
               (lambda z, x: (_fit(z, x)[0].T, _fit(z, x)[1]), "one row per latent channel", "mistake")],
        solution=["lstsq", "permute(", "torch.cat", "avg_pool"],
    ),
    "latent_to_rgb": Case(
        checks.lesson04.LATENT_TO_RGB,
        right=[_to_rgb, lambda z, w, b: (torch.einsum("bchw,cr->brhw", z, w) + b[:, None, None]).clamp(-1, 1)],
        wrong=[(lambda z, w, b: _to_rgb(z, w, b, clip=False), "clip", "mistake"),
               (lambda z, w, b: _to_rgb(z, w, b, channels_last=True), "colour comes first", "mistake"),
               (lambda z, w, b: _to_rgb(z, w, torch.zeros(3)), "bias is missing", "mistake")],
        solution=["einsum", "clamp(", "permute("],
    ),
    "alphas_cumprod": Case(
        checks.lesson05.ALPHAS_CUMPROD,
        right=[lambda betas: torch.cumprod(1 - betas, dim=0), _abar_loop],
        wrong=[(lambda betas: torch.cumprod(betas, dim=0), "multiplies the betas", "mistake"),
               (lambda betas: torch.cat([torch.ones(1), torch.cumprod(1 - betas, 0)[:-1]]), "off by one", "mistake"),
               (lambda betas: betas.neg_().add_(1).cumprod(0), "changed its input `betas` in place",
                "changed input")],
        solution=["cumprod(", "1 - betas"],
    ),
    "q_sample": Case(
        checks.lesson05.Q_SAMPLE,
        right=[_q_sample, lambda x0, t, n, a: a[torch.as_tensor(t)].view(-1, 1, 1, 1) ** 0.5 * x0
               + (1 - a[torch.as_tensor(t)]).view(-1, 1, 1, 1) ** 0.5 * n],
        wrong=[(lambda x0, t, n, a: _q_sample(x0, t, n, a, sqrt=False), "square roots", "mistake"),
               (lambda x0, t, n, a: _q_sample(x0, t, n, a, reshape=False), "print each one's .shape", "raised"),
               (_q_sample_in_place, "changed its input `x0` in place", "changed input")],
        solution=[".sqrt(", "** 0.5", "reshape(-1, 1, 1, 1)", "view(-1"],
    ),
    "timestep_embedding": Case(
        checks.lesson06.TIMESTEP_EMBEDDING,
        right=[_embedding, _embedding_power],
        wrong=[(lambda t, d: _embedding(t, d, sin_first=True), "cosines first", "mistake"),
               (lambda t, d: _embedding(t, d, denominator=d), "divide the index by dim/2, not dim", "mistake"),
               (lambda t, d: _embedding(t, d, interleave=True), "not alternating", "mistake")],
        solution=["torch.cat", "torch.exp", "math.log", "arange"],
    ),
    "up_channels": Case(
        checks.lesson06.UP_CHANNELS,
        right=[_up_channels, lambda w, n: list(_up_channels(tuple(w), n))],
        wrong=[(lambda w, n: _up_channels(w, n, concatenate=False), "concatenated", "mistake"),
               (lambda w, n: _up_channels(w, n, fifo=True), "reverse order", "mistake"),
               (lambda w, n: _up_channels(w, n, extra=0), "one ResBlock more", "mistake"),
               (lambda w, n: [1, 2, 3], "a list of 3: [1, 2, 3]; the lesson needs a list of 4 numbers", "kind")],
        solution=["conv1.in_channels", "skips.pop", "128"],
    ),
    "epsilon_loss": Case(
        checks.lesson08.EPSILON_LOSS,
        right=[_eps_loss, lambda m, x0, t, n, a: (m(diffusion.q_sample(x0, t, n, a), t) - n).pow(2).mean()],
        wrong=[(lambda m, x0, t, n, a: _eps_loss(m, x0, t, n, a, target="x0"), "predicts the noise", "mistake"),
               (lambda m, x0, t, n, a: _eps_loss(m, x0, t, n, a, model_input="x0"), "noised x_t", "mistake"),
               (lambda m, x0, t, n, a: _eps_loss(m, x0, t, n, a, detach=True), "does not require grad", "gradient"),
               (_eps_loss_no_grad, "torch.no_grad()", "gradient")],
        solution=["q_sample(", "pow(2)", "** 2", "mse_loss"],
    ),
    "ddim_step": Case(
        checks.lesson08.DDIM_STEP,
        right=[_ddim, lambda x, e, a, ap: ap.sqrt() * (x - (1 - a).sqrt() * e) / a.sqrt() + (1 - ap).sqrt() * e],
        wrong=[(lambda x, e, a, ap: _ddim(x, e, a, ap, stop_at_x0=True), "predicted clean sample", "mistake"),
               (lambda x, e, a, ap: _ddim(x, e, a, ap, back_to=a), "gives x_t back", "mistake"),
               (_ddim_in_place, "changed its input `x_t` in place", "changed input"),
               (lambda x, e, a, ap: _ddim(x, e, a, ap) + 0.01 * torch.randn_like(x), "random numbers", "random")],
        solution=[".sqrt(", "** 0.5", "alpha_bar_prev.sqrt"],
    ),
}
NAMES = list(CASES)
RIGHT = [(name, i) for name in NAMES for i in range(len(CASES[name].right))]
WRONG = [(name, i) for name in NAMES for i in range(len(CASES[name].wrong))]


def test_every_exercise_of_the_course_is_tested_here():
    assert sorted(NAMES) == sorted(ex.name for ex in checks.EXERCISES)
    assert len(NAMES) >= 12
    lessons = {ex.lesson for ex in checks.EXERCISES}
    assert {"02", "03", "04", "05", "06", "08"} <= lessons
    for lesson in lessons:
        assert sum(ex.lesson == lesson for ex in checks.EXERCISES) >= 2
    for ex in checks.EXERCISES:  # the pair the notebooks and readers call, named after the learner's function
        assert getattr(checks, f"check_{ex.name}").__name__ == f"check_{ex.name}"
        assert getattr(checks, f"diagnose_{ex.name}").__name__ == f"diagnose_{ex.name}"


@pytest.mark.parametrize("name, i", RIGHT, ids=[f"{n}-{i}" for n, i in RIGHT])
def test_a_right_answer_passes_and_is_handed_back(name, i, capsys):
    case = CASES[name]
    fn = case.right[i]
    verdict = checks.diagnose(case.exercise, fn)
    assert verdict.passed, verdict.message
    assert checks.check(case.exercise, fn) is fn
    assert "passes" in capsys.readouterr().out


@pytest.mark.parametrize("name, i", WRONG, ids=[f"{n}-{i}" for n, i in WRONG])
def test_a_typical_wrong_answer_gets_a_hint_naming_the_mistake(name, i, capsys):
    case = CASES[name]
    fn, words, problem = case.wrong[i]
    verdict = checks.diagnose(case.exercise, fn)
    assert not verdict.passed
    assert verdict.problem == problem, verdict.message
    assert words in verdict.message, verdict.message
    for fragment in case.solution:
        assert fragment not in verdict.message, f"the message shows the solution ({fragment!r}): {verdict.message}"
    assert checks.check(case.exercise, fn) is case.exercise.reference  # the lesson goes on with latentlab's
    assert "latentlab's version" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_an_untouched_stub_is_not_done_yet_without_the_answer(name, capsys):
    case = CASES[name]
    verdict = checks.diagnose(case.exercise, _unfinished)
    assert not verdict.passed and verdict.problem == "not done"
    assert checks.check(case.exercise, _unfinished) is case.exercise.reference
    out = capsys.readouterr().out
    assert "not done yet" in out and "hint" not in out
    for fragment in case.solution:
        assert fragment not in out


@pytest.mark.parametrize("name", NAMES)
def test_no_hint_or_mistake_text_shows_the_solution(name):
    case = CASES[name]
    texts = list(case.exercise.hints) + [what for _, what in case.exercise.mistakes(*case.exercise.cases()[0])]
    for text in texts:
        for fragment in case.solution:
            assert fragment not in text, f"{fragment!r} in {text!r}"


@pytest.mark.parametrize("name", NAMES)
def test_every_typical_mistake_differs_from_the_right_answer(name):
    """a mistake that equals the reference's value would never be reported, or would fail right answers"""
    ex = CASES[name].exercise
    args = ex.cases()[0]
    expected = ex.reference(*args)
    for value, what in ex.mistakes(*ex.cases()[0]):
        assert not checks._same(value, expected, ex.rtol, ex.atol), what


# ---- the checker's own behaviour


def test_the_reference_handed_back_after_a_failure_runs_lesson_03s_next_cell(capsys):
    """the in-place answer is refused, and what comes back gives lesson 03's gradients without touching `mean`"""
    reparameterize = checks.check_reparameterize(_reparameterize_in_place)
    mean = torch.zeros(3, requires_grad=True)
    logvar = torch.zeros(3, requires_grad=True)
    noise = torch.tensor([1.0, -0.5, 2.0])
    reparameterize(mean, logvar, noise).sum().backward()
    assert mean.grad.tolist() == [1.0, 1.0, 1.0]
    assert logvar.grad.tolist() == [0.5, -0.25, 1.0]
    assert torch.equal(mean.detach(), torch.zeros(3))


def test_hints_grow_more_specific_on_each_try_and_start_over_after_a_pass(capsys):
    ex = checks.lesson03.REPARAMETERIZE
    almost = lambda m, lv, n: m + torch.exp(0.7 * lv) * n  # noqa: E731 - wrong in a way no mistake names
    checks._attempts.pop(ex.name, None)
    checks.check_reparameterize(almost)
    first = capsys.readouterr().out
    checks.check_reparameterize(almost)
    second = capsys.readouterr().out
    assert ex.hints[0] in first and ex.hints[1] in second
    checks.check_reparameterize(CASES["reparameterize"].right[0])
    checks.check_reparameterize(almost)
    assert ex.hints[0] in capsys.readouterr().out


def test_a_forgotten_return_is_named():
    def forgot(mean, logvar, noise):
        mean + torch.exp(0.5 * logvar) * noise  # noqa: B018 - the learner's bug

    verdict = checks.diagnose_reparameterize(forgot)
    assert verdict.problem == "kind" and "forget the `return`" in verdict.message


def test_a_learners_typo_is_reported_not_raised():
    verdict = checks.diagnose_kl_divergence(lambda m, lv: m + undefined_name)  # noqa: F821
    assert verdict.problem == "raised" and "NameError" in verdict.message


def test_a_float64_answer_is_told_to_stay_in_float32():
    verdict = checks.diagnose_kl_divergence(lambda m, lv: 0.5 * (m.double() ** 2 + lv.exp() - 1 - lv).sum(dim=(1, 2, 3)))
    assert verdict.problem == "dtype" and "float32" in verdict.message


def test_a_check_leaves_the_learners_random_stream_alone(capsys):
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    for ex in checks.EXERCISES:
        checks.check(ex, ex.reference)
    assert torch.equal(torch.rand(3), before)


def test_pass_messages_say_what_was_checked():
    message = checks.diagnose_reparameterize(CASES["reparameterize"].right[0]).message
    assert "inputs left unchanged" in message and "gradients reach `mean` and `logvar`" in message
    assert "diffusion.q_sample" in checks.diagnose_q_sample(checks.lesson05.Q_SAMPLE.reference).message


# ---- the references are latentlab's (and the libraries') own numbers


def test_reference_reparameterize_is_the_vae_sample():
    params = torch.randn(2, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    posterior = DiagonalGaussian(params)
    z = posterior.sample(torch.Generator().manual_seed(5))
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(lesson03.reparameterize(posterior.mean, posterior.logvar, noise), z, atol=1e-6)


def test_reference_kl_is_torchs_closed_form_and_zero_at_the_prior():
    m, lv = torch.tensor(0.7), torch.tensor(-0.5)
    exact = torch.distributions.kl_divergence(torch.distributions.Normal(m, (0.5 * lv).exp()),
                                              torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(checks.lesson03.KL.reference(m.reshape(1, 1, 1, 1), lv.reshape(1, 1, 1, 1)),
                          exact.reshape(1), atol=1e-6)
    assert torch.equal(checks.lesson03.KL.reference(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)), torch.zeros(2))


def test_reference_scaling_factor_is_the_vaes_estimate():
    vae = VAE(VAEConfig(block_out_channels=(8, 8), norm_num_groups=4, mid_block_add_attention=False)).eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        estimate = estimate_scaling_factor(vae, images, torch.Generator().manual_seed(3))
        latents = vae.encode(images).sample(torch.Generator().manual_seed(3))
    assert lesson03.scaling_factor(latents) == pytest.approx(estimate, rel=1e-6)


def test_reference_reconstruction_error_is_torchs_mse():
    recon, batch = torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert torch.allclose(checks.lesson02.reconstruction_error(recon, batch), F.mse_loss(recon, batch))


def test_reference_up_channels_is_read_off_the_unet_and_agrees_with_a_walk_of_the_skips():
    assert lesson06.up_channels((32, 64), 1) == [128, 96, 96, 64]  # the lesson's default UNetConfig
    for widths, per_block in [((16, 32, 48), 2), ((8, 16, 32, 32), 1), ((32, 64, 64), 3)]:
        assert lesson06.up_channels(widths, per_block) == _up_channels(widths, per_block)


def test_reference_epsilon_loss_is_diffusion_loss_with_the_same_draws():
    model, x0, _, _, abar = lesson08._training_batch()
    g = torch.Generator().manual_seed(7)
    t = torch.randint(0, len(abar), (x0.shape[0],), generator=g)  # the order diffusion_loss draws in
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        ours = lesson08.epsilon_loss(model, x0, t, noise, abar)
        library = diffusion.diffusion_loss(model, x0, abar, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(ours, library, rtol=1e-6)


@pytest.mark.parametrize("t", [700, 0])
def test_reference_ddim_step_is_diffusers(t):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, clip_sample=False, set_alpha_to_one=True)
    scheduler.set_timesteps(10)  # 900, 800, ..., 0: from t the step goes to t - 100
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    theirs = scheduler.step(eps, t, x_t, eta=0.0).prev_sample
    abar = diffusion.alphas_cumprod(diffusion.scaled_linear_beta_schedule(1000))
    prev = abar[t - 100] if t >= 100 else torch.tensor(1.0)  # past the last step: alpha_bar = 1, the clean image
    assert torch.allclose(lesson08.ddim_step(x_t, eps, abar[t], prev), theirs, atol=1e-5)


def test_the_ddim_exercise_has_no_step_of_its_own_it_takes_diffusion_ddim_step(monkeypatch):
    """one DDIM step in the package: the exercise's reference is diffusion.ddim_step on a two-entry alpha_bar table"""
    x_t, eps, a, a_prev = lesson08._step_case(700, 600)
    abar = diffusion.alphas_cumprod(diffusion.scaled_linear_beta_schedule(1000))
    assert torch.equal(lesson08.ddim_step(x_t, eps, a, a_prev), diffusion.ddim_step(eps, 700, 600, x_t, abar)[0])
    calls = []
    monkeypatch.setattr(diffusion, "ddim_step", lambda *args, **kw: calls.append(args) or (torch.zeros(1), None))
    assert torch.equal(lesson08.ddim_step(x_t, eps, a, a_prev), torch.zeros(1)) and len(calls) == 1
