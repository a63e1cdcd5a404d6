"""latentlab.diffusion against diffusers' DDPMScheduler / DDIMScheduler on tiny seeded inputs."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from latentlab import diffusion
from latentlab.errors import InputError

SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_diffusers(name):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, beta_start=0.00085, beta_end=0.012)
    betas = diffusion.make_betas(name, 1000, beta_start=0.00085, beta_end=0.012)
    assert torch.allclose(betas, ref.betas, rtol=1e-6, atol=1e-8)
    assert torch.allclose(diffusion.alphas_cumprod(betas), ref.alphas_cumprod, rtol=1e-5, atol=1e-8)


def test_schedule_shapes_and_monotonic():
    for name in SCHEDULES:
        acp = diffusion.alphas_cumprod(diffusion.make_betas(name, 200))
        assert acp.shape == (200,)
        assert (acp[1:] < acp[:-1]).all()  # signal only ever decreases
        assert 0 < acp[-1] < acp[0] < 1
    snr = diffusion.signal_to_noise(diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000)))
    assert snr[0] > 1e3 and snr[-1] < 1e-3


@pytest.mark.parametrize("name", ["linear", "squaredcos_cap_v2"])
def test_q_sample_matches_add_noise(name):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=name)
    g = _gen()
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ours = diffusion.q_sample(x0, t, noise, diffusion.alphas_cumprod(diffusion.make_betas(name)))
    assert torch.allclose(ours, ref.add_noise(x0, noise, t), atol=1e-6)
    # the ends of the schedule: almost the image at t=0, almost pure noise at t=999
    assert (ours[0] - x0[0]).abs().max() < 0.05
    assert torch.corrcoef(torch.stack([ours[3].flatten(), noise[3].flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("t", [0, 1, 37, 999])
def test_ddpm_step_matches_diffusers(t, clip):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", variance_type="fixed_small",
                        clip_sample=clip is not None, clip_sample_range=clip or 1.0)
    g = _gen(1)
    x_t = torch.randn(2, 4, 8, 8, generator=g) * 1.5
    eps = torch.randn(2, 4, 8, 8, generator=g)
    out = ref.step(eps, t, x_t, generator=_gen(7))
    noise = torch.randn(2, 4, 8, 8, generator=_gen(7))  # the same draw diffusers made
    prev, x0 = diffusion.ddpm_step(eps, t, x_t, ref.alphas_cumprod, noise=noise, clip_sample=clip)
    assert torch.allclose(x0, out.pred_original_sample, atol=1e-5)
    assert torch.allclose(prev, out.prev_sample, atol=1e-5)


@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("steps", [1, 5, 50])
def test_ddim_step_matches_diffusers_through_a_whole_loop(steps, clip):
    """SD's schedule, every step of diffusers' own DDIM timesteps, down to the clean image (set_alpha_to_one)"""
    ref = DDIMScheduler(**diffusion.SD_SCHEDULE, clip_sample=clip is not None, clip_sample_range=clip or 1.0)
    ref.set_timesteps(steps)
    model = _EpsModel(1000)
    x = ours = torch.randn(2, 4, 8, 8, generator=_gen(2))
    timesteps = ref.timesteps.tolist()
    for t, prev_t in zip(timesteps, timesteps[1:] + [-1]):
        eps = model(x, t)
        out = ref.step(eps, t, x)
        ours, x0 = diffusion.ddim_step(model(ours, t), t, prev_t, ours, ref.alphas_cumprod, clip_sample=clip)
        assert torch.allclose(x0, out.pred_original_sample, atol=1e-5)
        x = out.prev_sample
        assert torch.allclose(ours, x, atol=1e-5)


def test_ddim_step_with_the_true_noise_lands_on_the_clean_image():
    """eta = 0 is exact when the model predicts the noise that was added (Song et al. 2021, eq. 12)"""
    acp = diffusion.alphas_cumprod(diffusion.make_betas(**diffusion.SD_SCHEDULE))
    g = _gen(0)
    x0, noise = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.randn(1, 3, 8, 8, generator=g)
    x = diffusion.q_sample(x0, 999, noise, acp)
    for t, prev_t in [(999, 700), (700, 300), (300, -1)]:
        x, _ = diffusion.ddim_step(noise, t, prev_t, x, acp)
    assert torch.allclose(x, x0, atol=1e-5)
    with pytest.raises(InputError, match="timestep 1000 is out of range"):
        diffusion.ddim_step(noise, 1000, 999, x, acp)


def test_posterior_mean_recovers_x0_path():
    # if x_t was made from x0 by eq. 4, the posterior mean lies between them: closer to x0 for small t
    acp = diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000).double())  # float64: exact algebra
    x0 = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    x_t = diffusion.q_sample(x0, 5, torch.zeros_like(x0), acp)
    mean, var = diffusion.posterior(x0, x_t, 5, acp)
    assert torch.allclose(mean, acp[4].sqrt() * x0, atol=1e-10)  # noise-free path: mean = sqrt(alpha_bar_{t-1}) x0
    assert 0 < var < diffusion.linear_beta_schedule(1000)[5]


class _EpsModel(torch.nn.Module):
    """a fixed smooth 'denoiser' so sampling loops can be compared exactly"""

    def __init__(self, num_train_timesteps: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))
        self.config = type("C", (), {"num_train_timesteps": num_train_timesteps})()

    def forward(self, x, t):
        return self.w * torch.tanh(x) + 0.001 * torch.as_tensor(t, dtype=x.dtype)


def test_own_loop_equals_diffusers_ddpm_loop():
    T = 50
    model = _EpsModel(T)
    betas = diffusion.linear_beta_schedule(T, 1e-3, 0.2)
    ours = diffusion.sample(model, (2, 4, 8, 8), betas, generator=_gen(3))
    ref = DDPMScheduler(num_train_timesteps=T, beta_start=1e-3, beta_end=0.2, clip_sample=False)
    theirs = diffusion.sample(model, (2, 4, 8, 8), ref, num_inference_steps=T, generator=_gen(3))
    assert torch.isfinite(ours).all()
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_sample_with_ddim_few_steps():
    model = _EpsModel(1000)
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    a = diffusion.sample(model, (1, 4, 8, 8), ddim, num_inference_steps=5, generator=_gen(0))
    b = diffusion.sample(model, (1, 4, 8, 8), ddim, num_inference_steps=5, generator=_gen(0))
    assert a.shape == (1, 4, 8, 8) and torch.equal(a, b)  # deterministic with the seed
    assert len(ddim.timesteps) == 5


def test_diffusion_loss_trains_a_parameter():
    torch.manual_seed(0)
    acp = diffusion.alphas_cumprod(diffusion.linear_beta_schedule(100, 1e-3, 0.2))
    x0 = torch.zeros(16, 1, 4, 4)  # with x0 = 0, x_t = sqrt(1-a) * noise, so eps = x_t / sqrt(1 - a)
    scale = torch.nn.Parameter(torch.tensor(0.0))
    model = lambda x, t: scale * x  # noqa: E731
    opt = torch.optim.SGD([scale], lr=0.5)
    first = None
    for _ in range(100):
        loss = diffusion.diffusion_loss(model, x0, acp, generator=_gen(_))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert 1.0 < scale.item() < 2.0  # 1/sqrt(1 - alpha_bar) averaged over t is a little above 1


def test_bad_input_is_one_sentence():
    acp = diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000))
    x0 = torch.zeros(2, 3, 8, 8)
    with pytest.raises(InputError, match="timestep 1000 is out of range"):
        diffusion.q_sample(x0, torch.tensor([0, 1000]), torch.zeros_like(x0), acp)
    with pytest.raises(InputError, match="timestep -1 is out of range"):
        diffusion.q_sample(x0, -1, torch.zeros_like(x0), acp)
    with pytest.raises(InputError, match="batch has 2"):
        diffusion.q_sample(x0, torch.tensor([1, 2, 3]), torch.zeros_like(x0), acp)
    with pytest.raises(InputError, match="noise has shape"):
        diffusion.q_sample(x0, 3, torch.zeros(2, 3, 4, 4), acp)
    with pytest.raises(InputError, match="unknown beta_schedule"):
        diffusion.make_betas("cosine")
    model = _EpsModel(1000)
    with pytest.raises(InputError, match="num_train_timesteps=1000"):
        diffusion.sample(model, (1, 4, 8, 8), DDIMScheduler(num_train_timesteps=500), num_inference_steps=5)
    with pytest.raises(InputError, match="num_train_timesteps=1000"):
        diffusion.sample(model, (1, 4, 8, 8), diffusion.linear_beta_schedule(10))


# ---- the lesson-05 t-slider and the lesson-08 training loop


@pytest.fixture(scope="module")
def tiny_vae():
    from latentlab.vae import VAE, VAEConfig

    torch.manual_seed(0)
    return VAE(VAEConfig(block_out_channels=(8, 8, 8, 8), norm_num_groups=4, scaling_factor=0.5)).eval()  # factor 8


def test_render_noising_is_q_sample_in_both_spaces(tiny_vae):
    from latentlab import widgets

    g = _gen(4)
    x0 = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    z0 = torch.randn(1, 4, 2, 2, generator=g)
    nx, nz = torch.randn(x0.shape, generator=g), torch.randn(z0.shape, generator=g)
    acp = diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000))
    first_x, first_z = widgets.render_noising(tiny_vae, x0, z0, 0, acp, nx, nz)
    last_x, last_z = widgets.render_noising(tiny_vae, x0, z0, 999, acp, nx, nz)
    assert first_x.shape == (16, 16, 3) and first_z.shape == (16, 16, 3)
    to_uint8 = lambda x: ((x[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()  # noqa: E731
    assert abs(first_x.astype(int) - to_uint8(x0).astype(int)).max() <= 4  # t = 0: the image, barely touched
    assert (last_x == to_uint8(diffusion.q_sample(x0, 999, nx, acp))).all()
    with torch.no_grad():
        expected = tiny_vae.decode(diffusion.q_sample(z0, 999, nz, acp) / 0.5)
    assert (last_z == to_uint8(expected)).all()  # the latent is unscaled before decoding


def test_noise_slider_redraws_on_a_new_t(tiny_vae):
    from latentlab import widgets

    image = torch.rand(1, 3, 16, 16, generator=_gen(5)) * 2 - 1
    acp = diffusion.alphas_cumprod(diffusion.linear_beta_schedule(1000))
    app = widgets.noise_slider(tiny_vae, image, acp)
    slider = app.children[0].children[1]
    pictures = [box.children[1] for box in app.children[2].children]
    before = [p.value for p in pictures]
    slider.value = 900
    assert all(p.value != b for p, b in zip(pictures, before))
    assert "SNR" in app.children[1].value
    with pytest.raises(InputError, match="divisible by 8"):
        widgets.noise_slider(tiny_vae, image[:, :, :12, :12], acp)


def test_train_denoiser_lowers_the_loss_and_checks_shapes():
    from latentlab.denoiser_training import train_denoiser
    from latentlab.unet import UNetConfig

    data = torch.randn(64, 4, 4, 4, generator=_gen(6)) * 0.1 + torch.linspace(-1, 1, 4)[None, :, None, None]
    config = UNetConfig(block_out_channels=(16, 16), norm_num_groups=4, attention_head_dim=8)
    model, history = train_denoiser(data, config, steps=60, batch_size=16, lr=3e-3, seed=0)
    first = sum(h["loss"] for h in history[:10]) / 10
    last = sum(h["loss"] for h in history[-10:]) / 10
    assert len(history) == 60 and last < 0.7 * first
    assert model.config.sample_size == 4
    _, timed = train_denoiser(data, config, steps=10_000, batch_size=16, seed=0, time_budget_s=0.5)
    assert 1 <= len(timed) < 10_000 and timed[-1]["time_s"] >= 0.5  # stopped by the clock, not the step count
    with pytest.raises(InputError, match="data has 3"):
        train_denoiser(torch.zeros(32, 3, 4, 4), config, steps=1, batch_size=16)


def test_min_snr_weighting_matches_its_formula():
    acp = diffusion.alphas_cumprod(diffusion.cosine_beta_schedule(1000))
    x0 = torch.randn(8, 4, 4, 4, generator=_gen(8))
    model = lambda x, t: 0.5 * x  # noqa: E731
    weighted = diffusion.diffusion_loss(model, x0, acp, _gen(9), min_snr_gamma=5.0)
    g = _gen(9)  # redraw exactly what diffusion_loss drew
    t = torch.randint(0, 1000, (8,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = diffusion.q_sample(x0, t, noise, acp)
    snr = acp[t] / (1 - acp[t])
    expected = ((0.5 * x_t - noise).square().mean(dim=(1, 2, 3)) * snr.clamp(max=5.0) / snr).mean()
    assert torch.allclose(weighted, expected, rtol=1e-5)
    plain = diffusion.diffusion_loss(model, x0, acp, _gen(9))
    assert torch.allclose(plain, (0.5 * x_t - noise).square().mean(), rtol=1e-5)


class _ClassModel(torch.nn.Module):
    """a fixed 'denoiser' whose prediction moves with the class: 0.3 tanh(x) + 0.1 * label; 4 is "no class\""""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.3))
        self.config = type("C", (), {"num_train_timesteps": 1000, "num_class_embeds": 5})()
        self.batches, self.labels = [], []

    def forward(self, x, t, class_labels=None):
        labels = torch.full((len(x),), 4) if class_labels is None else class_labels
        self.batches.append(len(x))
        self.labels.append(labels.clone())
        return self.w * torch.tanh(x) + 0.1 * labels.float()[:, None, None, None]


