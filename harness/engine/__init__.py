"""The engine: checks and plans a sweep, isolates and measures its cells, writes their rows."""
