"""Reading an npclust archive's raw members, for tests that build damaged copies of it."""

import json

import numpy as np


def members_of(path):
    """The archive's arrays, read the safe way (no pickle)."""
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def header_of(path):
    """The archive's decoded JSON header."""
    return json.loads(str(members_of(path)["__npclust__"]))
