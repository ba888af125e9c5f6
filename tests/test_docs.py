"""The README and docs/: every relative link leads to a file (and heading) that exists, and every
`python -m benchmarks.X --flag` they name is a benchmark with that flag."""
import glob
import os
import re

import pytest

from tests.helpers import REPO_ROOT

PAGES = sorted([os.path.join(REPO_ROOT, "README.md"), os.path.join(REPO_ROOT, "ARCHITECTURE.md")] +
               glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def anchors(path):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", read(path), re.M):
        text = re.sub(r"[`*]", "", heading.strip().lower())
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def test_the_docs_are_where_the_readme_says():
    assert len(PAGES) >= 10
    assert len(read(os.path.join(REPO_ROOT, "README.md")).splitlines()) < 300


@pytest.mark.parametrize("page", PAGES, ids=lambda path: os.path.relpath(path, REPO_ROOT))
def test_every_relative_link_leads_somewhere(page):
    broken = []
    for url in LINK.findall(read(page)):
        if re.match(r"^[a-z]+:", url):
            continue
        path, _, anchor = url.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(target):
            broken.append(f"{url}: no file {os.path.relpath(target, REPO_ROOT)}")
        elif anchor and target.endswith(".md") and anchor not in anchors(target):
            broken.append(f"{url}: no heading #{anchor} in {os.path.relpath(target, REPO_ROOT)}")
    assert not broken, broken


def benchmark_commands():
    """(page, module, flags) of every `python -m benchmarks.NAME ...` line of the docs."""
    commands = []
    for page in PAGES:
        for line in read(page).splitlines():
            for match in re.finditer(r"python -m benchmarks\.(\w+)((?: +[^`|#;&]*)?)", line):
                commands.append((os.path.relpath(page, REPO_ROOT), match.group(1),
                                 re.findall(r"(?<![\w-])(--[a-z][\w-]*)", match.group(2))))
    return commands


def test_every_benchmark_command_names_a_benchmark_and_its_flags():
    commands = benchmark_commands()
    assert len(commands) >= 8, commands
    wrong = []
    for page, module, flags in commands:
        source = os.path.join(REPO_ROOT, "benchmarks", f"{module}.py")
        if not os.path.exists(source):
            wrong.append(f"{page}: benchmarks.{module} does not exist")
            continue
        text = read(source)
        wrong += [f"{page}: benchmarks.{module} has no {flag}" for flag in flags if f'"{flag}"' not in text]
    assert not wrong, wrong