def test_guidance_mixes_the_class_and_the_null_prediction_in_one_doubled_batch():
    model, x = _ClassModel(), torch.randn(3, 4, 8, 8, generator=_gen(10))
    labels = torch.tensor([0, 2, 3])
    guided = diffusion.guided_noise(model, x, 500, labels, guidance=3.0)
    assert model.batches == [6]  # conditional and null together, one forward pass
    # eps_null + 3 (eps_class - eps_null): the class offset pushed 3x as far from "no class" (0.4)
    expected = 0.3 * torch.tanh(x) + 0.4 + 3 * 0.1 * (labels.float() - 4)[:, None, None, None]
    assert torch.allclose(guided, expected, atol=1e-6)
    assert not torch.allclose(guided, 0.3 * torch.tanh(x) + 0.1 * labels.float()[:, None, None, None], atol=1e-3)
    model.batches.clear()
    plain = diffusion.guided_noise(model, x, 500, labels, guidance=1.0)  # the conditional model alone
    assert model.batches == [3] and torch.allclose(plain, 0.3 * torch.tanh(x) + 0.1 * labels.float()[:, None, None, None])


def test_sampling_with_classes_follows_the_labels_and_guidance_zero_is_the_null_class():
    model = _ClassModel()
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    labels = torch.tensor([0, 3])

    def draw(**kw):
        return diffusion.sample(model, (2, 4, 8, 8), ddim, 5, generator=_gen(11), **kw)

    null = draw()
    assert torch.equal(draw(class_labels=labels, guidance=0.0), null)
    one, two = draw(class_labels=labels), draw(class_labels=labels, guidance=2.0)
    assert not torch.allclose(one, null, atol=1e-3) and not torch.allclose(one, two, atol=1e-3)
    assert all(torch.equal(seen, torch.tensor([0, 3, 4, 4])) for seen in model.labels[-5:])  # classes, then null
    betas = diffusion.make_betas("linear", 1000)  # the hand-built DDPM loop guides too
    assert not torch.allclose(diffusion.sample(model, (2, 4, 8, 8), betas, generator=_gen(1), class_labels=labels),
                              diffusion.sample(model, (2, 4, 8, 8), betas, generator=_gen(1)), atol=1e-3)
    with pytest.raises(InputError, match="no class_labels were given"):
        draw(guidance=2.0)
    with pytest.raises(InputError, match="give one class per sample"):
        draw(class_labels=torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="not class-conditional"):
        diffusion.sample(_EpsModel(1000), (2, 4, 8, 8), ddim, 2, class_labels=labels, guidance=2.0)


