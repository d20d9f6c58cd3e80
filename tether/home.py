"""Where tether keeps its files: one home directory, overridable for tests and apps."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

ENV_VAR = "TETHER_HOME"


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
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:  # a file, or a parent that is one
        raise ConfigError(f"tether home {path} is not a directory (set {ENV_VAR} to a folder)") from None
    except OSError as e:
        raise ConfigError(f"cannot create tether home {path}: {e.strerror or e}") from None
    return path
