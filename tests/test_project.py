"""The project's promises about itself: README's test command is what CI runs."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("(b) run the test suite", 1)[1]
    return re.search(r"```sh\n(.+?)\n```", section, re.S).group(1).strip()  # type: ignore[union-attr]


def test_ci_runs_the_readme_test_command() -> None:
    command = readme_test_command()
    lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert command in lines
