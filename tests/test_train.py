"""latentlab.train: the generic loop (history, evaluation, weight averaging, Ctrl-C), its schedules and the VAE loss."""

import pytest
import torch

from latentlab.checkpoints import load_checkpoint
from latentlab.errors import InputError
from latentlab.train import (
    WeightAverage,
    fit,
    vae_loss,
    warmup_cosine,
)
from latentlab.vae import VAE, VAEConfig

TINY = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _vae(seed=0):
    torch.manual_seed(seed)
    return VAE(TINY)


def _images(b=4, size=16, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator("cpu").manual_seed(seed)) * 2 - 1


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_warmup_cosine_shape():
    f = warmup_cosine(100, warmup=10, final=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.55) and f(100) == pytest.approx(0.1)


def test_vae_loss_is_reconstruction_plus_beta_kl_per_value():
    vae, x = _vae(), _images()
    logs = vae_loss(vae, x, beta=0.5, reconstruction="mse", generator=torch.Generator("cpu").manual_seed(0))
    with torch.no_grad():
        posterior = vae.encode(x)
        recon = vae.decode(posterior.sample(torch.Generator("cpu").manual_seed(0)))
    torch.testing.assert_close(logs["rec"], (recon - x).pow(2).mean())
    torch.testing.assert_close(logs["kl"], posterior.kl().mean() / (3 * 16 * 16))
    torch.testing.assert_close(logs["loss"], logs["rec"] + 0.5 * logs["kl"])


def _fixed_batches(x):
    while True:
        yield x


def _smooth_images(b=4, size=16):
    """colour gradients: images an autoencoder can learn in a few steps (unlike noise)"""
    ramp = torch.linspace(-0.8, 0.8, size)
    colours = torch.rand(b, 3, 1, 1, generator=torch.Generator("cpu").manual_seed(0)) * 2 - 1
    return (colours * ramp[None, None, :, None] + 0.1 * ramp[None, None, None, :]).clamp(-1, 1)


def test_fit_learns_evaluates_and_checkpoints(tmp_path):
    vae, x = _vae(), _smooth_images()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    calls = []

    def evaluate(model):
        calls.append(model.training)
        return {"score": 1.0}

    history = fit(vae, lambda m, b: vae_loss(m, b, reconstruction="mse"), _fixed_batches(x), 30, optimizer,
                  evaluate=evaluate, eval_every=10, checkpoint=tmp_path / "c.safetensors", checkpoint_every=10,
                  metadata=lambda: {"run": "test"})
    assert [h["step"] for h in history] == list(range(1, 31))
    assert sum(h["loss"] for h in history[-5:]) < 0.5 * sum(h["loss"] for h in history[:5])
    assert calls == [False, False, False]  # steps 10, 20, 30, each in eval mode
    assert [h["step"] for h in history if "score" in h] == [10, 20, 30]
    assert not vae.training
    reloaded = _vae(1)
    assert load_checkpoint(tmp_path / "c.safetensors", reloaded) == {"run": "test", "step": "30"}
    assert _same_weights(reloaded, vae)


def test_ctrl_c_saves_and_returns_a_usable_model(tmp_path):
    vae, x = _vae(), _images()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    count = 0

    def loss_fn(model, batch):
        nonlocal count
        count += 1
        if count == 4:
            raise KeyboardInterrupt
        return vae_loss(model, batch)

    history = fit(vae, loss_fn, _fixed_batches(x), 100, optimizer, checkpoint=tmp_path / "c.safetensors")
    assert len(history) == 3 and history[-1]["interrupted"] is True
    assert not vae.training
    reloaded = _vae(1)
    assert load_checkpoint(tmp_path / "c.safetensors", reloaded)["step"] == "3"
    assert _same_weights(reloaded, vae)
    with torch.no_grad():
        assert torch.isfinite(reloaded(x)).all()


