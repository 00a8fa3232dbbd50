"""Which files of the vendored taskflow did this team change? `python -m app.taskflow.manifest`.

MANIFEST.json (beside this file) holds the SHA-256 of every file of taskflow and of its tests as
the template shipped them. The command lists files changed, added or removed since, so a team
knows what to carry over when it pulls a newer template. Template maintainers refresh the
manifest with `--write` after editing taskflow.

It only reads files and imports nothing of taskflow, so it also answers in the middle of a merge
conflict. There, run it by path, `python app/taskflow/manifest.py`: `python -m` would first import
the half-merged package, and a conflict marker in any module it imports stops Python right there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SERVICE = PACKAGE.parent.parent
MANIFEST = PACKAGE / "MANIFEST.json"
ROOTS = ("app/taskflow", "tests/taskflow")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def package_version() -> str:
    """taskflow's __version__, read from __init__.py's text (importing it could fail mid-merge)."""
    match = VERSION_LINE.search((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    return match.group(1) if match else "unknown"


def current_hashes(service: Path = SERVICE) -> dict[str, str]:
    hashes = {}
    for root in ROOTS:
        for path in sorted((service / root).rglob("*")):
            relative = path.relative_to(service).as_posix()
            if not path.is_file() or SKIPPED_PARTS & set(path.parts) or path.suffix == ".pyc" or path == MANIFEST:
                continue
            hashes[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def compare(shipped: dict[str, str], now: dict[str, str]) -> dict[str, list[str]]:
    return {
        "changed": sorted(name for name in shipped.keys() & now.keys() if shipped[name] != now[name]),
        "added": sorted(now.keys() - shipped.keys()),
        "removed": sorted(shipped.keys() - now.keys()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.taskflow.manifest", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the current files as shipped (maintainers)")
    args = parser.parse_args(argv)
    if args.write:
        version = package_version()
        document = {"version": version, "files": current_hashes()}
        MANIFEST.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {MANIFEST.name}: taskflow {version}, {len(document['files'])} files")
        return 0
    if not MANIFEST.exists():
        print("no MANIFEST.json beside taskflow: cannot tell what changed", file=sys.stderr)
        return 2
    shipped = json.loads(MANIFEST.read_text(encoding="utf-8"))
    differences = compare(shipped["files"], current_hashes())
    print(f"taskflow {shipped['version']} as shipped by the template")
    if not any(differences.values()):
        print("no local changes")
        return 0
    for kind, names in differences.items():
        for name in names:
            print(f"{kind:8} {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
