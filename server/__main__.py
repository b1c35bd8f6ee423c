"""`python -m server`: the same as `ocrq serve` (for running it before the entry point is
installed, and for the tests)."""

from __future__ import annotations

import sys

import click

from ocrq.errors import OcrqError
from server.command import serve


def main() -> None:
    try:
        serve.main(prog_name="ocrq serve", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OcrqError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
