"""iqabench.errors.one_line: how an error becomes the one line a user, a log or a table cell sees."""
from __future__ import annotations

from iqabench.errors import IqaError, NotAvailable, one_line


def test_an_engine_message_is_kept_whole_on_one_line():
    assert one_line(IqaError("a.csv: bad row 3\n  column 'mos' is empty")) == "a.csv: bad row 3 column 'mos' is empty"
    assert one_line(NotAvailable("no weights"), typed=True) == "no weights"  # ours: the type adds nothing
    assert one_line("Usage: iqabench run\nTry --help\n") == "Usage: iqabench run Try --help"


def test_a_library_exception_gives_its_first_line():
    exc = RuntimeError("\n  Weights only load failed.\nPlease file an issue with the following so that we can ...\n")
    assert one_line(exc) == "Weights only load failed."
    assert one_line(exc, typed=True) == "RuntimeError: Weights only load failed."
    assert one_line(exc, 7) == "Weights"


def test_an_empty_message_gives_the_type_and_colour_codes_go():
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ValueError("  \n "), typed=True) == "ValueError"
    assert one_line(ValueError("\x1b[31mred\x1b[0m alert")) == "red alert"
