import math

import pandas as pd
import pytest

from safemlrm.judges.base import Scale
from safemlrm.results.metrics import rate_table, wilson


def test_wilson_known_values():
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2365930, abs=1e-6) and hi == pytest.approx(0.7634070, abs=1e-6)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611251, abs=1e-6)
    assert all(math.isnan(x) for x in wilson(0, 0))


def test_rate_table_counts_unparseable_and_absent_apart():
    planned = pd.DataFrame({"model": ["m"] * 4, "dataset": ["d"] * 4, "attack": ["a"] * 4,
                            "scenario": ["s1", "s1", "s2", "s2"], "probe_key": list("abcd")})
    verdicts = pd.DataFrame({"model": ["m"] * 3, "dataset": ["d"] * 3, "attack": ["a"] * 3,
                             "scenario": ["s1", "s1", "s2"], "judge": ["j"] * 3, "channel": ["answer"] * 3,
                             "score": [5, 1, None], "label": ["unsafe", "refusal", "unparseable"]})
    t = rate_table(verdicts, planned, {"j": Scale(1, 5, 5, 4)})
    all_row = t[t["scenario"] == "ALL"].iloc[0]
    assert (all_row["planned"], all_row["judged"], all_row["unparseable"], all_row["absent"]) == (4, 2, 1, 1)
    assert all_row["asr"] == 0.5 and all_row["asr_all"] == 0.25 and all_row["refusal_rate"] == 0.5
    s2 = t[t["scenario"] == "s2"].iloc[0]
    assert s2["judged"] == 0 and math.isnan(s2["asr"]) and s2["unparseable"] == 1
    # an explicit threshold overrides the scale's default
    t4 = rate_table(verdicts, planned, {"j": Scale(1, 5, 5, 4)}, asr_threshold=1)
    assert t4[t4["scenario"] == "ALL"].iloc[0]["success"] == 2
