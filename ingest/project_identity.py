"""Which project a record belongs to, when the record does not say.

A file path means nothing across repositories (`src/app.py` of two repositories are two
files), so every usage event carries a project_id. Records that lack one get, in order:

1. the name given with `--project NAME` (`engram ingest`, `engram record`, ...);
2. the identity of the git repository of the working directory: its `origin` remote (or
   the first remote) as a normalised URL, `host/owner/repo`, so the same repository has
   the same identity on every machine and whichever protocol it was cloned with;
3. `default` (not in a git repository, or a repository without a remote).

Normalisation: the scheme (https, ssh, git, ...), a user (`git@`, `user:token@`), a port,
a trailing `.git` and trailing slashes are dropped; the host is lower-cased (the path is
kept as written: some hosts treat it case-sensitively). scp-like `git@host:a/b.git` and
`https://host/a/b` therefore give the same `host/a/b`. A local-path remote keeps its path.

Bottom layer (ingest/): the CLI, the Memory API and the MCP server all resolve the current
project the same way, through `current_project`.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = [
    "ALL_PROJECTS",
    "DEFAULT_PROJECT",
    "PROJECT_ENV",
    "current_project",
    "git_remote_url",
    "normalize_remote",
]

DEFAULT_PROJECT = "default"
ALL_PROJECTS = "*"  # `--project '*'`: every project (the cross-project view)
PROJECT_ENV = "ENGRAM_PROJECT"  # overrides the git-derived identity (a server's project)

_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).*)$")
_URL = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<rest>.*)$")


def normalize_remote(url: str) -> str:
    """The stable identity of a git remote URL: `host/owner/repo` (see module docstring).

    >>> normalize_remote("git@GitHub.com:pallets/flask.git")
    'github.com/pallets/flask'
    >>> normalize_remote("https://user:tok@github.com:443/pallets/flask/")
    'github.com/pallets/flask'
    """
    text = url.strip()
    if not text:
        raise ValueError("empty git remote URL")
    host, path = "", text
    if match := _URL.match(text):
        scheme, rest = match.group("scheme").lower(), match.group("rest")
        if scheme == "file":
            path = rest
        else:
            authority, _, path = rest.partition("/")
            host = authority.rpartition("@")[2]  # drop user[:password]@
            host = host.split(":", 1)[0] if not host.startswith("[") else host
    elif (match := _SCP_LIKE.match(text)) and "/" not in match.group("host"):
        host, path = match.group("host"), match.group("path")
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")].rstrip("/")
    path = re.sub(r"/{2,}", "/", path)
    if host:
        return f"{host.lower()}/{path}" if path else host.lower()
    return path or text


def git_remote_url(directory: Path | None = None) -> str | None:
    """The URL of the `origin` remote (else the first remote, by name) of the git
    repository holding `directory` (default: the working directory); None when there is
    no repository, no remote or no git."""
    where = str(directory or Path.cwd())

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", where, *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    names = (git("remote") or "").split()
    if not names:
        return None
    name = "origin" if "origin" in names else sorted(names)[0]
    return git("remote", "get-url", name) or None


def current_project(explicit: str | None = None, directory: Path | None = None) -> str:
    """The project records lacking one get: `explicit` if given, else $ENGRAM_PROJECT,
    else the normalised git remote of `directory` (the working directory), else
    `default`."""
    if explicit is not None and explicit.strip():
        return explicit.strip()
    if env := os.environ.get(PROJECT_ENV, "").strip():
        return env
    url = git_remote_url(directory)
    if url:
        try:
            return normalize_remote(url)
        except ValueError:
            return DEFAULT_PROJECT
    return DEFAULT_PROJECT
