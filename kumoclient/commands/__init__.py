"""The work of each CLI sub-command: a typed, frozen options dataclass in, an exit code out.

`cli.py` parses the command line into these options, calls the command, and maps the
exceptions it raises (errors.py) to one line on stderr and a sysexits code.
"""
