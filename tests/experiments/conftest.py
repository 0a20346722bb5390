"""Make the shared ``report_checks`` importable from this folder's test files (importlib mode)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
