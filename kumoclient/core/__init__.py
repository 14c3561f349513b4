"""Pure decisions: no asyncio, no files, no sockets; time is always a parameter."""
