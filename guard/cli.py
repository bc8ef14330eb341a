"""The ``labelgate`` command. Subcommands are plugins found through the
``labelgate.commands`` entry-point group, loaded only when used, so ``labelgate --help``
stays fast and ``guard`` never imports ``proxy`` or ``evals``.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click


class CLIError(click.ClickException):
    """One readable line on stderr, exit status 1."""


class PluginGroup(click.Group):
    def _plugins(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group="labelgate.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        ep = self._plugins().get(name)
        if ep is None:
            return None
        try:
            return ep.load()  # type: ignore[attr-defined,no-any-return]
        except Exception as exc:  # a broken plugin must not take the other commands down
            return _broken_plugin(name, exc)


def _broken_plugin(name: str, exc: Exception) -> click.Command:
    message = f"the '{name}' command could not be loaded: {type(exc).__name__}: {exc}"

    def fail() -> None:
        raise CLIError(message)

    return click.Command(name, callback=fail, help=f"(unavailable: {exc})")


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="labelgate")
def main() -> None:
    """labelgate: an information-flow guard for LLM agents, and an agent-safety eval suite."""


if __name__ == "__main__":
    sys.exit(main())
