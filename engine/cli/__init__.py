"""The `graylane` command line: parses arguments, calls one function of a wing, prints. See main.py."""
