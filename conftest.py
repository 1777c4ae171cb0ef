"""Doctests write their scratch files under pytest's own temporary folder.

The docstring examples call ``tempfile.mkdtemp()`` as a user would; pointing
``tempfile`` at ``tmp_path`` for the duration of a doctest lets pytest prune those
folders, instead of every run leaving its own in the system's temporary directory.
"""

import tempfile

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(autouse=True)
def _doctest_scratch_in_tmp_path(request, monkeypatch):
    if isinstance(request.node, DoctestItem):
        scratch = request.getfixturevalue("tmp_path")
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
