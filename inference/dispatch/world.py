"""Synthetic dispatches for Santo Domingo and the ground truth of whether a driver completes one.

The model is trained on these at first run, the demo and the tests send them, and the outcome of a
served prediction is drawn from :func:`success_probability` of the chosen pair, so accuracy and
the model-vs-rules comparison are measurable. ``drift`` moves the traffic away from what the model
was trained on (rain everywhere, drivers farther away and less willing), the seed's data drift.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from inference.dispatch.features import VEHICLES, ZONES

CENTER = (18.4861, -69.9312)  # Santo Domingo
ZONE_OFFSETS = {
    "norte": (0.04, 0.0),
    "sur": (-0.02, 0.0),
    "este": (0.0, 0.05),
    "oeste": (0.0, -0.05),
    "centro": (0.0, 0.0),
}
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z


def success_probability(f: Mapping[str, Any]) -> float:
    """The chance that the driver of a pair completes the dispatch (what the model learns)."""
    z = (
        2.3
        - 0.33 * f["distance_km"]
        - 0.45 * f["rain"]
        - 0.9 * (f["rain"] and f["vehicle_type"] == "moto")
        + 3.2 * (f["driver_acceptance_rate"] - 0.8)
        + 0.9 * (f["driver_rating"] - 4.5)
        - 0.15 * max(0.0, f["driver_hours_online"] - 8)
        + 0.02 * min(f["driver_experience_months"], 36)
        - 0.3 * f["is_peak"]
        - 0.05 * max(0.0, f["trip_km"] - 10)
        + 0.5 * (f["vip"] and f["driver_rating"] >= 4.7)
        + 0.03 * max(-10, min(10, f["zone_supply"] - f["zone_demand"]))
    )
    return 1 / (1 + math.exp(-z))


def _point(rng: random.Random, lat: float, lon: float, km: float) -> tuple[float, float]:
    """A point at most ``km`` from (lat, lon), uniform over the disc."""
    r, a = km * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return (
        round(lat + r / 111.0 * math.cos(a), 6),
        round(lon + r / (111.0 * math.cos(math.radians(lat))) * math.sin(a), 6),
    )


def dispatch(rng: random.Random, at_ms: int, n: int = 0, *, drift: bool = False) -> dict[str, Any]:
    """One dispatch request with 3..10 drivers around the pickup (``n`` numbers its id)."""
    zone = rng.choice(ZONES)
    dlat, dlon = ZONE_OFFSETS[zone]
    plat, plon = _point(rng, CENTER[0] + dlat, CENTER[1] + dlon, 2.0)
    trip = rng.lognormvariate(math.log(6.0), 0.6)
    xlat, xlon = _point(rng, plat, plon, trip)
    reach = 9.0 if drift else 5.0
    drivers = []
    for k in range(rng.randint(3, 10)):
        lat, lon = _point(rng, plat, plon, reach)
        acc = rng.betavariate(6, 2) * (0.8 if drift else 1.0)
        drivers.append(
            {
                "driver_id": f"drv-{rng.randrange(500):03d}",
                "lat": lat,
                "lon": lon,
                "available": rng.random() < 0.85 or k == 0,
                "rating": round(min(5.0, max(3.0, rng.gauss(4.6, 0.25))), 2),
                "acceptance_rate": round(acc, 3),
                "trips_today": rng.randint(0, 25),
                "hours_online": round(rng.uniform(0, 12), 1),
                "experience_months": rng.randint(0, 96),
                "vehicle_type": rng.choices(VEHICLES, (3, 5, 2, 1))[0],
            }
        )
    return {
        "dispatch_id": f"disp-{n:08d}",
        "requested_at": at_ms,
        "pickup_lat": plat,
        "pickup_lon": plon,
        "dropoff_lat": xlat,
        "dropoff_lon": xlon,
        "zone": zone,
        "zone_demand": rng.randint(0, 15),
        "rain": rng.random() < (0.9 if drift else 0.2),
        "customer_rating": round(min(5.0, max(1.0, rng.gauss(4.5, 0.4))), 2),
        "vip": rng.random() < 0.1,
        "drivers": drivers,
    }


def dispatches(seed: int, n: int, *, start_ms: int = START_MS, every_ms: int = 37_000) -> list[Any]:
    """``n`` dispatches spread over time (every hour and weekday shows up)."""
    rng = random.Random(seed)
    return [dispatch(rng, start_ms + i * every_ms, i) for i in range(n)]
