"""List every setting with its environment variable, default and meaning."""

from __future__ import annotations

HELP = "list every setting with its environment variable and default"
READS_SETTINGS = False  # works whatever the environment holds


def run(args, settings) -> int:
    from services.cli.render import print_table
    from shared.settings import describe_settings

    print_table(("environment variable", "default", "meaning"), describe_settings())
    return 0
