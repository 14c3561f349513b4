"""The daemon (`kumoclient run`): an engine, its listeners, drop folder, signals, workers."""
