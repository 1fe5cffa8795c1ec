"""`harness report`: pure chart functions (`charts`), HTML/Markdown assembly (`pages`), the CLI (`cli`)."""
