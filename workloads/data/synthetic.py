"""Seeded synthetic data with realistic structure, for demos and tests. Nothing is downloaded.

- ``defect_images``: textured (brushed-metal) surfaces with scratches and dents.
- ``sensor_series``: machines that degrade towards failure, then are repaired.
- ``power_series``: hourly solar or wind output driven by daily cycles and weather fronts.
- ``quality_table``: production batches whose quality depends on interacting process settings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFECT_CLASSES = ["ok", "scratch", "dent"]
SENSOR_COLUMNS = ["vibration", "temperature", "current"]
WEATHER_COLUMNS = ["irradiance_forecast", "cloud_cover_forecast", "wind_speed_forecast", "temperature_forecast"]


def defect_images(n: int, size: int, defect_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale images (N, 1, S, S) in [0, 1] and labels (0 ok, 1 scratch, 2 dent)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=[1 - defect_rate, defect_rate / 2, defect_rate / 2])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    for i, label in enumerate(labels):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.6, 1.4)
        grain = 0.08 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        noise = rng.normal(0, 0.06, (size, size))
        noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1)) / 1.7  # slightly correlated speckle
        light = rng.uniform(0.4, 0.6) + rng.uniform(-0.1, 0.1) * (xx / size) + rng.uniform(-0.1, 0.1) * (yy / size)
        image = light + grain + noise
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        if label == 1:  # scratch: a thin dark or bright segment
            theta, half = rng.uniform(0, np.pi), rng.uniform(0.2, 0.4) * size
            along = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            across = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
            mask = np.exp(-((across / 0.8) ** 2)) * (np.abs(along) < half)
            image += rng.choice([-1, 1]) * rng.uniform(0.2, 0.35) * mask
        elif label == 2:  # dent: a dark pit with a bright rim
            radius = rng.uniform(1.5, 3.5) * size / 32
            r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / radius**2
            image += -rng.uniform(0.2, 0.35) * np.exp(-r2) + 0.1 * np.exp(-((np.sqrt(r2) - 1.5) ** 2) * 2)
        images[i, 0] = np.clip(image, 0, 1)
    return images, labels.astype(np.int64)


def sensor_series(machines: int, steps: int, horizon: int, seed: int) -> pd.DataFrame:
    """Per machine and step: vibration, temperature, current and ``failure_soon`` (failure within ``horizon`` steps).

    Each machine runs to failure (lifetime 120-300 steps), wearing faster near the end, then is repaired.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for machine in range(machines):
        wear, to_failure = np.empty(steps), np.empty(steps, dtype=np.int64)
        t = 0
        while t < steps:
            life = int(rng.integers(120, 300))
            power = rng.uniform(2.5, 5.0)
            span = np.arange(min(life, steps - t))
            wear[t : t + len(span)] = (span / life) ** power
            to_failure[t : t + len(span)] = life - span
            t += life
        step = np.arange(steps)
        load = 0.5 + 0.3 * np.sin(2 * np.pi * step / 24 + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.05, steps)
        frames.append(
            pd.DataFrame(
                {
                    "machine_id": f"M{machine:03d}",
                    "step": step,
                    "vibration": 1.0 + 2.0 * wear + 0.3 * load + rng.normal(0, 0.15, steps),
                    "temperature": 55 + 12 * wear + 6 * load + rng.normal(0, 1.0, steps),
                    "current": 10 + 3 * load + 1.5 * wear * rng.normal(1, 0.5, steps) + rng.normal(0, 0.3, steps),
                    "failure_soon": (to_failure <= horizon).astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def power_series(days: int, source: str, seed: int) -> pd.DataFrame:
    """Hourly normalised output (0-1) of a solar or wind plant with day-ahead weather forecasts."""
    rng = np.random.default_rng(seed)
    hours = days * 24
    t = np.arange(hours)
    hour, doy = t % 24, (90 + t // 24) % 365
    # weather fronts: a regime (cloudiness, windiness) that changes every 1-4 days
    changes = np.cumsum(rng.integers(24, 96, size=days))
    changes = changes[changes < hours]
    regime = rng.beta(1.2, 1.5, size=len(changes) + 1)[np.searchsorted(changes, t, side="right")]
    cloud = np.clip(_ar1(regime, 0.85, 0.06, rng), 0, 1)
    temp = (
        15
        + 8 * np.sin(2 * np.pi * (doy - 110) / 365)
        + 5 * np.sin(2 * np.pi * (hour - 9) / 24)
        + rng.normal(0, 1, hours)
    )
    wind = np.clip(_ar1(4 + 8 * regime + 1.0 * np.sin(2 * np.pi * (hour - 15) / 24), 0.9, 0.6, rng), 0, 30)
    daylength = 12 + 2.5 * np.sin(2 * np.pi * (doy - 80) / 365)
    elevation = np.clip(np.sin(np.pi * (hour + 0.5 - (12 - daylength / 2)) / daylength), 0, None)
    clear_sky = elevation**1.2
    if source == "solar":
        power = clear_sky * (1 - 0.75 * cloud**1.5) * (1 - 0.004 * (temp - 25)) + rng.normal(0, 0.02, hours) * (
            clear_sky > 0
        )
    elif source == "wind":
        power = np.where(wind < 3, 0, np.where(wind < 12, ((wind - 3) / 9) ** 3, np.where(wind < 25, 1.0, 0.0)))
        power = power + rng.normal(0, 0.02, hours) * (power > 0)
    else:
        raise ValueError(f"source {source!r} is not 'solar' or 'wind'")
    cloud_fc = np.clip(cloud + rng.normal(0, 0.1, hours), 0, 1)
    return pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2025-04-01") + pd.to_timedelta(t, unit="h"),
            "power": np.clip(power, 0, 1),
            "irradiance_forecast": clear_sky * (1 - 0.75 * cloud_fc**1.5),
            "cloud_cover_forecast": cloud_fc,
            "wind_speed_forecast": np.clip(wind + rng.normal(0, 1.0, hours), 0, None),
            "temperature_forecast": temp + rng.normal(0, 1.0, hours),
        }
    )


def _ar1(mean: np.ndarray, phi: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(mean, dtype=np.float64)
    level = mean[0]
    for i, m in enumerate(mean):
        level = m + phi * (level - m) + rng.normal(0, sigma)
        out[i] = level
    return out


def quality_table(n: int, seed: int) -> pd.DataFrame:
    """Food / cosmetics production batches and their quality score (0-100), with interactions.

    Quality peaks at a moderate extraction temperature, suffers when heat meets humidity, and one
    supplier's raw material ages faster in storage.
    """
    rng = np.random.default_rng(seed)
    supplier = rng.choice(["A", "B", "C", "D"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    brix = rng.normal(11, 1.5, n)
    acidity = rng.normal(1.0, 0.25, n)
    temp = rng.uniform(45, 85, n)
    humidity = rng.uniform(30, 90, n)
    minutes = rng.uniform(10, 60, n)
    storage = rng.integers(0, 60, n).astype(np.float64)
    z = lambda v: (v - v.mean()) / v.std()  # noqa: E731
    offset = pd.Series({"A": 0.0, "B": 1.5, "C": -2.0, "D": 3.0})[supplier].to_numpy()
    aging = np.where(supplier == "C", 0.12, 0.03) * storage
    quality = (
        72
        + 3 * z(brix)
        - 2.5 * z(acidity) ** 2
        - 4 * ((temp - 65) / 12) ** 2
        - 3 * z(temp) * z(humidity)
        + 2 * np.log1p(minutes / 10)
        + offset
        - aging
        + rng.normal(0, 1.5, n)
    )
    return pd.DataFrame(
        {
            "supplier": supplier,
            "brix": brix,
            "acidity": acidity,
            "extraction_temp": temp,
            "humidity": humidity,
            "mixing_minutes": minutes,
            "storage_days": storage,
            "quality": np.clip(quality, 0, 100),
        }
    )
