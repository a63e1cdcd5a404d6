"""latentlab.mode: the quick-mode switch and by_mode."""

from latentlab import mode


def test_quick_mode_switch(monkeypatch):
    monkeypatch.setenv("LATENTLAB_QUICK", "1")
    assert mode.quick() and mode.by_mode(full=1000, quick=10) == 10
    monkeypatch.setenv("LATENTLAB_QUICK", "0")
    assert not mode.quick() and mode.by_mode(full=1000, quick=10) == 1000
    monkeypatch.delenv("LATENTLAB_QUICK")
    assert mode.by_mode(full="real", quick="small") == "real"
