"""The daemon (`kumoclient run`): an engine, its listeners, the drop folder, signals, and the
reception worker processes."""