def test_a_ctrl_c_during_a_periodic_save_waits_for_it_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import signal
    import tempfile

    from latentlab import checkpoints

    made, mkstemp = 0, tempfile.mkstemp

    def mkstemp_then_ctrl_c(*args, **kwargs):  # the worst moment: the temp file exists, nothing is written yet
        nonlocal made
        made += 1
        handle = mkstemp(*args, **kwargs)
        if made == 3:
            signal.raise_signal(signal.SIGINT)
        return handle

    monkeypatch.setattr(checkpoints.tempfile, "mkstemp", mkstemp_then_ctrl_c)
    vae, x = _vae(), _images()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3)
    history = fit(vae, vae_loss, _fixed_batches(x), 100, optimizer, checkpoint=tmp_path / "c.safetensors",
                  checkpoint_every=1)
    assert len(history) == 3 and history[-1]["interrupted"] is True  # the save of step 3 ran whole, then it stopped
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]
    assert load_checkpoint(tmp_path / "c.safetensors", _vae(1))["step"] == "3"


def test_other_errors_are_not_swallowed(tmp_path):
    def broken(model, batch):
        raise RuntimeError("boom")

    vae = _vae()
    with pytest.raises(RuntimeError, match="boom"):
        fit(vae, broken, _fixed_batches(_images()), 5, torch.optim.SGD(vae.parameters(), lr=0.1),
            checkpoint=tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()


def test_weight_average_follows_the_weights_with_a_lag_and_swaps_back():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    for _ in range(200):
        with torch.no_grad():
            model.weight.fill_(1.0)
        average.update()
    assert average.average[0].item() == pytest.approx(1.0, abs=1e-6)  # a constant weight is averaged to itself
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update()
    assert average.average[0].item() == pytest.approx(1.0 + 0.1 * 2.0)  # one step moves it by 1 - decay
    with average.applied():
        assert model.weight.item() == pytest.approx(1.2)
    assert model.weight.item() == 3.0  # the model's own weights are back
    with pytest.raises(InputError, match="between 0 and 1"):
        WeightAverage(model, decay=1.0)


def test_fit_with_an_average_evaluates_saves_and_returns_the_average(tmp_path):
    vae, x = _vae(), _smooth_images()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=3e-3)
    seen = []

    def evaluate(model):
        seen.append([p.detach().clone() for p in model.parameters()])
        return {}

    fit(vae, lambda m, b: vae_loss(m, b, reconstruction="mse"), _fixed_batches(x), 20, optimizer, evaluate=evaluate,
        eval_every=20, checkpoint=tmp_path / "c.safetensors", average=0.9)
    own = [p.detach() for p in vae.parameters()]  # what fit left in the model
    assert all(torch.equal(a, b) for a, b in zip(seen[-1], own))  # the evaluated weights are the returned ones
    reloaded = _vae(1)
    load_checkpoint(tmp_path / "c.safetensors", reloaded)
    assert _same_weights(reloaded, vae)
    plain = _vae()
    fit(plain, lambda m, b: vae_loss(m, b, reconstruction="mse"), _fixed_batches(x), 20,
        torch.optim.AdamW(plain.parameters(), lr=3e-3))
    assert not _same_weights(plain, vae)  # the same run without the average ends elsewhere


def test_budget_cosine_decays_over_the_wall_clock_after_its_warm_up(monkeypatch):
    """lesson 08's learning rate follows the clock; its quick runs end inside the warm-up, so this test runs the decay"""
    from latentlab import train

    now = [100.0]
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])
    factor = train.budget_cosine(time_budget_s=60.0, warmup=10, final=0.1)
    assert [factor(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]  # linear warm-up by steps, whatever the clock says
    seen = []
    for elapsed in (0.0, 15.0, 30.0, 45.0, 60.0, 90.0):
        now[0] = 100.0 + elapsed
        seen.append(factor(50))
    assert seen[0] == 1.0 and abs(seen[2] - 0.55) < 1e-9 and seen[4] == seen[5] == 0.1  # half-way: the midpoint
    assert all(a > b for a, b in zip(seen, seen[1:5]))  # falls while the budget runs, then stays at `final`
