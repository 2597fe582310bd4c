"""Query generators by name (synthetic.generators), each a `spec.Generator`.

A new generator is one module in this package and one line in GENERATORS."""

from __future__ import annotations

from ragtune.errors import UserError
from ragtune.zero_label.generators.crop import Crop
from ragtune.zero_label.generators.ict import Ict
from ragtune.zero_label.generators.llm import Llm
from ragtune.zero_label.generators.spec import Generator, Passage, SyntheticSpec
from ragtune.zero_label.generators.terms import Terms

GENERATORS: dict[str, type[Generator]] = {"ict": Ict, "crop": Crop, "terms": Terms, "llm": Llm}

__all__ = ["GENERATORS", "Passage", "SyntheticSpec", "check_spec"]


def check_spec(spec: SyntheticSpec) -> None:
    """Name the bad field and the fix (the config layer reports these as user errors)."""
    unknown = [g for g in spec.generators if g not in GENERATORS]
    if unknown or not spec.generators:
        raise UserError(
            f"synthetic.generators: unknown or empty {unknown or '[]'}; choose from {', '.join(GENERATORS)}"
        )
    if spec.queries_per_passage < 1:
        raise UserError(f"synthetic.queries_per_passage {spec.queries_per_passage}: must be at least 1")
    if not 1 <= spec.min_query_words <= spec.max_query_words:
        raise UserError("synthetic.min_query_words/max_query_words: need 1 <= min_query_words <= max_query_words")
    if not 0.0 <= spec.ict_remove_probability <= 1.0:
        raise UserError(f"synthetic.ict_remove_probability {spec.ict_remove_probability}: must be in [0, 1]")
    low, high = spec.terms_per_query
    if not 1 <= low <= high:
        raise UserError(f"synthetic.terms_per_query {list(spec.terms_per_query)}: need 1 <= low <= high")
    for name in spec.generators:
        GENERATORS[name].check(spec)
