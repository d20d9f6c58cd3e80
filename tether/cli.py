"""The `tether` command (placeholder until the CLI lands)."""
from __future__ import annotations


def main() -> None:
    print("tether: the CLI is being built; see README.md")
