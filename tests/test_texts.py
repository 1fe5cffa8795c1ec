"""Built-in texts: deterministic and in their length buckets."""

from __future__ import annotations

from harness.inputs.texts import as_pairs, builtin_texts


def test_builtin_texts_are_deterministic_and_in_their_length_buckets():
    assert builtin_texts("short", 50) == builtin_texts("short", 50)
    lengths = {b: sum(map(len, builtin_texts(b, 50))) / 50 for b in ("short", "medium", "long")}
    assert 25 <= lengths["short"] <= 70
    assert 300 <= lengths["medium"] <= 700
    assert lengths["long"] >= 3000
    assert as_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c"), ("c", "a")]
