"""Procfile parsing (lab-spec §2 release: the slug is built from a directory with a Procfile)."""

import pytest

from labctl.domain.procfile import parse_procfile
from labctl.errors import InvalidInput


def test_types_in_file_order_with_commands_kept_verbatim():
    text = "web: gunicorn app:app --bind 0.0.0.0:$PORT\nworker: python worker.py --queue=a:b\nclock: python clock.py\n"
    procs = parse_procfile(text)
    assert list(procs) == ["web", "worker", "clock"]
    assert procs["web"] == "gunicorn app:app --bind 0.0.0.0:$PORT"
    assert procs["worker"] == "python worker.py --queue=a:b"  # only the first colon separates


def test_blank_lines_comments_whitespace_and_crlf_are_ignored():
    text = "# processes\r\n\r\n  web:python -m http.server $PORT  \r\n   # indented\r\nrelease: ./migrate\r\n"
    assert parse_procfile(text) == {"web": "python -m http.server $PORT", "release": "./migrate"}


def test_empty_procfile_has_no_process_types():
    assert parse_procfile("") == {}
    assert parse_procfile("# nothing yet\n\n") == {}


def test_dashes_underscores_and_digits_in_type_names():
    assert list(parse_procfile("worker-2: a\nslow_jobs: b\n")) == ["worker-2", "slow_jobs"]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("web: ok\njust a command\n", 2, "expected 'TYPE: COMMAND'"),
        ("web:\n", 1, "expected 'TYPE: COMMAND'"),
        ("\n\n: python app.py\n", 3, "expected 'TYPE: COMMAND'"),
        ("web: a\n\nWeb: b\n", 3, "invalid process type 'Web'"),
        ("2web: a\n", 1, "invalid process type '2web'"),
        ("web.1: a\n", 1, "invalid process type 'web.1'"),
        ("web: a\nworker: b\nweb: c\n", 3, "'web' is declared twice"),
    ],
)
def test_malformed_lines_name_their_line_number(text, line, what):
    with pytest.raises(InvalidInput) as err:
        parse_procfile(text)
    assert str(err.value).startswith(f"Procfile line {line}: ")
    assert what in str(err.value)
    assert "\n" not in str(err.value)
