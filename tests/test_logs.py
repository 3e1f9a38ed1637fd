"""The CLI's logging: one `level: message` line per event; a library's warnings once per kind, never raw."""

from __future__ import annotations

import logging
import warnings

import pytest

from streamvis.logs import setup_logging


def _warn_from_one_place(value: int) -> None:
    warnings.warn(f"timestamp {value} is earlier than the previous one. Skipping update", UserWarning, stacklevel=1)


def test_a_library_warning_is_logged_once_per_kind(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        with warnings.catch_warnings():  # restores warnings.showwarning afterwards
            warnings.simplefilter("always")
            setup_logging()
            for value in range(200):  # the same kind with other numbers each time
                _warn_from_one_place(value)
            warnings.warn("another kind", DeprecationWarning, stacklevel=1)
        err = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().handlers.clear()
    assert err == [
        "warning: timestamp 0 is earlier than the previous one. Skipping update [UserWarning from tests; shown once]",
        "warning: another kind [DeprecationWarning from tests; shown once]",
    ]
