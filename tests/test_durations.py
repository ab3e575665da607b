"""convvit.durations: one format for the epoch lines of fit and the progress lines of sweep."""
import pytest

from convvit.durations import format_duration


@pytest.mark.parametrize("seconds, text", [
    (0.04, "0.0 s"), (12.34, "12.3 s"), (59.96, "1m00s"), (92.4, "1m32s"), (3599.4, "59m59s"), (3599.6, "1h00m"),
    (7530, "2h05m"), (-1.0, "0.0 s"),
])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_fit_and_sweep_write_durations_the_same_way():
    from convvit.sweep import core
    from convvit.training import callbacks

    assert core.format_duration is callbacks.format_duration is format_duration
