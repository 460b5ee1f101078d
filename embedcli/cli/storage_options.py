"""``--storage-options``: what fsspec filesystems take beyond the AWS chain and
``AWS_ENDPOINT_URL`` (a panel that the pipeline's commands show with ``--help-all``)."""

from __future__ import annotations

from typing import Annotated

import typer

STORAGE = "Storage"  # a help panel: object storage (s3:// and other URLs)


def _storage_options(value: str | None) -> str | None:
    """Parse ``--storage-options`` and hand it to the storage layer before any URL is opened
    (none given: none, whatever an earlier call in this process set)."""
    from embedcli.storage.remote import set_storage_options

    if value is None:
        set_storage_options({})
        return None
    import json

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("a JSON object, e.g. '{\"anon\": true}'")
    set_storage_options(parsed)
    return value


StorageOptions = Annotated[
    str | None,
    typer.Option(
        "--storage-options",
        metavar="JSON",
        envvar="EMBEDCLI_STORAGE_OPTIONS",
        callback=_storage_options,
        rich_help_panel=STORAGE,
        help="For s3:// (and other fsspec) URLs: the filesystem's options as a JSON object, "
        'e.g. \'{"endpoint_url": "http://minio:9000"}\'. Credentials: the AWS chain.',
        show_default=False,
    ),
]
