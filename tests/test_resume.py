"""latentlab.resume: a run's resume state restores weights, optimizer, schedule and average exactly, and refuses in
one sentence a state that is missing or belongs to a run with other settings."""

import pytest
import torch

from latentlab.errors import InputError
from latentlab.resume import load_state, save_state, saved_step, state_path
from latentlab.train import WeightAverage, warmup_cosine

pytestmark = pytest.mark.usefixtures("one_thread")
RUN = {"lr": 0.01, "widths": (4, 8)}


def _setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(20, warmup=5))
    return model, optimizer, scheduler, WeightAverage(model, 0.9)


def _train(model, optimizer, scheduler, average, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, generator=g)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        average.update()


def test_a_restored_state_continues_exactly_as_the_run_that_saved_it(tmp_path):
    path = state_path(tmp_path / "m.safetensors")
    assert path.name == "m.resume.safetensors"
    model, optimizer, scheduler, average = _setup(0)
    _train(model, optimizer, scheduler, average, 5)
    save_state(path, 5, model, optimizer, scheduler, average, [{"step": 5, "loss": 1.0}], RUN)
    fresh = _setup(1)  # other initial weights, no moments, schedule at 0
    assert saved_step(path, RUN) == 5
    step, history = load_state(path, *fresh, RUN)
    assert step == 5 and history == [{"step": 5, "loss": 1.0}]
    assert fresh[2].last_epoch == 5 and fresh[3].updates == 5
    _train(model, optimizer, scheduler, average, 3, seed=1)  # both go on with the same batches
    _train(*fresh, 3, seed=1)
    for a, b in zip([*model.parameters(), *average.average], [*fresh[0].parameters(), *fresh[3].average]):
        assert torch.equal(a, b)  # bit for bit: moments, step counts and learning rate all came back


def test_a_missing_or_foreign_state_is_refused_in_one_sentence(tmp_path):
    path = state_path(tmp_path / "m.safetensors")
    with pytest.raises(InputError, match="found no resume state at .*m.resume.safetensors") as err:
        saved_step(path, RUN)
    assert "\n" not in str(err.value)
    model, optimizer, scheduler, average = _setup(0)
    save_state(path, 3, model, optimizer, scheduler, average, [], RUN)
    with pytest.raises(InputError, match=r"other settings \(lr 0.01 there, 0.02 now\)"):
        saved_step(path, {**RUN, "lr": 0.02})
    with pytest.raises(InputError, match="without a weight average"):
        save_state(path, 3, model, optimizer, scheduler, None, [], RUN)
        load_state(path, model, optimizer, scheduler, average, RUN)
    (tmp_path / "half.resume.safetensors").write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="truncated or corrupt"):
        saved_step(tmp_path / "half.resume.safetensors", RUN)
