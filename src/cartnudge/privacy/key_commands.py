"""``cartnudge keys …``: make a data key, re-seal every shop secret with the first key."""

from __future__ import annotations

import typer

from cartnudge.cli_support import emit, fail, runtime

keys_app = typer.Typer(
    no_args_is_help=True,
    help="The data keys that encrypt shop secrets at rest (CARTNUDGE_DATA_KEYS).",
)


@keys_app.command("new")
def keys_new() -> None:
    """Print a new random data key, for CARTNUDGE_DATA_KEYS. Changes nothing."""
    from cartnudge.keys import new_key

    typer.echo(new_key())


@keys_app.command(
    "rotate", short_help="Re-encrypt every shop secret with the first data key (procedure: --help)."
)
def keys_rotate() -> None:
    """Re-encrypt every shop secret with the first key of CARTNUDGE_DATA_KEYS, decrypting
    with any of them, in one transaction; print how many values and shops it re-sealed.
    A secret that no key decrypts stops it, changing nothing.

    To replace a data key (without CARTNUDGE_DATA_KEYS, OLD is $CARTNUDGE_HOME/data.key):

    \b
    1. `cartnudge keys new` prints NEW.
    2. Set CARTNUDGE_DATA_KEYS=NEW,OLD (new first) for every cartnudge process and
       restart them: they read both keys and encrypt with NEW.
    3. Run `cartnudge keys rotate` once, with that setting.
    4. Restart every process (web, worker, serve) if step 2 did not.
    5. Set CARTNUDGE_DATA_KEYS=NEW, restart again; OLD can then be destroyed.
    """
    from cartnudge.db.session import writing
    from cartnudge.keys import (
        DataKeyError,
        process_keyring,
        reseal_shop_secrets,
        reset_process_keyring,
    )

    reset_process_keyring()  # the keys as the environment says now
    try:
        ring = process_keyring()
    except DataKeyError as exc:
        fail(str(exc))
    rt = runtime()
    try:
        with writing(rt.engine) as conn:
            done = reseal_shop_secrets(conn, ring)
    except DataKeyError as exc:
        fail(f"{exc}; nothing was re-sealed")
    emit(
        {
            "values": done.values,
            "shops": done.shops,
            "sealed_with": f"key 1 of {ring.size} in {ring.source}",
            "next": "restart every cartnudge process with these keys, then drop the old "
            "key(s) after the first"
            if ring.size > 1
            else "nothing to drop: there is only one key",
        }
    )
