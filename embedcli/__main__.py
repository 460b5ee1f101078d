"""``python -m embedcli`` runs the command-line tool."""

from embedcli.cli import main

if __name__ == "__main__":
    main()
