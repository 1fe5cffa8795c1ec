"""Below everything: one-line errors and their checks, the machine, files and digests."""
