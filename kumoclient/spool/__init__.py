"""The on-disk spool (SPEC 1): durable writes before acknowledgement, metadata updates,
enumeration, quarantine, removal, and the `incoming/` drop folder.

Layout under the spool directory:
  data/<id>        one message: a header line, a JSON header, then the content bytes
  meta/<id>.json   scheduling state written after the first attempt (attempts, due, response)
  incoming/        submissions dropped by `kumoclient inject`, picked up by the daemon
  quarantine/      entries that could not be read, each with a `.reason` file
  free/            files of delivered messages, kept to be written over by new ones

Modules, each with its own part: `local` (Spool, the face callers use), `entry` (the file
formats, pure), `fields` (the types and sane ranges of their values), `reading` (one entry),
`commit` (group commit), `pool` (free/), `drops` (incoming/), `disk` (system calls, none of
which follows a symbolic link, and the one place where OSError becomes SpoolError). Every
public method of Spool raises only SpoolError subclasses (kumoclient.errors):
SpoolEntryMissing (the entry is not there), SpoolEntryCorrupt (it is there but unusable: it
belongs in quarantine/), SpoolUnavailable (the disk or the spool cannot do the work now;
`errno` says why).
"""

from kumoclient.errors import SpoolEntryCorrupt, SpoolEntryMissing, SpoolError, SpoolUnavailable
from kumoclient.spool.entry import Submission
from kumoclient.spool.local import Spool

__all__ = [
    "Spool",
    "SpoolEntryCorrupt",
    "SpoolEntryMissing",
    "SpoolError",
    "SpoolUnavailable",
    "Submission",
]
