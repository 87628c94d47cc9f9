"""Tracking URIs: the default store, validation into one canonical form, the SQLite file
behind a URI and the artifact folder beside it.  Never imports MLflow (``dqt --help`` and
bad-input errors must not pay its ~1 s import), never touches the store.

File stores (``file:`` URIs and plain paths) are rejected: MLflow 3 deprecates them and they
give no transactional safety to parallel writers.  ``mlflow migrate-filestore`` converts one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from dqt.core.config import ConfigError

ARTIFACT_DIR = "mlartifacts"

_DB_SCHEMES = ("postgresql", "mysql", "mssql")
_KNOWN_SCHEMES = ("sqlite", "http", "https", *_DB_SCHEMES)
_SQLITE_FORM = "expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
_FILE_STORE = ("file stores are deprecated in MLflow 3 and unsafe for parallel writers; use "
               "sqlite:///PATH/mlflow.db (convert an mlruns folder with `mlflow migrate-filestore`)")


def repo_root() -> Path:
    """The folder holding pyproject.toml above core/; the working directory when the package
    is installed without its source tree (a wheel has no pyproject.toml above core/)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd().resolve()


def default_tracking_uri() -> str:
    """``sqlite:///<repo root>/mlflow.db`` with an absolute path (docs/CONTRACTS.md)."""
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """Check a tracking URI and return its canonical form, without touching the store.

    None gives `default_tracking_uri`.  ``sqlite:///rel.db`` is made absolute against the
    working directory (SQLAlchemy's meaning) and its folder must exist.  ``http(s)://HOST[:PORT]``,
    ``postgresql://``, ``mysql://`` and ``mssql://`` (with an optional ``+driver``) pass after a
    syntax check.  Anything else raises `ConfigError` with one line naming the URI.
    """
    if uri is None:
        return default_tracking_uri()
    text = uri.strip()

    def bad(problem: str) -> ConfigError:
        return ConfigError(f"tracking URI '{uri}': {problem}")

    if not text:
        raise bad("is empty")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    if match is None:
        scheme_only = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):", text)
        if text.lower().startswith("file:"):
            raise bad(_FILE_STORE)
        if scheme_only and scheme_only.group(1).split("+")[0].lower() == "sqlite":
            raise bad(_SQLITE_FORM)
        if scheme_only and len(scheme_only.group(1)) > 1:  # "C:" would be a Windows drive
            raise bad(f"malformed, expected '{scheme_only.group(1)}://...'")
        raise bad("has no scheme://; expected sqlite:///PATH.db, http(s)://HOST:PORT, postgresql://... "
                  f"or mysql://... (a plain path would be an MLflow file store: {_FILE_STORE})")
    scheme = match.group(1).lower()
    base = scheme.split("+")[0]
    if base == "file":
        raise bad(_FILE_STORE)
    if base == "sqlite":
        return _resolve_sqlite(text, match.group(1), bad)
    if base in ("http", "https"):
        if "+" in scheme:
            raise bad(f"unknown scheme '{scheme}'")
        parts = urlsplit(text)
        if not parts.hostname:
            raise bad("names no host; expected http(s)://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise bad("has an invalid port; expected http(s)://HOST[:PORT] with a port in 1..65535") from None
        return text.rstrip("/")
    if base in _DB_SCHEMES or base == "postgres":
        if base == "postgres":
            raise bad("SQLAlchemy 2 dropped the 'postgres' scheme; write postgresql://")
        if not urlsplit(text).hostname:
            raise bad(f"names no host; expected {base}://USER:PASSWORD@HOST[:PORT]/DATABASE")
        return text
    close = difflib.get_close_matches(base, _KNOWN_SCHEMES, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f" (expected one of {', '.join(_KNOWN_SCHEMES)})"
    raise bad(f"unknown scheme '{scheme}'{hint}")


def _resolve_sqlite(text: str, scheme: str, bad: Callable[[str], ConfigError]) -> str:
    """``sqlite:///PATH[?query]`` with PATH made absolute; its folder must already exist."""
    rest = text[len(scheme) + 3:]  # after "sqlite://"
    if not rest.startswith("/"):
        raise bad(f"SQLite URIs name no host; {_SQLITE_FORM}")
    path_text, _, query = rest[1:].partition("?")
    if path_text in ("", ":memory:"):
        raise bad("an in-memory SQLite store cannot be shared by processes; name a file")
    path = Path(path_text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.parent.is_dir():
        raise bad(f"folder '{path.parent}' does not exist")
    if path.is_dir():
        raise bad(f"'{path}' is a folder, not a database file")
    path = path.parent.resolve() / path.name  # one spelling per file: engine cache and lock agree
    return f"{scheme}:///{path}" + (f"?{query}" if query else "")


def sqlite_path(uri: str | None) -> Path | None:
    """The database file of a SQLite tracking URI, None for any other store."""
    resolved = resolve_tracking_uri(uri)
    if not resolved.lower().startswith("sqlite"):
        return None
    return Path(resolved.split(":///", 1)[1].partition("?")[0])


def artifact_root_for(uri: str | None) -> str | None:
    """``file://`` URI of the ``mlartifacts/`` folder next to a SQLite database; None for
    servers and databases, whose server decides where artifacts go."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACT_DIR).as_uri() if db is not None else None
