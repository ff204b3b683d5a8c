"""``python -m imagefunnel`` runs the command line."""

from imagefunnel.cli.app import main

main()
