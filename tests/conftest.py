import sys
from pathlib import Path

# tests/ helpers (notebooks.py) importable from every test module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
