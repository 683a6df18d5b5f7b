from __future__ import annotations

import warnings

# authlib (used by confluent-kafka's registry client) warns about its own httpx shim on import.
warnings.filterwarnings("ignore", message=".*httpx module is deprecated")
