"""A small, deterministic pairwise (2-way covering) design generator.

`pairwise(factors, allowed)` returns a list of dicts (one value for every factor) such that every pair
of values of any two factors that can occur together in a valid combination occurs in at least one
row. Constraints are given as `allowed(partial: dict) -> bool`, evaluated on partial assignments;
it must reject a partial assignment as soon as two assigned values conflict (all constraints used
here are between two factors, so a valid pair can always be completed).

The construction is AETG-style greedy: each new row is the best of a few candidates; a candidate
starts from one uncovered pair and fills the remaining factors one at a time, choosing the value
that covers most still-uncovered pairs with the factors already set. Ties are broken by a seeded
RNG, so the output depends only on the arguments.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable, Mapping, Sequence

Allowed = Callable[[dict], bool]


def _always(_: dict) -> bool:
    return True


def required_pairs(factors: Mapping[str, Sequence], allowed: Allowed = _always) -> set:
    names = list(factors)
    need = set()
    for a, b in itertools.combinations(names, 2):
        for va in factors[a]:
            for vb in factors[b]:
                if allowed({a: va, b: vb}):
                    need.add(((a, va), (b, vb)))
    return need


def _pairs_of(row: dict, names: list[str]) -> set:
    out = set()
    for a, b in itertools.combinations(names, 2):
        if a in row and b in row:
            out.add(((a, row[a]), (b, row[b])))
    return out


def pairwise(
    factors: Mapping[str, Sequence],
    allowed: Allowed = _always,
    *,
    seed: int = 20251125,
    candidates: int = 16,
) -> list[dict]:
    names = list(factors)
    uncovered = required_pairs(factors, allowed)
    rng = random.Random(seed)
    rows: list[dict] = []
    while uncovered:
        best, best_gain = None, -1
        ordered = sorted(uncovered, key=repr)
        for _ in range(candidates):
            (fa, va), (fb, vb) = ordered[rng.randrange(len(ordered))]
            row = {fa: va, fb: vb}
            rest = [n for n in names if n not in row]
            rng.shuffle(rest)
            ok = True
            for name in rest:
                scored = []
                for v in factors[name]:
                    trial = dict(row, **{name: v})
                    if not allowed(trial):
                        continue
                    gain = sum(
                        1
                        for other in row
                        if (
                            ((name, v), (other, row[other]))
                            if names.index(name) < names.index(other)
                            else ((other, row[other]), (name, v))
                        )
                        in uncovered
                    )
                    scored.append((gain, rng.random(), v))
                if not scored:
                    ok = False
                    break
                scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
                row[name] = scored[0][2]
            if not ok:
                continue
            gain = len(_pairs_of(row, names) & uncovered)
            if gain > best_gain:
                best, best_gain = row, gain
        if best is None or best_gain <= 0:
            raise RuntimeError("pairwise: could not cover remaining pairs (constraints too tight?)")
        rows.append({n: best[n] for n in names})
        uncovered -= _pairs_of(best, names)
    return rows
