"""The `latentlab` command line: bad input is one line naming the command and exit 2, never a traceback."""

import subprocess
import sys

import pytest

from latentlab import cli


@pytest.mark.parametrize("command, words", [
    (["reconstruct", "/nonexistent/photo.png"], "/nonexistent/photo.png"),
    (["bench", "--device", "tpu-please"], "tpu-please"),
])
def test_cli_reports_bad_input_in_one_line(command, words):
    """a real process, as a learner sees it: exit 2 and one line on stderr that names the command and the input"""
    out = subprocess.run([sys.executable, "-m", "latentlab", *command], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{out.stderr}"
    assert lines[0].startswith(f"latentlab {command[0]}: ") and words in lines[0]
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_cli_unknown_command_is_a_usage_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["no-such-command"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "invalid choice" in err and "no-such-command" in err and "Traceback" not in err
