"""Where a sweep's log lines go: one file per sweep (`<hydra.sweep.dir>/sweep.log`) gets everything at INFO
and above, from Hydra's launcher ("Launching 52 jobs", "#3 : backend=onnx ...") and from every job; the
terminal gets only warnings and errors, beside the progress bar and the summary (which names the file).
Configured by conf/hydra/job_logging/harness.yaml and conf/hydra/hydra_logging/harness.yaml."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_NAME = "sweep.log"


class RunLog(logging.FileHandler):
    """A FileHandler that appends (every job of the sweep writes to the same file) and makes its folder on
    the first line, so configuring it before Hydra has made the sweep's folder costs nothing."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = "utf-8") -> None:
        super().__init__(filename, mode=mode, encoding=encoding, delay=True)

    def _open(self):  # noqa: ANN202 - logging's own signature
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
