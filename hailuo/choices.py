"""The values a form may offer for model, resolution, duration and ratio, derived from the
capability table (``hailuo.capabilities``) so that a dropdown never lists a value the
table does not know, and a new table row shows up in every form without another edit.

These are the union over providers, models and modes: a value in a dropdown may still be
refused for a particular combination (``VideoRequest.validate_for`` names the field and
the allowed values), but no value outside the table can be chosen. The ``Literal`` types
are what pydantic turns into JSON-schema ``enum`` lists, and so into dropdowns in the
Prefect UI's run forms.
"""

from __future__ import annotations

from typing import Literal

from hailuo.capabilities import CAPABILITIES, H3_RATIOS, V2_CAPABILITIES, normalise_resolution

__all__ = ["DURATIONS", "MODELS", "RATIOS", "RESOLUTIONS", "Duration", "ModelName",
           "Ratio", "Resolution", "canonical_resolution"]

_ROWS = (*CAPABILITIES, *V2_CAPABILITIES)


def _pixels(label: str) -> float:
    """Sort key of a resolution label: ``480p`` < ``512p`` < ... < ``1080p`` < ``2k``."""
    return float(label[:-1]) * (1000 if label.endswith("k") else 1)


#: Every model of the table, in table order (legacy Hailuo first, then the v2 models).
MODELS: tuple[str, ...] = tuple(dict.fromkeys(c.model for c in _ROWS))
#: Every resolution label a request may ask for, smallest first.
RESOLUTIONS: tuple[str, ...] = tuple(sorted({r for c in _ROWS for r in c.resolutions},
                                            key=_pixels))
#: Every duration (seconds) a request may ask for.
DURATIONS: tuple[int, ...] = tuple(sorted({d for c in _ROWS for d in c.durations}))
#: ``ratio`` values (MiniMax-H3 / H3-Max only).
RATIOS: tuple[str, ...] = tuple(H3_RATIOS)

# ``Literal[("a", "b")]`` is ``Literal["a", "b"]``: the types follow the tuples above.
ModelName = Literal[MODELS]  # type: ignore[valid-type]
Resolution = Literal[RESOLUTIONS]  # type: ignore[valid-type]
Duration = Literal[DURATIONS]  # type: ignore[valid-type]
Ratio = Literal[RATIOS]  # type: ignore[valid-type]


def canonical_resolution(value: object) -> object:
    """For a ``mode="before"`` validator: ``"768P"``, ``768`` -> ``"768p"``; an empty or
    blank value -> None; anything else is left for the ``Literal`` to judge."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return normalise_resolution(value)
    return value
