"""``imagefunnel uploads prune``: remove the service's uploads that nothing has named for a while.

Retention is this command's to apply, when run (for instance daily from cron): an upload goes when
it was made more than ``--days`` ago (default ``IMAGEFUNNEL_UPLOAD_RETENTION_DAYS``) and no job or
evaluation created since then names it, nor any still queued or running. See
:mod:`imagefunnel.store.upload_lifecycle`. Registered in ``cli/app.py``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from imagefunnel.cli.errors import print_error
from imagefunnel.cli.exit_codes import ExitCode

__all__ = ["uploads_app"]

uploads_app = typer.Typer(help="Images the service's tenants uploaded.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@uploads_app.command("prune")
def prune_cmd(
    days: Annotated[
        float | None,
        typer.Option(min=0.0, help="remove uploads no work has named for this many days"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would go; remove nothing")] = False,
    data: Annotated[Path, typer.Option("--data", help="the service's folder")] = Path("imagefunnel-service"),
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in --data)")
    ] = None,
) -> None:
    """Remove uploads (and their bytes, unless other records hold them) that no job or evaluation
    has named for DAYS days, and none still queued or running names."""
    from pydantic import ValidationError

    from imagefunnel.errors import ImageFunnelError
    from imagefunnel.service.settings import ServiceSettings
    from imagefunnel.store import BlobStore, Store
    from imagefunnel.store.models import utcnow
    from imagefunnel.store.upload_lifecycle import prune_uploads, stale_uploads
    from imagefunnel.store.uploads import Uploads

    try:
        url = database_url or os.environ.get("IMAGEFUNNEL_DATABASE_URL")
        values: dict[str, Any] = {"data_dir": data, **({"database_url": url} if url else {})}
        settings = ServiceSettings(**values)
    except ValidationError as exc:
        print_error(err_console, f"settings: {exc.errors()[0]['msg']}")
        raise typer.Exit(ExitCode.FAILED) from None
    days = days if days is not None else settings.upload_retention_days
    if days is None:
        print_error(err_console, "say --days N, or set IMAGEFUNNEL_UPLOAD_RETENTION_DAYS")
        raise typer.Exit(ExitCode.FAILED)
    cutoff = utcnow() - timedelta(days=days)
    try:
        store = Store(settings.store_url)
        try:
            uploads, blobs = Uploads(store), BlobStore(settings.data_dir / "blobs")
            if dry_run:
                gone = stale_uploads(store, uploads, cutoff)
            else:
                gone = prune_uploads(store, uploads, blobs, cutoff)
        finally:
            store.close()
    except ImageFunnelError as exc:
        print_error(err_console, exc)
        raise typer.Exit(ExitCode.FAILED) from None
    for upload in gone:
        print(f"{upload.id}\t{upload.tenant_id}\t{upload.size_bytes}\t{upload.created_at:%Y-%m-%d}")
    verb = "would remove" if dry_run else "removed"
    total = sum(u.size_bytes for u in gone)
    err_console.print(
        f"{verb} {len(gone)} uploads ({total} bytes) unnamed for {days:g} days", highlight=False
    )
