"""Which backend to use: the documented sentence-transformers flowcharts, checked against measurements.

* `flowchart` - the docs' flowcharts and the numbers their text states;
* `evidence` - this machine's measured cells and the rules each passes or breaks;
* `decision` - the recommendation built on them and on the flowchart;
* `snippet` - the code that loads the recommended backend;
* `cli` - `harness recommend`.
"""

from __future__ import annotations

from harness.hardware import Hardware
from harness.recommend.cli import build_parser, effective_hardware, hardware_from_dict, main, parse_flags
from harness.recommend.decision import Recommendation, format_text, recommend
from harness.recommend.evidence import Candidate, Evidence, Query, evidence
from harness.recommend.flowchart import DOCS_URL, DOCUMENTED, Documented, documented, flowchart
from harness.recommend.snippet import documented_model_kwargs, python_snippet, st_backend

__all__ = [
    "DOCS_URL", "DOCUMENTED", "Candidate", "Documented", "Evidence", "Hardware", "Query", "Recommendation",
    "build_parser", "documented", "documented_model_kwargs", "effective_hardware", "evidence", "flowchart",
    "format_text", "hardware_from_dict", "main", "parse_flags", "python_snippet", "recommend", "st_backend",
]  # fmt: skip
