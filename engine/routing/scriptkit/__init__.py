"""The script author's kit: scaffold a script, see its input, snapshot cases, coverage, ConfigMap packaging.

Pure functions over texts and data; the CLI (engine/cli/script.py, engine/cli/test.py) reads and writes files.
"""
