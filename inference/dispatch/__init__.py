"""The dispatch seed's model, served for real: the 18 features of a (dispatch, driver) pair with
the Haversine distance driver→pickup (``features``), the deterministic "Fase 1" rules (nearest
available driver, ``rules``), a gradient-boosting model trained at first run on synthetic
dispatches (``world``, ``model``), and the HTTP server with the seed's ``/api/v2/dispatch``
endpoints (``server``)."""

from __future__ import annotations

from inference.dispatch.features import FEATURES, DispatchRequestError, haversine_km
from inference.dispatch.rules import nearest_driver

__all__ = ["FEATURES", "DispatchRequestError", "haversine_km", "nearest_driver"]