def test_the_loss_drops_labels_to_the_null_class_after_drawing_t_and_the_noise():
    acp = diffusion.alphas_cumprod(diffusion.cosine_beta_schedule(1000))
    x0, labels = torch.randn(400, 4, 2, 2, generator=_gen(12)), torch.arange(400) % 4
    model = _ClassModel()
    diffusion.diffusion_loss(model, x0, acp, _gen(13), class_labels=labels)  # no drop by default
    diffusion.diffusion_loss(model, x0, acp, _gen(13), class_labels=labels, uncond_prob=1.0)
    diffusion.diffusion_loss(model, x0, acp, _gen(13), class_labels=labels, uncond_prob=0.25)
    kept, dropped, some = model.labels
    assert torch.equal(kept, labels) and set(dropped.tolist()) == {4}
    assert 0.15 < (some == 4).float().mean() < 0.35 and torch.equal(some[some != 4], labels[some != 4])
    blind = _ClassModel()
    blind.forward = lambda x, t, class_labels=None: 0.3 * torch.tanh(x)  # ignores the class
    assert torch.equal(diffusion.diffusion_loss(blind, x0, acp, _gen(13)),  # the same t and noise with labels or not
                       diffusion.diffusion_loss(blind, x0, acp, _gen(13), class_labels=labels, uncond_prob=0.25))
    with pytest.raises(InputError, match="not class-conditional"):
        diffusion.diffusion_loss(_EpsModel(1000), x0, acp, _gen(13), class_labels=labels, uncond_prob=0.1)
