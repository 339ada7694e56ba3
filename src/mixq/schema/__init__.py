"""The one schema layer: every file mixq reads becomes typed values here, or one clear user error.

Built on pydantic v2, chosen because it gives, for free and well tested: a location for every
violation (``assignment.conv1``, ``costs.bops.ratio``) so a message can name the field; strict types
(``8`` is not the string ``"8"``, ``"2"`` is not the version ``2``, ``true`` is not ``1``); validation of
both JSON text and already-parsed Python objects (YAML/TOML config files, JSON lines); and it is
ubiquitous and actively maintained (msgspec is faster but rarer; attrs+cattrs reports locations less
directly). Only this package imports pydantic; the rest of mixq sees dataclasses and ``MixqError``s.

Reading a file goes through :func:`read_text` (missing, a directory, unreadable or non-UTF-8 bytes are
user errors), :func:`read_json` (plus JSON syntax and NaN/Infinity literals) and :func:`validate` (a
pydantic model; every violation listed with its field). Numbers from flags go through
:mod:`mixq.schema.numbers`.

One module per kind of file: :mod:`~mixq.schema.plan` (plan.json), :mod:`~mixq.schema.rundir` and
:mod:`~mixq.schema.tuneqn` (run-directory files), :mod:`~mixq.schema.verified` and
:mod:`~mixq.schema.latencymodel` (the judged files and the deployed latency model),
:mod:`~mixq.schema.caches`, :mod:`~mixq.schema.hardware` (hardware descriptions),
:mod:`~mixq.schema.configfile` (``--config-file``, checked per command) and :mod:`~mixq.schema.arrays`
(``.npz``/``.npy`` data: arrays, so a function rather than a model).
"""

from __future__ import annotations

from mixq.schema.read import SchemaModel, read_json, read_text, validate

__all__ = ["SchemaModel", "read_json", "read_text", "validate"]
