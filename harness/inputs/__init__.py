"""What a sweep reads: models (and offline stand-ins), texts, evaluation files, the export cache."""
