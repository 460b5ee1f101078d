"""``python -m embedcli`` runs the command-line tool."""

from embedcli.cli.app import main

if __name__ == "__main__":
    main()
