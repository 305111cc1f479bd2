"""Node tools from the npm registry, pinned here (the one place) and installed once into the
gitignored `.zapbase/npm` of the checkout: postgres-meta prints the TypeScript types the way
`supabase gen types` does (without Docker), and the Supabase CLI itself checks that
`supabase db push` applies the migrations."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

from zapbase.errors import ZapbaseError

_logger = logging.getLogger(__name__)

NPM_TOOLS = {"@supabase/postgres-meta": "0.99.0", "supabase": "2.117.0"}


class ToolUnavailable(ZapbaseError):
    """npm (or node) is not installed here, so the pinned tools cannot be."""


def npm_prefix(project_dir: Path) -> Path:
    return project_dir / ".zapbase" / "npm"


def _installed(modules: Path, package: str) -> str | None:
    manifest = modules / package / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise ToolUnavailable("node is not installed: install Node.js 20+ (with npm) and run again")
    return found


def ensure_npm_tools(project_dir: Path) -> Path:
    """node_modules holding every pinned tool, installed (npm i -E) when one is missing or
    at another version; a no-op afterwards."""
    prefix = npm_prefix(project_dir)
    modules = prefix / "node_modules"
    if all(_installed(modules, name) == version for name, version in NPM_TOOLS.items()):
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise ToolUnavailable("npm is not installed: install Node.js 20+ with npm and run again")
    prefix.mkdir(parents=True, exist_ok=True)
    _logger.warning("installing %s from npm into %s (once)", ", ".join(NPM_TOOLS), prefix)
    result = subprocess.run(
        [npm, "install", "--save-exact", "--no-audit", "--no-fund", "--prefix", str(prefix),
         *(f"{name}@{version}" for name, version in NPM_TOOLS.items())],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise ZapbaseError(f"npm install into {prefix} failed:\n{result.stderr.strip()[-2000:]}")
    return modules


def supabase_cli(project_dir: Path) -> Path:
    return ensure_npm_tools(project_dir) / ".bin" / "supabase"
