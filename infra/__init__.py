"""CDK constructs of the impairment recovery system. The Lambda code in functions/ is importable
from here so that the infra validates plans and builds roles from the actions' declarations."""

import sys
from pathlib import Path

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"
if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))
