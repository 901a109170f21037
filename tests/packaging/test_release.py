"""What a release ships and says: the artifacts of ``make dist``, the README as the package's
long description, the changelog, and one supported-Python range said alike everywhere.

The artifact checks share the session's ``make dist`` build (conftest.py) with
test_extras.py, which installs those same files into fresh venvs.
"""

from __future__ import annotations

import ast
import configparser
import email.message
import email.parser
import itertools
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import readme_renderer.markdown
from _artifacts import REPO, Artifacts
from packaging.version import Version

from fi_evals._version import __version__

ABSOLUTE_LINK = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)
"""Links that work wherever the README is shown (PyPI has no repository to resolve paths in)."""

SDIST_TOP_LEVEL = {"PKG-INFO", "README.md", "CHANGELOG.md", "MANIFEST.in", "setup.cfg",
                   "pyproject.toml", "setup.py", "LICENSE", "fi_evals", "fi_evals.egg-info"}
"""All an sdist may hold at its top (the package, its metadata and the files that build it)."""

CHANGELOG_RELEASE = re.compile(r"^(?P<version>\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?)"
                               r" \((?P<date>\d{4}-\d{2}-\d{2})\)$")
"""A released version's heading: ``## 1.2.0 (2026-12-01)``."""

UNRELEASED = "Unreleased"


# --------------------------------------------------------------------------- supported Pythons


