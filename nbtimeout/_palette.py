"""One palette for every outcome, wherever nbtimeout draws it: records, the map view, the tour's charts.

Close to the seed figure the project started from: stopped orange, finished green. Colours only mark
borders, bars and squares; the words and icons say the outcome (never colour alone), and text keeps
the theme's own colour, so these need contrast against the page (3:1 for graphics) on light and dark
themes alike: mid-tone shades of each hue.
"""

from __future__ import annotations

COLOURS: dict[str, str] = {
    "pending": "#9e9e9e",
    "running": "#1e88e5",
    "finished": "#2e7d32",
    "stopped": "#ef6c00",
    "crashed": "#8e24aa",
    "failed": "#d32f2f",
    "interrupted": "#f9a825",
}
