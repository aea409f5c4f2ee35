"""Request and response models of the HTTP API (docs/SPEC.md), one module per feature; pydantic lives
only here and in ``service/settings.py``. ``body`` parses raw JSON safely before any model sees it."""
