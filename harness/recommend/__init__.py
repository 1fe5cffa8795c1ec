"""Which backend to use: the documented sentence-transformers flowcharts, checked against measurements.

* `flowchart` - the docs' flowcharts and the numbers their text states;
* `evidence` - this machine's measured cells and the rules each passes or breaks;
* `decision` - the recommendation built on them and on the flowchart;
* `snippet` - the code that loads the recommended backend;
* `server` - the server scenario's answer (`recommend_server`): backend, batching, shape and rate.

`harness recommend` is `harness.cli.recommend`.
"""

from __future__ import annotations

from harness.core.hardware import Hardware
from harness.recommend.decision import Recommendation, format_text, recommend
from harness.recommend.evidence import Candidate, Evidence, Query, evidence
from harness.recommend.flowchart import DOCS_URL, DOCUMENTED, Documented, documented, flowchart
from harness.recommend.server import ServerChoice
from harness.recommend.server import choose as recommend_server
from harness.recommend.snippet import documented_model_kwargs, python_snippet, st_backend

__all__ = [
    "DOCS_URL", "DOCUMENTED", "Candidate", "Documented", "Evidence", "Hardware", "Query", "Recommendation",
    "documented", "documented_model_kwargs", "evidence", "flowchart", "format_text", "python_snippet",
    "recommend", "recommend_server", "ServerChoice", "st_backend",
]  # fmt: skip
