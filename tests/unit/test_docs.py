"""The README documents every setting and every command."""

from pathlib import Path

from services.cli import build_parser
from shared.settings import describe_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [env for env, _, _ in describe_settings() if f"| `{env}` |" not in README]
    assert not missing, f"README settings table lacks {missing}"


def test_every_command_is_mentioned_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices
    missing = [name for name in commands if f"stancestream {name}" not in README]
    assert not missing, f"README never shows {missing}"
