"""The server's log lines (server/logs.py): text or JSON, noisy warnings rate-limited, a template
build's progress in a few lines."""

from __future__ import annotations

import json
import logging

from sandlot.server.logs import JsonFormatter, RateLimit, TextFormatter
from sandlot.templates import logged_progress


def _record(msg: str, *args, exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("sandlot.test", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_text_lines_show_fields_the_message_does_not():
    record = _record("GET %s 200", "/health", fields={"route": "/health", "key": "key_1", "sandbox": None,
                                                      "note": "two words"}, in_message=("route",))
    line = TextFormatter().format(record)
    assert line.endswith('sandlot.test: GET /health 200 key=key_1 note="two words"'), line


def test_text_lines_carry_each_records_own_time_across_seconds():
    ours, logging_own = TextFormatter(), logging.Formatter("%(asctime)s")
    for created in (1700000000.25, 1700000000.999, 1700000001.0004, 1700000001.5, 1700003600.0):
        record = _record("tick")
        record.created, record.msecs = created, float(int(created * 1000) % 1000)
        assert ours.format(record).split(" INFO ")[0] == logging_own.format(record)


def test_json_lines_are_one_object_each_even_with_a_traceback():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        record = _record("failed %s", "x", exc_info=sys.exc_info(), fields={"sandbox": "i1", "status": 500})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed x" and entry["sandbox"] == "i1" and entry["status"] == 500
    assert entry["level"] == "info" and "ValueError: boom" in entry["exception"]


def test_rate_limit_lets_one_through_per_window_and_counts_the_rest():
    limit = RateLimit({"Invalid HTTP request received."}, window=60)
    passed = [limit.filter(_record("Invalid HTTP request received.")) for _ in range(1000)]
    assert passed.count(True) == 1
    assert limit.filter(_record("something else"))  # not a noisy message: untouched
    limit._last.clear()  # the window has passed
    record = _record("Invalid HTTP request received.")
    assert limit.filter(record) and "999 more like it" in record.getMessage()


def test_a_build_of_700_steps_logs_a_few_lines(caplog):
    logger = logging.getLogger("sandlot.test-build")
    report = logged_progress("base", logger)
    with caplog.at_level(logging.INFO, logger=logger.name):
        for done in range(700):
            report(done, 700, f"Unpacking package-{done}")
        report(700, 700, "done")
    lines = [r.getMessage() for r in caplog.records]
    assert 5 <= len(lines) <= 15, lines
    assert lines[0] == "building template base: 0% Unpacking package-0"
