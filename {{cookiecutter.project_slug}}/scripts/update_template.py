"""Pull a newer version of the template into this (edited) service: `python scripts/update_template.py TEMPLATE`.

TEMPLATE is the template's path or git URL (optionally `--checkout TAG`). The recipe is the
classic three-way merge: the `template` branch holds the service exactly as the template
generated it; the template is baked again there with the answers this service was generated
with (.cookiecutter-answers.yaml), committed, and merged into your branch. Git then carries
your edits over and stops at real conflicts; the tests refuse leftover conflict markers.

Needs git and cookiecutter (in the dev extra: `make dev`, then `.venv/bin/python scripts/update_template.py`).
Run it on a clean work tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent
ANSWERS = SERVICE / ".cookiecutter-answers.yaml"
BRANCH = "template"


def git(*args: str, cwd: Path = SERVICE, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True)


def fail(message: str) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return 1


class BakeFailed(Exception):
    """cookiecutter refused or failed; the message is its own output."""


def bake(template: str, checkout: str | None, into: Path) -> Path:
    command = [sys.executable, "-m", "cookiecutter", template, "--no-input", "--config-file", str(ANSWERS)]
    command += ["--output-dir", str(into)] + (["--checkout", checkout] if checkout else [])
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BakeFailed((result.stdout + result.stderr).strip() or f"cookiecutter exited with {result.returncode}")
    (baked,) = [path for path in into.iterdir() if path.is_dir()]
    return baked


def template_commit(baked: Path) -> str:
    """The template commit the bake recorded in its answers file (see the post-generation hook)."""
    answers = baked / ANSWERS.name
    for line in answers.read_text(encoding="utf-8").splitlines() if answers.exists() else []:
        if line.startswith("# template commit: "):
            return line.removeprefix("# template commit: ").strip()
    return "unknown (the template does not record it)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", help="path or git URL of the template")
    parser.add_argument("--checkout", help="branch, tag or commit of the template to use")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("cookiecutter") is None:
        return fail(
            f"cookiecutter is not installed for {sys.executable}: run `make dev`, then "
            "`.venv/bin/python scripts/update_template.py ...` (or `pip install cookiecutter`)"
        )
    if not ANSWERS.exists():
        return fail(f"{ANSWERS.name} is missing: it records the answers this service was generated with")
    if git("status", "--porcelain").stdout.strip():
        return fail("the work tree has uncommitted changes: commit or stash them first")
    if git("rev-parse", "--verify", "--quiet", BRANCH, check=False).returncode != 0:
        return fail(
            f"no '{BRANCH}' branch: create it at the commit that holds the service as generated, "
            f"e.g. `git branch {BRANCH} $(git rev-list --max-parents=0 HEAD)`"
        )
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "template"
        git("worktree", "add", str(worktree), BRANCH)
        try:
            try:
                baked = bake(args.template, args.checkout, Path(scratch) / "bake")
            except BakeFailed as failure:
                return fail(f"baking {args.template} with {ANSWERS.name} failed; cookiecutter said:\n{failure}")
            # Replace the branch's files with the new bake; the worktree's .git stays, and the
            # repository the bake made of itself is not copied.
            for path in worktree.iterdir():
                if path.name != ".git":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            shutil.copytree(baked, worktree, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
            git("add", "--all", cwd=worktree)
            if git("diff", "--cached", "--quiet", cwd=worktree, check=False).returncode == 0:
                print("the template has not changed since the last update")
                return 0
            source = f"{args.template} {args.checkout or ''}".strip()
            message = f"Template update from {source}\n\nTemplate commit: {template_commit(baked)}\n"
            git("commit", "--quiet", "--no-verify", "-m", message, cwd=worktree)
        finally:
            git("worktree", "remove", "--force", str(worktree), check=False)
    merged = git("merge", "--no-edit", BRANCH, check=False)
    if merged.returncode != 0:
        print(merged.stdout + merged.stderr)
        return fail("the merge stopped at conflicts: resolve them, run `make test`, then `git commit`")
    print(f"merged the new template into {git('branch', '--show-current').stdout.strip()}; run `make test`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
