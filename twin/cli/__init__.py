"""The command line (``twin``): one module per command group, the top floor of the house.

It is the only room that wires ``viz`` (the desktop viewer) to the rest; nothing below
imports it. :mod:`twin.cli.common` holds the shared options and exit codes.
"""


def main() -> None:
    """Console-script entry point (``twin``): the app is imported only when it runs."""
    from twin.cli.app import main as run

    run()
