"""Reports over finished runs: the sweep page and offline DVC plots (no pipeline stage uses them)."""
