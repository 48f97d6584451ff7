"""A/B assignment as pure functions: sticky variant choice, the effective split, shadow sampling.

Assignment hashes (experiment name, entity id) with xxhash, which, unlike Python's salted
`hash()`, gives the same answer in every replica and after every restart. Variants are laid
out on [0, 1) in name order, so growing one variant's share only moves users into it. The
statistics over the variants' outcomes live with the monitor (`app.monitoring.abtest`).
"""

from __future__ import annotations

import xxhash


def unit_hash(*parts: object) -> float:
    """A stable, uniform number in [0, 1) for the parts (same in every process)."""
    digest = xxhash.xxh64_intdigest("\x1f".join(str(p) for p in parts).encode())
    return digest / 2.0**64


def choose_variant(experiment: str, key: object, split: dict[str, float]) -> str:
    """The variant `key` belongs to under `split` (shares summing to 1); sticky per key."""
    u = unit_hash(experiment, key)
    edge = 0.0
    names = sorted(v for v, share in split.items() if share > 0)
    for name in names:
        edge += split[name]
        if u < edge:
            return name
    return names[-1]  # float rounding at the top edge


def in_shadow_sample(experiment: str, request_id: str, fraction: float) -> bool:
    """Whether this request's copy goes to the shadow variant (independent of assignment)."""
    return fraction > 0 and unit_hash(experiment, "shadow", request_id) < fraction


def effective_split(
    split: dict[str, float], available: set[str], control: str | None = None
) -> dict[str, float]:
    """The split over variants that have a model: a missing variant's share goes to the others.
    When none of the variants with a share has a model (e.g. a challenger at 100 % promoted by
    hand, its alias gone), everything goes to `control` if it has one: serving, not 503s."""
    kept = {v: s for v, s in split.items() if v in available and s > 0}
    total = sum(kept.values())
    if total > 0:
        return {v: s / total for v, s in kept.items()}
    return {control: 1.0} if control in available else {}
