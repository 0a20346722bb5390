"""Shared test settings: small thread pools keep the suite fast and stable on 2 CPU cores."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
