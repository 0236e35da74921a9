"""The one grammar of method names, accepted back by ``--method``.

- A **feature pipeline** is ``FRONTEND+CLASSIFIER``: a ``+`` always marks one.
  The front-end part carries its width (``vgg-small+svm``, ``timbral-large+elm``),
  an explicit filter count (``vgg-f64+svm``), no width for fixed front-ends
  (``mfcc+knn``), or a pretrained embedding (``probe:msd_musicnn+svm``).
- A **trained model** is ``MODEL`` or ``MODEL:PRETRAINED`` (``vgg``, ``protonet``,
  ``finetune:msd_musicnn``).

So the random ``vgg-small+svm`` and the trained ``vgg`` never collide.

Examples
--------
>>> spec = parse_method("vgg-small+svm")
>>> spec.kind, spec.frontend, spec.width, spec.classifier
('pipeline', 'vgg', 'small', 'svm')
>>> parse_method("finetune:msd_musicnn").pretrained
'msd_musicnn'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import ParameterError

__all__ = ["MethodSpec", "parse_method", "parse_methods", "pipeline_name"]

_WIDTH = re.compile(r"^(?P<name>.+?)-(?P<width>small|large|f\d+)$")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name.

    Attributes
    ----------
    text : str
        The canonical method string (as written in ``results.csv``).
    kind : {"pipeline", "model"}
    frontend, width, classifier : str or None
        For pipelines: front-end name, width (``small``, ``large``, ``f<filters>`` or
        None for fixed front-ends such as ``mfcc``) and classifier name.
    model, pretrained : str or None
        For trained models: model name and optional pretrained weights name.
    """

    text: str
    kind: str
    frontend: str | None = None
    width: str | None = None
    classifier: str | None = None
    model: str | None = None
    pretrained: str | None = None

    @property
    def filters(self) -> int | None:
        """Explicit filter count of an ``f<F>`` width, else None."""
        if self.width and self.width.startswith("f"):
            return int(self.width[1:])
        return None


def pipeline_name(frontend: str, width: str | None, classifier: str) -> str:
    """Canonical pipeline string, e.g. ``pipeline_name("vgg", "small", "svm") == "vgg-small+svm"``."""
    head = f"{frontend}-{width}" if width else frontend
    return f"{head}+{classifier}"


def parse_method(text: str) -> MethodSpec:
    """Parse one method string (see the module docstring for the grammar).

    Raises
    ------
    ParameterError
        Empty parts, more than one ``+``, or characters outside ``[A-Za-z0-9_.:/=-]``.
    """
    raw = str(text).strip()
    if not raw or not re.fullmatch(r"[A-Za-z0-9_.:/=+\-]+", raw):
        raise ParameterError(
            f"method {text!r} is not FRONTEND+CLASSIFIER or MODEL[:PRETRAINED] "
            "(letters, digits, '_', '-', '.', ':' only)"
        )
    if "+" in raw:
        parts = raw.split("+")
        if len(parts) != 2 or not all(parts):
            raise ParameterError(f"method {text!r}: a feature pipeline is FRONTEND+CLASSIFIER with one '+'")
        head, classifier = parts
        m = _WIDTH.match(head)
        if m and not head.startswith("probe:"):
            frontend, width = m.group("name"), m.group("width")
        else:
            frontend, width = head, None
        return MethodSpec(raw, "pipeline", frontend=frontend, width=width, classifier=classifier)
    model, _, pretrained = raw.partition(":")
    if not model or (":" in raw and not pretrained):
        raise ParameterError(f"method {text!r}: a trained model is MODEL or MODEL:PRETRAINED")
    return MethodSpec(raw, "model", model=model, pretrained=pretrained or None)


def parse_methods(text: str | list[str]) -> list[MethodSpec]:
    """Parse a comma-separated ``--method`` value (or a list); duplicates are dropped, order kept."""
    items = text if isinstance(text, list) else str(text).split(",")
    seen: dict[str, MethodSpec] = {}
    for item in items:
        if str(item).strip():
            spec = parse_method(item)
            seen.setdefault(spec.text, spec)
    if not seen:
        raise ParameterError("--method is empty; give e.g. 'vgg-small+svm,mfcc+knn' or 'protonet,vgg'")
    return list(seen.values())
