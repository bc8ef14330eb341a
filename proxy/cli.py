"""``labelgate serve``, ``labelgate keys hash`` and ``labelgate approvals``."""

from __future__ import annotations

import getpass
import json
import logging
import os
from pathlib import Path
from typing import Any

import click

# The proxy's modules are imported inside the commands: `labelgate --help` loads this file.


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
    from labelgate.proxy.config import ConfigError, check_bind, is_loopback, load_config

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

    from labelgate.guard.policy import PolicyError
    from labelgate.guard.state import StateUnavailable
    from labelgate.proxy.assemble import build_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        app = build_app(config)
    except PolicyError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None
    except ConfigError as exc:  # an upstream's TLS files or proxy, as the clients are made
        raise click.ClickException(str(exc)) from None
    except StateUnavailable as exc:  # state.backend postgres: the server cannot be reached
        raise click.ClickException(str(exc)) from None
    runtime = getattr(app.state, "guard", None)
    if runtime is not None and runtime.approver_token is not None:
        click.echo(
            f"labelgate: approver token in {runtime.approver_token.path} "
            "(labelgate approvals reads it)",
            err=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # uvloop and httptools when installed (pip install 'uvicorn[standard]'), else asyncio
        # and h11: about a millisecond less per proxied call on a loaded 2-core machine.
        loop="auto",
        http="auto",
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
    from labelgate.proxy.auth import hash_key

    click.echo(hash_key(key))


# --------------------------------------------------------------------------- approvals

_URL = click.option(
    "--url",
    default="http://127.0.0.1:4000",
    show_default=True,
    envvar="LABELGATE_URL",
    help="The proxy's base URL.",
)
_KEY = click.option(
    "--key",
    default=None,
    envvar="LABELGATE_KEY",
    help="An API key whose assertions allow approving (env LABELGATE_KEY). Default: the "
    "approver token of a keyless proxy, from --token-file.",
)
_TOKEN_FILE = click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".labelgate") / "approver-token",
    show_default=True,
    envvar="LABELGATE_APPROVER_TOKEN_FILE",
    help="A keyless proxy's approver token (written at start to its guard.state_dir).",
)


def _credential(key: str | None, token_file: Path) -> str | None:
    """The key given, else the approver token a keyless proxy wrote, if readable."""
    if key:
        return key
    try:
        return token_file.read_text().strip() or None
    except OSError:
        return None


def _call(method: str, url: str, key: str | None, body: Any = None) -> Any:
    import httpx  # only when the command runs

    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the proxy at {url}: {exc}") from None
    data = response.json() if response.content else {}
    if response.status_code >= 400:
        message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
        raise click.ClickException(f"{response.status_code}: {message or response.text}")
    return data


@click.group()
def approvals() -> None:
    """Answer the guard's ``ask`` decisions (requests held until a person decides)."""


@approvals.command("list")
@_URL
@_KEY
@_TOKEN_FILE
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
def list_command(url: str, key: str | None, token_file: Path, as_json: bool) -> None:
    """List the pending approvals."""
    credential = _credential(key, token_file)
    pending = _call("GET", f"{url.rstrip('/')}/v1/labelgate/approvals", credential)["data"]
    if as_json:
        click.echo(json.dumps(pending, indent=2))
        return
    if not pending:
        click.echo("no pending approvals")
    for item in pending:
        click.echo(
            f"{item['id']}  agent={item['agent']} target={item['target']} "
            f"rule={item['rule']} waiting={item['waiting_seconds']}s\n    {item['reason']}"
        )
        if item.get("arguments") is not None:
            click.echo(f"    arguments: {json.dumps(item['arguments'], ensure_ascii=False)}")


def _answer(url: str, key: str | None, approval_id: str, approve: bool, note: str) -> None:
    by = os.environ.get("USER") or None
    body = {"approve": approve, "by": by, "note": note}
    done = _call("POST", f"{url.rstrip('/')}/v1/labelgate/approvals/{approval_id}", key, body)
    click.echo(f"{'approved' if approve else 'rejected'} {done['id']} (by {done['by']})")


@approvals.command("approve")
@click.argument("approval_id")
@click.option("--note", default="", help="Why (kept in the audit trail).")
@_URL
@_KEY
@_TOKEN_FILE
def approve_command(
    approval_id: str, note: str, url: str, key: str | None, token_file: Path
) -> None:
    """Approve APPROVAL_ID: the held flow proceeds."""
    _answer(url, _credential(key, token_file), approval_id, True, note)


@approvals.command("reject")
@click.argument("approval_id")
@click.option("--note", default="", help="Why (kept in the audit trail).")
@_URL
@_KEY
@_TOKEN_FILE
def reject_command(
    approval_id: str, note: str, url: str, key: str | None, token_file: Path
) -> None:
    """Reject APPROVAL_ID: the held flow is denied."""
    _answer(url, _credential(key, token_file), approval_id, False, note)
