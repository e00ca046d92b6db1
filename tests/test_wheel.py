"""The wheel built from this checkout is a working digest on its own.

Builds the wheel (`pip wheel --no-deps --no-build-isolation`, offline) from a copy of the
checkout, installs it with --no-deps into a fresh venv, and runs the installed `digest`
console script in an empty folder far from the checkout. The venv's dependencies come
from this test venv through a .pth file naming a folder of links to its site-packages,
minus digest itself (so only the wheel's own contents can be imported) and minus the
optional extras (so this is also a default install: `digest demo` must not need them,
and asking for them must say which extra to install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: What the wheel must carry besides Python modules, as they sit in the checkout.
PACKAGE_DIRS = {"digest": REPO / "digest", "digest/templates": REPO / "templates"}
#: Top-level names of the optional extras' packages (postgres, feeds) and of digest itself.
#: (httpx is a core dependency since the webhooks: every long-running process sends them.)
LEFT_OUT = ("psycopg", "feedparser", "sgmllib", "defusedxml", "digest", "subscribers")
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "*.egg-info", "build", "dist", "outbox", "*.db*"
)


def run(argv: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    clean.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def dependencies_without_digest(target: Path) -> Path:
    """A folder of links to this venv's site-packages, leaving out LEFT_OUT and .pth files."""
    target.mkdir()
    sites = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for site in sorted(sites):
        for entry in Path(site).iterdir():
            top = entry.name.split("-")[0].split(".")[0].lower()
            if entry.suffix == ".pth" or top.startswith(("__editable__", "_virtualenv")):
                continue
            if any(top == name or top.startswith(f"{name}_") for name in LEFT_OUT):
                continue
            if not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns the venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP, symlinks=True)
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", tmp / "dist", src],
        cwd=tmp,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("digest_newsletter-*.whl")

    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps"]
    done = run([*pip, "--no-index", wheel], cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
    deps = dependencies_without_digest(tmp / "deps")
    (Path(purelib.stdout.strip()) / "test_dependencies.pth").write_text(f"{deps}\n")
    return venv


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty folder that is not the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_wheel_carries_every_file_of_the_package(installed: Path, elsewhere: Path) -> None:
    where = run(
        [installed / "bin" / "python", "-c", "import digest; print(digest.__file__)"], elsewhere
    )
    assert where.returncode == 0, where.stderr
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(installed), package
    missing = [
        f"{name}/{path.relative_to(source)}"
        for name, source in PACKAGE_DIRS.items()
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
        if not (package.parent / name / path.relative_to(source)).is_file()
    ]
    assert missing == []
    for name in ("store/migrations/env.py", "web/static/site.css", "data/sample_picks.yaml"):
        assert (package / name).is_file(), name  # the folders the listing above relies on


def test_digest_demo_from_another_folder(installed: Path, elsewhere: Path) -> None:
    demo = run([installed / "bin" / "digest", "demo"], elsewhere, DIGEST_SPAMASSASSIN="off")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "50 messages delivered" in demo.stdout
    messages = list((elsewhere / "outbox" / "new").iterdir())
    assert len(messages) == 50
    assert b"/unsubscribe/" in messages[0].read_bytes()
    assert (elsewhere / "build" / "issue.html").stat().st_size > 10_000
    templates = run(
        [installed / "bin" / "python", "-c"]
        + ["from digest.resources import builtin_templates; print(builtin_templates())"],
        elsewhere,
    )
    assert Path(templates.stdout.strip()).is_relative_to(installed), templates.stdout


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ("subscribers", "count"),
            {"DIGEST_DATABASE_URL": "postgresql://127.0.0.1:9/digest"},
            "DIGEST_DATABASE_URL is PostgreSQL: install digest-newsletter[postgres]",
        ),
        (
            ("picks", "import", "https://news.example.com/feed.xml"),
            {},
            "https://news.example.com/feed.xml: importing picks from a URL: "
            "install digest-newsletter[feeds]",
        ),
        (
            ("picks", "import", "feed.xml"),
            {},
            "feed.xml: reading an RSS/Atom feed: install digest-newsletter[feeds]",
        ),
    ],
)
def test_a_missing_extra_is_named_in_one_line(
    installed: Path, elsewhere: Path, args: tuple[str, ...], env: dict[str, str], line: str
) -> None:
    (elsewhere / "feed.xml").write_text('<?xml version="1.0"?><rss version="2.0"></rss>\n')
    refused = run([installed / "bin" / "digest", *args], elsewhere, **env)
    assert refused.returncode == 2
    assert refused.stderr == f"digest: error: {line}\n"
