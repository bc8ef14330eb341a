"""``labelgate serve`` and ``labelgate keys hash``."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

import click

from proxy.auth import hash_key
from proxy.config import ConfigError, check_bind, is_loopback, load_config


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="LiteLLM-style config (model_list, keys...). Default: the local SmolLM2.",
)
@click.option("--host", default=None, help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 4000).")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
def serve(config_path: Path | None, host: str | None, port: int | None, log_level: str) -> None:
    """Run the OpenAI-compatible proxy."""
    try:
        config = load_config(config_path)
        host = host or config.server.host
        port = config.server.port if port is None else port
        check_bind(config, host)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.keys:
        click.echo(
            f"labelgate: no API keys configured: listening on {host} (loopback) only", err=True
        )
    elif not is_loopback(host):
        click.echo(f"labelgate: {len(config.keys)} API key(s) required on {host}", err=True)

    import uvicorn  # only when actually serving

    from proxy.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        proxy_headers=False,
        server_header=False,
    )


@click.group()
def keys() -> None:
    """API keys for the proxy (the config stores only their sha256 hashes)."""


@keys.command("hash")
@click.argument("key", required=False)
def hash_command(key: str | None) -> None:
    """Print the key_hash of KEY (asked for without echo when not given)."""
    if key is None:
        key = getpass.getpass("API key: ")
    if not key:
        raise click.ClickException("an empty key cannot be used")
    click.echo(hash_key(key))
