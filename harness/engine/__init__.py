"""The engine: plans, isolates and measures cells."""
