"""Rows and what they mean: the row types, the store (atomic files), analysis, comparison."""
