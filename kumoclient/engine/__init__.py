"""The engine: reception into the spool, scheduling and delivery, the daemon lifecycle."""
