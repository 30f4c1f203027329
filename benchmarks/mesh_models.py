"""Mesh-based robots for ``benchmarks/viewer.py --mesh-models``: a package drafted from a URDF
whose every visual and collision is a mesh file, and the time one such model takes to load.

The robot is the tests' Acme humanoid (:mod:`tests.robots.acme`: kestrel_k1's kinematics, STL
and DAE meshes, ``package://`` references), put through ``twin robots add``'s
:func:`robots.draft.draft_package` into a temporary models folder that goes on
``HALL_TWIN_ROBOTS``. Because its kinematics are kestrel_k1's, a hall of kestrel_k1 robots is
the like-for-like comparison.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from robots.draft import draft_package
from robots.library import ENV_ROBOTS, model_in
from tests.robots.acme import MANUFACTURER, write_acme

MESH_MODEL: Final = "acme_a1"
LIKE_FOR_LIKE: Final = "kestrel_k1"
_ONE_ROBOT: Final = """\
name: one mesh robot
floor: {size: [4, 4]}
hub: {id: HUB, pose: {xyz: [3.5, 3.5, 0]}, size: [0.4, 0.4, 0.8]}
stations: [{id: S1, pose: {xyz: [2, 2, 0]}}]
robots: [{id: R1, model: acme_a1, station: S1, task: idle}]
"""


EDGE_M: Final = 0.012
"""Mesh edges of at most 12 mm: some 250k triangles per robot, like a manufacturer's CAD export."""


def install_mesh_model(folder: Path) -> Path:
    """Draft the mesh humanoid's package under ``folder/models`` and put that on the models
    path; the package folder."""
    logging.getLogger("trimesh").setLevel(logging.ERROR)
    urdf = write_acme(folder / "vendor", EDGE_M)
    root = folder / "models" / MESH_MODEL
    draft_package(urdf, root, manufacturer=MANUFACTURER, model=MESH_MODEL, rate_hz=250.0)
    os.environ[ENV_ROBOTS] = str(folder / "models")
    return root


def load_times(root: Path, triangles_per_robot: int) -> dict[str, Any]:
    """Seconds to load the mesh model, cold, in three parts: reading and checking the package
    (URDF, mesh references, standing heights from the file), PyBullet loading it into a world
    (collision meshes made convex hulls), and the viewer's robot batch (every visual mesh read
    with trimesh, decimated to the budget)."""
    from scenes import parse_scene
    from twin import World
    from viz.robot_mesh import RobotBatch

    with tempfile.TemporaryDirectory() as fresh:  # a copy: nothing cached from drafting
        import shutil

        copy = Path(fresh) / MESH_MODEL
        shutil.copytree(root, copy)
        t0 = time.perf_counter()
        model = model_in(copy)
        t1 = time.perf_counter()
    scene = parse_scene(_ONE_ROBOT, "<one mesh robot>")
    t2 = time.perf_counter()
    with World(scene) as world:
        t3 = time.perf_counter()
        batch = RobotBatch(world, triangles_per_robot=triangles_per_robot)
        t4 = time.perf_counter()
        triangles = int(batch.mesh.n_cells)
    return {
        "model": model.name,
        "links": len(model.links),
        "mesh_files": len(list((root / "meshes").iterdir())),
        "source_triangles": _source_triangles(root),
        "robot_triangles": triangles,
        "package_s": round(t1 - t0, 3),
        "pybullet_s": round(t3 - t2, 3),
        "viewer_meshes_s": round(t4 - t3, 3),
        "total_s": round((t1 - t0) + (t4 - t2), 3),
    }


def _source_triangles(root: Path) -> int:
    """Triangles in the package's visual meshes as written (before the viewer's decimation)."""
    import trimesh

    total = 0
    for path in sorted((root / "meshes").glob("*_visual*")):
        loaded = trimesh.load(path, force="mesh")
        total += len(getattr(loaded, "faces", ()))
    return total
