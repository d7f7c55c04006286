"""Hub revisions as commit hashes: the exact weights a run's features come from.

`encoder.revision` names a branch or tag (`main`) or a commit. A branch moves when a model is
re-uploaded, so the feature cache and the result record the commit the revision names at run
time, and the weights are then loaded at that commit (never at a branch that could move
between the check and the load). The commit is read where huggingface_hub itself keeps it:
`hf_hub_download` returns `{cache}/models--ORG--NAME/snapshots/COMMIT/FILE`, asking the hub
which commit the revision is now, or, offline, reading `refs/REVISION` in the local cache
(huggingface_hub 2.x, `file_download.py`: `_cache_commit_hash_for_specific_revision` writes
`refs/`, `hf_hub_download` reads it back when it cannot reach the hub).
"""

from __future__ import annotations

import re
from pathlib import Path

from probe.core.errors import ProbeError

COMMIT = re.compile(r"[0-9a-f]{40}")  # huggingface_hub's REGEX_COMMIT_HASH


def snapshot_commit(path: str | Path) -> str | None:
    """COMMIT of a path `.../snapshots/COMMIT/FILE` in a hub cache; None elsewhere."""
    parts = Path(path).parts
    if "snapshots" not in parts:
        return None
    i = len(parts) - 1 - parts[::-1].index("snapshots")
    commit = parts[i + 1] if i + 1 < len(parts) else ""
    return commit if COMMIT.fullmatch(commit) else None


def commit_for(repo: str, revision: str, *, anchor: str) -> str:
    """The commit `revision` of hub model `repo` names now (a commit hash is kept as is).

    `anchor` is a small file every checkpoint of the family has (its config); fetching it
    is what resolves the revision, online or from the local cache.
    """
    if COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo, anchor, revision=revision)
    except Exception as err:  # noqa: BLE001 - any hub failure gets the same fix
        raise ProbeError(
            f"encoder.model={repo!r} (encoder.revision={revision!r}) could not be resolved to "
            f"a commit ({type(err).__name__}: {err}). Give a hub id and a revision that exists "
            "(offline: one already in the local HF cache), or pin encoder.revision=COMMIT, or "
            "use a local directory"
        ) from None
    commit = snapshot_commit(path)
    if commit is None:  # a hub client that does not keep snapshots: say so, do not guess
        raise ProbeError(
            f"encoder.model={repo!r}: {path} is not in a hub snapshot folder, so the commit "
            f"of revision {revision!r} is unknown; pin encoder.revision=COMMIT"
        )
    return commit
