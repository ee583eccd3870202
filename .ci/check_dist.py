"""Check what the release artifacts in DIST hold: `python .ci/check_dist.py DIST`.

The wheel holds the package and the three adapters, each with its ``py.typed``, every subpackage
of this tree, the package data pyproject.toml declares, and its metadata; nothing else (no tests,
benchmarks, docs or examples). The sdist
holds those sources, what setuptools needs to build the wheel, and what a packager needs to check
the release: LICENSE, README.md, CHANGELOG.md, and the test suite with the files it reads. Exits
non-zero with the list of problems.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qwen_rerank", "langchain_qwen_rerank", "llamaindex_qwen_rerank", "haystack_qwen_rerank")
SDIST_FILES = {
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "PKG-INFO",
    "mkdocs.yml",
    ".importlinter",
}
SDIST_FOLDERS = {*PACKAGES, "tests", "docs", "examples"}
SDIST_BUILD_FILES = {"setup.cfg", "MANIFEST.in"}  # setuptools' own, and the sdist's list


def package_data() -> set[str]:
    """The data files pyproject.toml's ``[tool.setuptools.package-data]`` puts in the wheel."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    return {f"{package}/{name}" for package, names in declared.items() for name in names}


def subpackages() -> set[str]:
    """Every package folder of the tree (it holds an ``__init__.py``), as a wheel path."""
    return {
        init.parent.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }


def wheel_problems(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    problems = []
    data = package_data()
    for name in names:
        top = name.split("/")[0]
        if top == info or name in data:
            continue
        if top not in PACKAGES or not (name.endswith(".py") or name.endswith("/py.typed")):
            problems.append(f"wheel: {name} does not belong in it")
    folders = {str(PurePosixPath(n).parent) for n in names if n.endswith("/__init__.py")}
    problems += [f"wheel: the package {p} is missing" for p in sorted(subpackages() - folders)]
    problems += [f"wheel: {p}/py.typed is missing" for p in PACKAGES if f"{p}/py.typed" not in names]
    problems += [f"wheel: the package data {d} is missing" for d in sorted(data - set(names))]
    if f"{info}/licenses/LICENSE" not in names:
        problems.append("wheel: the LICENSE is not in its metadata")
    return problems


def sdist_problems(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name and m.isfile()]
    tops = {name.split("/")[0] for name in names}
    problems = [
        f"sdist: {name} is missing" for name in sorted(SDIST_FILES | SDIST_FOLDERS) if name not in tops
    ]
    allowed = SDIST_FILES | SDIST_FOLDERS | SDIST_BUILD_FILES | {"qwen_rerank.egg-info"}
    problems += [f"sdist: {top} does not belong in it" for top in sorted(tops - allowed)]
    problems += [f"sdist: {name} is a build leftover" for name in names if "__pycache__" in name]
    shipped = {name for name in names if name.startswith(("tests/", "docs/", "examples/"))}
    tracked = {
        p.relative_to(ROOT).as_posix()
        for folder in ("tests", "docs", "examples")
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyo"))
    }
    problems += [f"sdist: {name} is missing" for name in sorted(tracked - shipped)]
    return problems


def main(dist: Path) -> int:
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}", file=sys.stderr)
        return 1
    problems = wheel_problems(wheels[0]) + sdist_problems(sdists[0])
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{wheels[0].name} and {sdists[0].name} hold what they should")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
