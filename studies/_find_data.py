"""Where the analysis notebook finds the archived results: `find_data`, whose source `studies._make_notebook`
copies into the notebook.  A module of its own so that it (and its tests) need no notebook packages."""

from __future__ import annotations

from pathlib import Path

__all__ = ["find_data"]


def find_data(env: str | None = None, cwd: Path | str | None = None, repo: Path | str | None = None) -> Path:
    """The directory of the archived results.

    ``$DLNSIM_DATA`` (or ``env``) when set: an absolute path as it is; a relative one against the working
    directory (``cwd``), and when no such directory is there, against the repository root (``repo``: the
    parent of the directory of the imported dlnsim).  Unset: ``data/`` of the repository root, else of the
    working directory or one of its parents.  FileNotFoundError names the paths tried.
    """
    import os

    import dlnsim

    cwd = Path.cwd() if cwd is None else Path(cwd)
    repo = Path(dlnsim.__file__).resolve().parent.parent if repo is None else Path(repo)
    value = os.environ.get("DLNSIM_DATA", "") if env is None else env
    if value:
        given = Path(value).expanduser()
        tried = [given] if given.is_absolute() else [cwd / given, repo / given]
        for path in tried:
            if path.is_dir():
                return path.resolve()
        raise FileNotFoundError(f"DLNSIM_DATA={value!r}: no such directory (tried {', '.join(map(str, tried))})")
    tried = [repo / "data", *(root / "data" for root in (cwd.resolve(), *cwd.resolve().parents))]
    for path in tried:
        if (path / "fig1_constant.nc").is_file():
            return path.resolve()
    raise FileNotFoundError(f"data/fig1_constant.nc not found (tried {', '.join(map(str, tried[:3]))}, ...): set "
                            "DLNSIM_DATA")
