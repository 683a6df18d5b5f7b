"""A dispatch request, checked, and the 18 features of each (dispatch, driver) pair.

A request: ``requested_at`` (epoch ms), ``pickup_lat``/``pickup_lon``, ``dropoff_lat``/
``dropoff_lon``, ``zone``, ``zone_demand`` (open requests in the zone), ``rain``,
``customer_rating``, ``vip`` and ``drivers``: each with ``driver_id``, ``lat``/``lon``,
``available``, ``rating``, ``acceptance_rate``, ``trips_today``, ``hours_online``,
``experience_months`` and ``vehicle_type``. Times are local to Santo Domingo (UTC-4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EARTH_RADIUS_KM = 6371.0088
UTC_OFFSET_H = -4
PEAK_HOURS = frozenset((7, 8, 9, 12, 13, 17, 18, 19))
ZONES = ("norte", "sur", "este", "oeste", "centro")
VEHICLES = ("moto", "sedan", "suv", "van")
CATEGORIES: dict[str, tuple[str, ...]] = {"zone": ZONES, "vehicle_type": VEHICLES}

FEATURES = (
    "distance_km",  # Haversine, driver -> pickup
    "eta_min",
    "trip_km",  # Haversine, pickup -> dropoff
    "hour",
    "day_of_week",
    "is_peak",
    "rain",
    "zone",
    "zone_demand",
    "zone_supply",  # available drivers offered for this dispatch
    "driver_rating",
    "driver_acceptance_rate",
    "driver_trips_today",
    "driver_hours_online",
    "driver_experience_months",
    "vehicle_type",
    "customer_rating",
    "vip",
)


class DispatchRequestError(ValueError):
    """A request the model cannot score; the message names the field."""


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in km (mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def _number(obj: Mapping[str, Any], name: str, where: str, lo: float, hi: float) -> float:
    v = obj.get(name)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise DispatchRequestError(f"{where}{name} is {v!r}, expected a number in [{lo}, {hi}]")
    return float(v)


def _choice(obj: Mapping[str, Any], name: str, where: str) -> str:
    v = obj.get(name)
    if v not in CATEGORIES[name]:
        raise DispatchRequestError(
            f"{where}{name} is {v!r}, expected one of {', '.join(CATEGORIES[name])}"
        )
    return str(v)


def check_request(req: Any) -> list[Mapping[str, Any]]:
    """Validate a request; returns its drivers. Raises :class:`DispatchRequestError`."""
    if not isinstance(req, Mapping):
        raise DispatchRequestError(f"request is {type(req).__name__}, expected an object")
    _number(req, "requested_at", "", 0, 32503680000000)
    for name, lo, hi in (("pickup_lat", -90, 90), ("dropoff_lat", -90, 90)):
        _number(req, name, "", lo, hi)
    for name in ("pickup_lon", "dropoff_lon"):
        _number(req, name, "", -180, 180)
    _choice(req, "zone", "")
    _number(req, "zone_demand", "", 0, 10_000)
    _number(req, "customer_rating", "", 0, 5)
    for flag in ("rain", "vip"):
        if not isinstance(req.get(flag), bool):
            raise DispatchRequestError(f"{flag} is {req.get(flag)!r}, expected true or false")
    drivers = req.get("drivers")
    if not isinstance(drivers, list) or not drivers:
        raise DispatchRequestError("drivers must be a non-empty list of drivers")
    for i, d in enumerate(drivers):
        where = f"drivers[{i}]."
        if not isinstance(d, Mapping):
            raise DispatchRequestError(f"drivers[{i}] is {type(d).__name__}, expected an object")
        if not isinstance(d.get("driver_id"), str) or not d["driver_id"]:
            raise DispatchRequestError(f"{where}driver_id is {d.get('driver_id')!r}, expected text")
        _number(d, "lat", where, -90, 90)
        _number(d, "lon", where, -180, 180)
        if not isinstance(d.get("available"), bool):
            raise DispatchRequestError(f"{where}available is {d.get('available')!r}, expected bool")
        _number(d, "rating", where, 0, 5)
        _number(d, "acceptance_rate", where, 0, 1)
        _number(d, "trips_today", where, 0, 200)
        _number(d, "hours_online", where, 0, 24)
        _number(d, "experience_months", where, 0, 600)
        _choice(d, "vehicle_type", where)
    return drivers


def local_time(epoch_ms: float) -> tuple[int, int]:
    """(hour, day_of_week Monday=0) in Santo Domingo."""
    local_s = epoch_ms / 1000 + UTC_OFFSET_H * 3600
    days = int(local_s // 86400)
    return int(local_s % 86400 // 3600), (days + 3) % 7  # 1970-01-01 was a Thursday


def speed_kmh(hour: int, rain: bool) -> float:
    """City speed the ETA assumes: slower at peak hours and in the rain."""
    return (18.0 if hour in PEAK_HOURS else 28.0) * (0.75 if rain else 1.0)


def pair_features(req: Mapping[str, Any], driver: Mapping[str, Any], supply: int) -> dict[str, Any]:
    """The 18 features of one (dispatch, driver) pair (the request already checked)."""
    hour, dow = local_time(req["requested_at"])
    dist = haversine_km(driver["lat"], driver["lon"], req["pickup_lat"], req["pickup_lon"])
    return {
        "distance_km": round(dist, 3),
        "eta_min": round(dist / speed_kmh(hour, req["rain"]) * 60, 2),
        "trip_km": round(
            haversine_km(
                req["pickup_lat"], req["pickup_lon"], req["dropoff_lat"], req["dropoff_lon"]
            ),
            3,
        ),
        "hour": hour,
        "day_of_week": dow,
        "is_peak": hour in PEAK_HOURS,
        "rain": bool(req["rain"]),
        "zone": req["zone"],
        "zone_demand": int(req["zone_demand"]),
        "zone_supply": supply,
        "driver_rating": float(driver["rating"]),
        "driver_acceptance_rate": float(driver["acceptance_rate"]),
        "driver_trips_today": int(driver["trips_today"]),
        "driver_hours_online": float(driver["hours_online"]),
        "driver_experience_months": int(driver["experience_months"]),
        "vehicle_type": driver["vehicle_type"],
        "customer_rating": float(req["customer_rating"]),
        "vip": bool(req["vip"]),
    }


def candidates(req: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(driver_id, features) of every available driver of a valid request."""
    drivers = [d for d in check_request(req) if d["available"]]
    return [(d["driver_id"], pair_features(req, d, len(drivers))) for d in drivers]


def as_row(features: Mapping[str, Any]) -> list[float]:
    """The numeric row the model reads (categories as their index)."""
    row = []
    for name in FEATURES:
        v = features[name]
        row.append(float(CATEGORIES[name].index(v)) if name in CATEGORIES else float(v))
    return row
