"""latentlab.device's thread policy: affinity mask, a container's CPU quota (cgroup v1 and v2) and the load.

The machine is simulated: cgroup files in tmp_path, and a patched affinity mask, core count and load average.
"""

import pytest
import torch

from latentlab import device
from latentlab.errors import InputError


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """an 8-core machine, all cores in the affinity mask, nothing else running, no cgroup files yet"""
    monkeypatch.setattr(device, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(device.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(device.os, "getloadavg", lambda: (0.1, 0.1, 0.1), raising=False)
    before = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(before)


def _v1(root, quota: str, period: str = "100000") -> None:
    (root / "cpu").mkdir(exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")


def test_no_cgroup_files_means_no_quota(machine):
    assert device.cpu_quota() is None
    assert device.usable_cores() == 8 and device.default_threads() == 8


@pytest.mark.parametrize("cpu_max, quota, cores", [
    ("100000 100000", 1.0, 1),  # docker --cpus=1
    ("50000 100000", 0.5, 1),  # half a CPU still needs one thread
    ("150000 100000", 1.5, 2),  # rounded up, as the JVM and Go do
    ("400000 100000", 4.0, 4),
    ("max 100000", None, 8),  # no quota: the affinity mask decides
])
def test_cgroup_v2_quota(machine, cpu_max, quota, cores):
    (machine / "cpu.max").write_text(cpu_max + "\n")
    assert device.cpu_quota() == quota
    assert device.usable_cores() == cores


@pytest.mark.parametrize("quota_us, period_us, cores", [("100000", "100000", 1), ("200000", "50000", 4),
                                                         ("-1", "100000", 8)])
def test_cgroup_v1_quota(machine, quota_us, period_us, cores):
    _v1(machine, quota_us, period_us)
    assert device.usable_cores() == cores


def test_v2_wins_over_v1_and_garbage_is_no_quota(machine):
    _v1(machine, "300000")
    (machine / "cpu.max").write_text("100000 100000\n")
    assert device.usable_cores() == 1
    (machine / "cpu.max").write_text("lots\n")  # one word: not v2's format, so v1 is read
    assert device.usable_cores() == 3
    (machine / "cpu" / "cpu.cfs_quota_us").write_text("many\n")
    assert device.cpu_quota() is None and device.usable_cores() == 8


def test_affinity_mask_caps_a_generous_quota(machine, monkeypatch):
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    (machine / "cpu.max").write_text("800000 100000\n")
    assert device.usable_cores() == 2


@pytest.mark.parametrize("load, threads", [(0.4, 8), (2.6, 5), (7.4, 1), (30.0, 1)])
def test_default_threads_leave_the_busy_cores(machine, monkeypatch, load, threads):
    monkeypatch.setattr(device.os, "getloadavg", lambda: (load, load, load), raising=False)
    assert device.default_threads() == threads


def test_load_on_other_cores_does_not_cut_a_quota_below_the_idle_ones(machine, monkeypatch):
    """a 2-CPU container on a host with 8 cores, 5 of them busy: 3 idle cores, the quota allows 2"""
    (machine / "cpu.max").write_text("200000 100000\n")
    monkeypatch.setattr(device.os, "getloadavg", lambda: (5.0, 5.0, 5.0), raising=False)
    assert device.default_threads() == 2


def test_set_threads_without_argument_follows_the_policy(machine):
    (machine / "cpu.max").write_text("100000 100000\n")  # a 1-CPU container on an 8-core host
    assert device.set_threads() == 1 == torch.get_num_threads()
    assert device.set_threads(2) == 2  # an explicit count is obeyed
    with pytest.raises(InputError, match="threads is 0; use at least 1"):
        device.set_threads(0)


def test_the_real_machine_gives_a_sane_count():
    assert 1 <= device.default_threads() <= device.usable_cores() <= (device.os.cpu_count() or 1)


def test_pick_device_and_overrides(monkeypatch):
    assert device.pick_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LATENTLAB_DEVICE", "cpu")
    assert device.pick_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            device.pick_device("cuda")
    with pytest.raises(InputError, match="unknown device"):
        device.pick_device("tpu-please")


def test_seed_everything_repeats():
    a = torch.randn(4, generator=device.seed_everything(3))
    b = torch.randn(4, generator=device.seed_everything(3))
    assert torch.equal(a, b)


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert device.set_threads(1) == 1
    finally:
        torch.set_num_threads(before)


def test_describe_names_the_cpu_threads_in_good_english():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert device.describe(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert device.describe(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)