def supported_pythons() -> list[str]:
    """``SUPPORTED_PYTHONS`` of noxfile.py (read, not imported: importing it edits ``PATH``)."""
    tree = ast.parse((REPO / "noxfile.py").read_text("utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "SUPPORTED_PYTHONS" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("noxfile.py has no SUPPORTED_PYTHONS")


def python_classifiers(classifiers: list[str]) -> list[str]:
    prefix = "Programming Language :: Python :: "
    return [c[len(prefix):] for c in classifiers
            if c.startswith(prefix) and re.fullmatch(r"\d+\.\d+", c[len(prefix):])]


def test_supported_pythons_are_said_alike_everywhere() -> None:
    """noxfile.py's versions are the classifiers; python_requires starts at the oldest; ruff and
    mypy check the oldest's syntax; this interpreter is one of them."""
    versions = supported_pythons()
    oldest = min(versions, key=Version)
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    classifiers = [line.strip() for line in parser["metadata"]["classifiers"].splitlines()
                   if line.strip()]
    assert python_classifiers(classifiers) == versions, classifiers
    assert parser["options"]["python_requires"].strip() == f">={oldest}"
    with open(REPO / "pyproject.toml", "rb") as fh:
        tools = tomllib.load(fh)["tool"]
    assert tools["ruff"]["target-version"] == "py" + oldest.replace(".", "")
    assert tools["mypy"]["python_version"] == oldest
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in versions, f"the suite runs on {running}, not a supported version"


# --------------------------------------------------------------------------- the README


class LinkCollector(HTMLParser):
    """Every ``href``/``src`` of the rendered page, and every ``id`` (the anchors)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("href", "src"):
                self.links.append(value)
            elif name == "id":
                self.ids.add(value)


def broken_links(markdown: str) -> list[str]:
    """The links of ``markdown`` rendered as PyPI renders it (readme_renderer, cmarkgfm) that
    lead nowhere there: a relative path (nothing outside the package is published with it) or
    an anchor no heading has."""
    html = readme_renderer.markdown.render(markdown)
    assert html is not None, "the README does not render (is readme-renderer[md] installed?)"
    page = LinkCollector()
    page.feed(html)
    return [link for link in page.links
            if not ABSOLUTE_LINK.match(link)
            and not (link.startswith("#") and link[1:] in page.ids)]


def test_link_check_finds_relative_links_and_lost_anchors() -> None:
    """The checker itself, on a small page."""
    page = ("# Title\n\nSee [docs](docs/x.md), ![chart](bench.png), [up](../shared/P.md),\n"
            "[ok](https://example.org/a), [mail](mailto:a@example.org), [here](#title),\n"
            "[lost](#nowhere), <a href=\"notes.html\">raw</a>, and `[code](not/a/link)`.\n\n"
            "[ref]: relative/ref.md\n\nA [reference][ref].\n")
    # cmarkgfm prefixes anchors as it prefixes the headings' ids: "#title" is found
    assert broken_links(page) == ["docs/x.md", "bench.png", "../shared/P.md",
                                  "#user-content-nowhere", "notes.html", "relative/ref.md"]


def test_readme_has_no_link_that_breaks_as_the_long_description() -> None:
    """README.md is the package's long description (PyPI's page): every link is absolute."""
    broken = broken_links((REPO / "README.md").read_text("utf-8"))
    assert not broken, (f"README.md links that break on the package's page: {broken}; link "
                        f"to an absolute URL or name the file in code (`docs/x.md`)")


# --------------------------------------------------------------------------- the changelog


def changelog_sections(text: str) -> list[tuple[str, str]]:
    """``(heading, body)`` of each ``## `` section, in file order."""
    parts = re.split(r"^## (.+?)[ \t]*$", text, flags=re.MULTILINE)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


def version_tags() -> list[Version] | None:
    """Versions tagged in git (``v1.2.0`` or ``1.2.0``); None when git cannot tell."""
    try:
        done = subprocess.run(["git", "tag", "--list"], cwd=REPO, capture_output=True,
                              text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    tags = (line.strip().removeprefix("v") for line in done.stdout.splitlines())
    return [Version(tag) for tag in tags if CHANGELOG_RELEASE.match(f"{tag} (2000-01-01)")]


def changelog_problems(text: str, version: str, tags: list[Version] | None) -> list[str]:
    """What breaks the rule of CHANGELOG.md: every section is ``## Unreleased`` (on top, once)
    or ``## X.Y.Z (YYYY-MM-DD)``, newest first, each with at least one ``-`` bullet; the
    package's ``version`` is the newest release's, or newer with its notes under Unreleased;
    every version tagged in git has its section."""
    problems: list[str] = []
    sections = changelog_sections(text)
    if not sections:
        return ["no `## ` section"]
    released: list[tuple[Version, str]] = []
    for index, (heading, body) in enumerate(sections):
        if not re.search(r"^\s*- ", body, flags=re.MULTILINE):
            problems.append(f"`## {heading}` has no `- ` entry")
        if heading == UNRELEASED:
            if index != 0:
                problems.append("`## Unreleased` is not the first section")
            continue
        match = CHANGELOG_RELEASE.match(heading)
        if match is None:
            problems.append(f"`## {heading}` is neither `## Unreleased` nor "
                            f"`## X.Y.Z (YYYY-MM-DD)`")
            continue
        released.append((Version(match["version"]), match["date"]))
    for (newer, newer_date), (older, older_date) in itertools.pairwise(released):
        if not newer > older or newer_date < older_date:
            problems.append(f"{newer} ({newer_date}) is listed above {older} ({older_date})")
    current = Version(version)
    newest = max((v for v, _ in released), default=None)
    if newest is not None and current < newest:
        problems.append(f"the package says {current}, older than the newest release {newest}")
    if current != newest and sections[0][0] != UNRELEASED:
        problems.append(f"{current} is not released and has no `## Unreleased` section on top")
    listed = {v for v, _ in released}
    problems += [f"git tag {tag} has no `## {tag} (date)` section"
                 for tag in tags or () if tag not in listed]
    return problems


def test_changelog_rule_catches_what_it_should() -> None:
    """The rule itself, on small changelogs."""
    good = ("# C\n\n## Unreleased\n\n- new\n\n## 0.2.0 (2026-12-01)\n\n- b\n\n"
            "## 0.1.0 (2026-11-01)\n- a\n")
    assert changelog_problems(good, "0.2.0", [Version("0.1.0"), Version("0.2.0")]) == []
    assert changelog_problems(good, "0.3.0", None) == []
    assert changelog_problems(good, "0.1.0", None) == [
        "the package says 0.1.0, older than the newest release 0.2.0"]
    assert changelog_problems(good, "0.2.0", [Version("0.1.1")]) == [
        "git tag 0.1.1 has no `## 0.1.1 (date)` section"]
    released_only = good.split("## 0.2.0", 1)[1]
    assert changelog_problems("## 0.2.0" + released_only, "0.3.0", None) == [
        "0.3.0 is not released and has no `## Unreleased` section on top"]
    swapped = "## 0.1.0 (2026-11-01)\n- a\n## 0.2.0 (2026-12-01)\n- b\n## Unreleased\n"
    assert changelog_problems(swapped, "0.2.0", None) == [
        "`## Unreleased` has no `- ` entry", "`## Unreleased` is not the first section",
        "0.1.0 (2026-11-01) is listed above 0.2.0 (2026-12-01)"]
    assert changelog_problems("## v1.0\n- x\n", "1.0.0", None) == [
        "`## v1.0` is neither `## Unreleased` nor `## X.Y.Z (YYYY-MM-DD)`",
        "1.0.0 is not released and has no `## Unreleased` section on top"]


def test_changelog_has_an_entry_per_version() -> None:
    """CHANGELOG.md follows the rule for fi_evals._version and the git tags."""
    text = (REPO / "CHANGELOG.md").read_text("utf-8")
    assert changelog_problems(text, __version__, version_tags()) == []


# --------------------------------------------------------------------------- the artifacts


def sdist_files(sdist: Path) -> list[str]:
    """The files of the sdist, without its ``NAME-VERSION/`` prefix."""
    with tarfile.open(sdist) as archive:
        return [m.name.split("/", 1)[1] for m in archive.getmembers()
                if m.isfile() and "/" in m.name]


def wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return [name for name in archive.namelist() if not name.endswith("/")]


def metadata_of(artifact: Path) -> email.message.Message:
    """The core metadata: PKG-INFO of the sdist, METADATA of the wheel."""
    if artifact.name.endswith(".tar.gz"):
        with tarfile.open(artifact) as archive:
            member = next(m for m in archive.getmembers() if m.name.count("/") == 1
                          and m.name.endswith("/PKG-INFO"))
            raw = archive.extractfile(member).read()  # type: ignore[union-attr]
    else:
        with zipfile.ZipFile(artifact) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            raw = archive.read(name)
    return email.parser.Parser().parsestr(raw.decode("utf-8"))


@pytest.mark.slow
def test_twine_check_passes_on_both_artifacts(dist_artifacts: Artifacts) -> None:
    """``twine check --strict`` (``make dist`` ran it; here it is on the record)."""
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           str(dist_artifacts.sdist), str(dist_artifacts.wheel)],
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


@pytest.mark.slow
def test_both_artifacts_hold_the_package_and_its_data(dist_artifacts: Artifacts) -> None:
    """Every file of ``fi_evals/`` in the tree (modules, ``py.typed``, the model seeds, the
    viewer's page) is in the wheel and in the sdist, and nothing else of the package is; the
    sdist holds nothing outside the package and what builds it (no tests, no benchmarks)."""
    package = dist_artifacts.source / "fi_evals"
    expected = {p.relative_to(dist_artifacts.source).as_posix() for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert "fi_evals/py.typed" in expected
    assert any(re.fullmatch(r"fi_evals/server/evaluators/offline/data/.+\.jsonl", name)
               for name in expected), sorted(expected)

    in_wheel = {n for n in wheel_files(dist_artifacts.wheel) if n.startswith("fi_evals/")}
    assert in_wheel == expected, (sorted(expected - in_wheel), sorted(in_wheel - expected))

    in_sdist = sdist_files(dist_artifacts.sdist)
    assert {n for n in in_sdist if n.startswith("fi_evals/")} == expected
    top = {name.split("/", 1)[0] for name in in_sdist}
    assert top <= SDIST_TOP_LEVEL, sorted(top - SDIST_TOP_LEVEL)
    assert {"README.md", "CHANGELOG.md", "setup.cfg", "pyproject.toml"} <= top, sorted(top)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sdist", "wheel"])
def test_metadata_carries_the_readme_and_the_supported_pythons(dist_artifacts: Artifacts,
                                                               kind: str) -> None:
    """The long description is README.md as Markdown; Requires-Python and the classifiers say
    the supported range."""
    meta = metadata_of(getattr(dist_artifacts, kind))
    assert meta["Name"] == "fi-evals" and meta["Version"] == __version__
    assert meta["Description-Content-Type"] == "text/markdown"
    readme = (dist_artifacts.source / "README.md").read_text("utf-8")
    assert str(meta.get_payload()).strip() == readme.strip()
    versions = supported_pythons()
    assert meta["Requires-Python"] == f">={min(versions, key=Version)}"
    assert python_classifiers(meta.get_all("Classifier") or []) == versions
