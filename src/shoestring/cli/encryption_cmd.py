"""``shoestring encryption keygen|status``: keys and encrypted folders (CLI only).

Encryption itself is a flag of the commands that write folders (``train``,
``data prepare``, ``compress``: ``--encrypt``); every command reads encrypted
folders given ``--key-file`` or ``$SHOESTRING_ENCRYPTION_KEY``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from shoestring.cli.command import Group
from shoestring.cli.context import cli_context


@click.group("encryption", cls=Group)
def encryption_group() -> None:
    """Encryption at rest: create a key, check a folder (docs/privacy.md)."""


@encryption_group.command("keygen")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="The key file to create (mode 600; an existing file is never overwritten).")
@click.pass_context
def keygen_cmd(ctx: click.Context, out: Path) -> None:
    """Create a new random AES-256 key file and print its key id (never the key)."""
    from shoestring.crypto.keys import write_new_key

    key = write_new_key(out)
    c = cli_context(ctx)
    c.out.print(f"Wrote a new key to {out} (key id {key.key_id}).", highlight=False)
    c.out.print("Keep a copy somewhere safe: without it the folders it encrypts cannot be "
                "read.", highlight=False)


@encryption_group.command("status")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status_cmd(ctx: click.Context, folder: Path, as_json: bool) -> None:
    """Whether FOLDER is encrypted, with which key id, and whether the key given fits."""
    from shoestring.crypto.folder import encrypted_folder_at, unencrypted_files
    from shoestring.crypto.keys import load_key

    sealed = encrypted_folder_at(folder)
    key = load_key(os.environ)
    info = {"folder": str(folder), "encrypted": sealed is not None,
            "key_id": sealed.key_id if sealed else None,
            "given_key_id": key.key_id if key else None,
            "key_fits": bool(sealed and key and key.key_id == sealed.key_id),
            "plaintext_files": [str(p.relative_to(folder)) for p in unencrypted_files(folder)]
            if sealed else None}
    c = cli_context(ctx)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if sealed is None:
        c.out.print(f"{folder}: not encrypted", highlight=False)
        return
    fits = "fits" if info["key_fits"] else ("does not fit" if key else "not given")
    c.out.print(f"{folder}: encrypted (AES-256-GCM), key id {sealed.key_id}; the key given "
                f"{fits}", highlight=False)
    for p in info["plaintext_files"]:
        c.warn(f"plaintext file in an encrypted folder: {p}")


def register(group: click.Group) -> None:
    group.add_command(encryption_group)
