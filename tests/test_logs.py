"""The toolkit's logging: stage lines with their time, bars only on a terminal, configure is idempotent."""
import io
import logging

import pytest

from instruct_select import logs


@pytest.fixture
def captured():
    stream = io.StringIO()
    logs.configure(logging.INFO, stream)
    yield stream
    logs.configure(logging.WARNING)


def test_stage_lines_give_start_end_and_time(captured):
    with logs.stage_lines("features", logging.getLogger("instruct_select.test")):
        pass
    lines = captured.getvalue().splitlines()
    assert lines[0] == "features ..."
    assert lines[1].startswith("features done in ") and lines[1].endswith(" s")


def test_stage_lines_say_a_failure_and_reraise(captured):
    with pytest.raises(ValueError):
        with logs.stage_lines("warmup"):
            raise ValueError("boom")
    assert "warmup failed after" in captured.getvalue()


def test_configure_twice_keeps_one_handler(captured):
    logs.configure(logging.INFO, captured)
    logging.getLogger("instruct_select.x").info("once")
    assert captured.getvalue().count("once") == 1


def test_quiet_level_hides_info(captured):
    logs.configure(logging.WARNING, captured)
    logging.getLogger("instruct_select.x").info("hidden")
    logging.getLogger("instruct_select.x").warning("shown")
    assert "hidden" not in captured.getvalue() and "shown" in captured.getvalue()


def test_bars_are_off_when_stderr_is_not_a_terminal(captured, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not logs.bars_enabled()
    assert list(logs.progress_bar(range(3), desc="x")) == [0, 1, 2]
