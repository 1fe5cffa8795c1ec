"""`harness report`: pure chart functions (`charts`) and HTML/Markdown assembly (`pages`); the command
is `harness.cli.report`."""
