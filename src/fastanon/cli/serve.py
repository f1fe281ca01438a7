"""`fastanon serve`: the local preview page (check, mask and download one file)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ._options import key_options, load_key

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from "2G", "500M", "1048576" (binary units)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size like 2G, 500M or 1048576")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Print the address instead of opening a browser.")
@click.option("--max-size", default="2G", show_default=True, metavar="SIZE",
              help="Largest file accepted (e.g. 500M, 2G); larger uploads get 413.")
@click.option("--idle-timeout", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              metavar="MINUTES", help="Forget a file after this long without its tab.")
@key_options
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host (plain HTTP: anyone on the network with the "
                   "token can see the files).")
@click.option("-v", "--verbose", is_flag=True, help="Log each request's method, path and status "
              "(never values from files).")
def serve(host: str, port: int, no_browser: bool, max_size: str, idle_timeout: float,
          key: str | None, key_file: Path | None, allow_remote: bool, verbose: bool) -> None:
    """Start the local preview page: check, mask and download one file in the browser.

    Files are kept in memory only, forgotten when their tab closes or after --idle-timeout.
    The address printed carries a random token that every request must present.

    \b
    Example:
      fastanon serve --port 8765
    """
    from ..errors import FastanonError
    from ..preview import ServeOptions, serve as run_server

    secret = load_key(key, key_file)
    options = ServeOptions(host=host, port=port, max_size=parse_size(max_size),
                           idle_timeout=idle_timeout * 60, key=secret or None,
                           allow_remote=allow_remote, verbose=verbose)

    def ready(server) -> None:
        click.echo(f"fastanon preview page: {server.url}", err=True)
        if allow_remote and host not in ("127.0.0.1", "localhost", "::1"):
            click.echo("warning: serving on the network over plain HTTP; keep the token secret",
                       err=True)
        click.echo("Press Ctrl+C to stop; open files are forgotten then.", err=True)

    try:
        run_server(options, open_browser=not no_browser, ready=ready)
    except FastanonError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
