"""The ``embedcli`` command: the only layer that knows Typer and rich. ``app`` holds the thin
commands (parse, call a stage, render), ``render`` all output for people, ``errors`` the
translation of errors into one line and an exit status."""
