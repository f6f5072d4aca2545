"""schemathesis hooks for ops/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Random path parameters almost always name nothing, so most cases of an operation on
`/servers/{name}`, `/sites/{uri}`, `/tasks/{id}`... only reach its 404. This hook lets
each generated path parameter be replaced, about half of the time, by a name or id the
script seeded, so the operations' real code runs too. The seeded values come from the
BERTH_ST_KNOWN environment variable: JSON mapping the first path segment after /api/v1
(servers, platforms, sites, tasks, dead-letters, clients) to a list of values.
"""

import json
import os

import schemathesis
from hypothesis import strategies as st

KNOWN: dict[str, list[str]] = json.loads(os.environ.get("BERTH_ST_KNOWN") or "{}")


def _collection(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    # /api/v1/<collection>/...
    return parts[2] if len(parts) > 2 and parts[:2] == ["api", "v1"] else ""


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    if not path_parameters or context.operation is None:
        return st.just(path_parameters)
    coll = _collection(context.operation.path)
    out = {}
    for key, value in path_parameters.items():
        # `{other}` in /platforms/{name}/compare/{other} is a platform too.
        known = KNOWN.get(coll, [])
        out[key] = st.sampled_from([value, *known]) if known else st.just(value)
    return st.fixed_dictionaries(out)
