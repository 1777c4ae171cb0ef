"""Every Python code block of README.rst and doc/*.rst runs as a reader would run it.

The blocks of one document run in order in one namespace (a later block may use
what an earlier one built, as a reader's session does), in a fresh temporary folder
whose checkpoint files (``deit_tiny.pth``, ``deit_tiny_patch16_224.pth``) link to the
shared DeiT-Tiny weights. From the first block that names such a file on, a document
is skipped, with the reason, where the weights are absent.

The example scripts, which the documents include, run too, at a small image size.

A document that starts Ray (``ray.init``) runs on the test session's one local
Ray instead (the ``local_ray`` fixture, 2 CPUs as the documents ask): its
``ray.init`` and ``ray.shutdown`` join and leave that Ray without starting or
stopping one, which would cost seconds per block.

Not run here: shell blocks (``bash``). They install the package, run the test suite
or build these documents (which CI does as steps of its own), or call the command
line, whose subcommands and options ``tests/test_cli.py`` runs.
"""

from __future__ import annotations

import re
import runpy
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.rst", *sorted((ROOT / "doc").glob("*.rst"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# The checkpoint file names the documents use, all the shared DeiT-Tiny weights.
CHECKPOINT_NAMES = ("deit_tiny.pth", "deit_tiny_patch16_224.pth")

_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block:: *(\w+)\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, dedented code) of each ``.. code-block:: python``."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match or match.group(2) != "python":
            continue
        indent = len(match.group(1))
        body: list[str] = []
        start = None
        for later in range(number + 1, len(lines)):
            content = lines[later]
            if content.strip() and len(content) - len(content.lstrip()) <= indent:
                break  # back at the directive's level: the block has ended
            if start is None and content.strip():
                if content.lstrip().startswith(":"):  # a directive option
                    continue
                start = later + 1
            if start is not None:
                body.append(content)
        blocks.append((start or number + 1, textwrap.dedent("\n".join(body))))
    return blocks


def test_python_blocks_are_found():
    text = """
Intro.

.. code-block:: python
   :caption: one

   a = 1
   if a:
       b = 2

   c = 3

Prose again.

.. code-block:: bash

   ls

  .. code-block:: python

     d = 4
"""
    blocks = python_blocks(text)
    assert [number for number, _ in blocks] == [7, 21]
    namespace: dict = {}
    for _, code in blocks:
        exec(compile(code, "<text>", "exec"), namespace)
    assert (namespace["b"], namespace["c"], namespace["d"]) == (2, 3, 4)


def test_every_document_is_checked():
    names = {path.name for path in DOCUMENTS}
    assert {"README.rst", "index.rst", "user_guide.rst", "method.rst"} <= names


@pytest.mark.parametrize(
    "document", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS]
)
def test_document_snippets_run(document, tmp_path, monkeypatch, request):
    blocks = python_blocks(document.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{document.name} has no Python code blocks")
    monkeypatch.chdir(tmp_path)
    if any("ray.init(" in code for _, code in blocks):
        ray = request.getfixturevalue("local_ray")  # skips where Ray is absent
        monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)
        monkeypatch.setattr(ray, "shutdown", lambda *args, **kwargs: None)
    namespace: dict = {"__name__": "__main__"}
    for number, code in blocks:
        where = f"{document.relative_to(ROOT)}:{number}"
        if any(name in code for name in CHECKPOINT_NAMES):
            weights = request.getfixturevalue("deit_weights")  # skips where absent
            for name in CHECKPOINT_NAMES:
                if not (tmp_path / name).exists():
                    (tmp_path / name).symlink_to(weights)
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"the code block at {where} raised {exc!r}\n\n{code}")
        finally:
            plt.close("all")


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_scripts_run(
    script, tmp_path, monkeypatch, deit_weights, lung_ct_paths
):
    # Every example reads the shared data and takes --output and --image-size.
    monkeypatch.setenv("SKLEARN_ARB_DATA", str(deit_weights.parents[1]))
    output = tmp_path / "out"
    monkeypatch.setattr(
        sys, "argv", [str(script), "--output", str(output), "--image-size", "224"]
    )
    runpy.run_path(str(script), run_name="__main__")
    plt.close("all")
    assert list(output.glob("*.png")), f"{script.name} wrote no figure"
