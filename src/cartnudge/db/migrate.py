"""Run Alembic migrations from code (``cartnudge migrate`` and at start-up).

Alembic, with the Mako and Pygments it brings, is imported only when a migration runs, and
``serve`` runs its migration in a short-lived child (``upgrade_apart``): a process that runs
for months does not keep about 12 MiB of migration tooling it used once at start-up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "cartnudge:migrations"
_MESSAGE_MAX = 4000  # bytes of a failed migration's message passed back to the parent


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def upgrade_apart(engine: Engine) -> None:
    """``upgrade`` to head in a forked child, waited for; a failure is raised here as a
    ``RuntimeError`` with the child's message. Call it before the process starts threads."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; what it does is tested through serve
        os.close(read)
        code = 0
        try:
            engine.dispose(close=False)  # the parent's connections stay the parent's
            upgrade(engine)
        except BaseException as exc:
            os.write(write, str(exc).encode()[:_MESSAGE_MAX])
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(message or f"the migration ended with status {status}")


def check(engine: Engine) -> None:
    """Fail if the models and the migrated schema differ (``alembic check``)."""
    from alembic import command

    command.check(alembic_config(engine))
