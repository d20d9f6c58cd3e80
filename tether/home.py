"""Where tether keeps its files: one home directory, overridable for tests and apps."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import ConfigError

ENV_VAR = "TETHER_HOME"

log = logging.getLogger("tether")
_checked: set[Path] = set()


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """An explicit `home` wins, then $TETHER_HOME, then the platform's user data dir.

    Code that passes a path means it; the environment variable is how users and
    test fixtures redirect everything else.
    """
    if home is not None:
        path = Path(home)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("tether", appauthor=False))
    return path.expanduser()


def ensure_dir(path: Path) -> Path:
    """Create the home as a private (0700) directory. An existing one is the user's (a project
    folder, say) and keeps its mode: the sessions folder inside is made private on its own."""
    try:
        make_private_dirs(path)
    except FileExistsError:  # a file, or a parent that is one
        raise ConfigError(f"tether home {path} is not a directory (set {ENV_VAR} to a folder)") from None
    except OSError as e:
        raise ConfigError(f"cannot create tether home {path}: {e.strerror or e}") from None
    warn_if_exposed(path)
    return path


def warn_if_exposed(home: Path) -> None:
    """Warn once per process when someone else can change the home or config.toml: they could
    plant links or files there, or point the config's api_base at a server of theirs.

    Two stats at start-up, never per turn. A folder writable by the user's own group is not
    warned about: where each user has a group of their own (umask 002), 0775 is the norm.
    """
    if home in _checked:
        return
    _checked.add(home)
    for what, path in (("home folder", home), ("config file", home / "config.toml")):
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_uid not in (os.geteuid(), 0):
            why = f"owned by another user (uid {st.st_uid})"
        elif st.st_mode & 0o002:
            why = f"writable by all users (mode {st.st_mode & 0o7777:o})"
        elif st.st_mode & 0o020 and st.st_gid != os.getegid():
            why = f"writable by group {st.st_gid} (mode {st.st_mode & 0o7777:o})"
        else:
            continue
        log.warning("%s %s is %s: others could change what tether reads and writes there", what, path, why)


def make_private_dirs(path: Path) -> None:
    """mkdir -p where every folder it creates is 0700, parents too; existing folders keep their mode.

    `Path.mkdir(parents=True, mode=...)` gives the mode to the last folder only: its parents get
    0777 less the umask, world-writable under umask 000, and whoever can write to a parent can
    swap the private folder below it for their own. 0700 is what the XDG base-directory spec asks
    for a missing data folder (~/.local/share when ~/.local is missing).
    """
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        if path.parent == path:
            raise
        make_private_dirs(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)  # exist_ok: another process may have made it meanwhile
