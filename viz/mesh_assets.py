"""Mesh visuals from a robot's own files: STL, OBJ and DAE (Collada), scaled, decimated, coloured.

A real manufacturer's robot draws every link from a mesh file; PyBullet's
``getVisualShapeData`` reports each as ``GEOM_MESH`` with the file name and the URDF's
``scale``. :func:`load_mesh` reads the file with trimesh (pycollada for DAE; a scene of several
meshes is concatenated), applies the scale and returns the triangles in the visual's own frame,
as the primitives are; :func:`decimate` brings a mesh down to a triangle count with VTK's
quadric decimation, so a robot stays within :data:`TRIANGLES_PER_ROBOT` however fine its
meshes; :func:`mesh_rgb` is the colour the file gives (a material or vertex colours), used
where the URDF gives none.

A file that is missing or cannot be read is one warning naming the file and why; that visual is
not drawn, the rest of the robot is.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyvista as pv
import trimesh

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

TRIANGLES_PER_ROBOT: Final = 20_000
"""The triangle budget of one robot's mesh visuals (the primitives are not counted)."""
MIN_TRIANGLES: Final = 12
"""No mesh is decimated below this (a box has 12)."""
MESH_SUFFIXES: Final = frozenset({".stl", ".obj", ".dae"})


class MeshAssetError(ValueError):
    """A mesh file that cannot be drawn (the message names the file and why)."""


@functools.lru_cache(maxsize=256)
def _read(path: str) -> tuple[F64, I64, tuple[int, int, int] | None]:
    file = Path(path)
    if file.suffix.lower() not in MESH_SUFFIXES:
        raise MeshAssetError(f"{file}: not a mesh the viewer draws (STL, OBJ or DAE)")
    if not file.is_file():
        raise MeshAssetError(f"{file}: mesh file not found")
    try:
        loaded = trimesh.load(file, force="mesh", process=False)
    except Exception as exc:  # trimesh raises many kinds for a damaged file
        raise MeshAssetError(f"{file}: cannot read the mesh ({exc})") from None
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise MeshAssetError(f"{file}: the file holds no triangles")
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64)
    if not np.isfinite(vertices).all():
        raise MeshAssetError(f"{file}: vertices are not finite")
    return vertices, faces, _file_rgb(loaded)


def _file_rgb(mesh: trimesh.Trimesh) -> tuple[int, int, int] | None:
    """The colour a mesh file gives: its material's main colour, or the mean vertex colour."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    if material is not None:
        colour = getattr(material, "main_color", None)
        if colour is not None:
            rgb = tuple(int(c) for c in np.asarray(colour)[:3])
            return (rgb[0], rgb[1], rgb[2])
    if isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind in ("vertex", "face"):
        colours = np.asarray(visual.vertex_colors)[:, :3]
        if len(colours):
            mean = colours.mean(axis=0).round().astype(int)
            return (int(mean[0]), int(mean[1]), int(mean[2]))
    return None


def load_mesh(path: Path, scale: tuple[float, float, float]) -> tuple[F64, I64]:
    """Points (n, 3) and triangles (m, 3) of a mesh file, scaled, in the visual's frame.

    Raises :class:`MeshAssetError` for a file that is missing, of another kind, or unreadable.
    """
    vertices, faces, _ = _read(str(path))
    scaled: F64 = vertices * np.asarray(scale, dtype=np.float64)
    return scaled, faces.copy()


def mesh_rgb(path: Path) -> tuple[int, int, int] | None:
    """The colour the mesh file gives (0-255 each), or None where it gives none."""
    try:
        return _read(str(path))[2]
    except MeshAssetError:
        return None


def decimate(points: F64, triangles: I64, target_triangles: int) -> tuple[F64, I64]:
    """The mesh reduced to about ``target_triangles`` (VTK quadric decimation); as it is when
    already within the target."""
    target = max(MIN_TRIANGLES, int(target_triangles))
    if len(triangles) <= target:
        return points, triangles
    surface = pv.PolyData.from_regular_faces(points, triangles)
    reduced = surface.decimate(1.0 - target / len(triangles))
    faces = np.asarray(reduced.faces, dtype=np.int64).reshape(-1, 4)
    if len(faces) == 0:  # decimation gave up on a degenerate mesh: keep the original
        return points, triangles
    return np.asarray(reduced.points, dtype=np.float64), faces[:, 1:].copy()


def triangle_budget(counts: list[int], budget: int = TRIANGLES_PER_ROBOT) -> list[int]:
    """Each mesh's share of a robot's budget: in proportion to its triangles, never above them."""
    total = sum(counts)
    if total <= budget:
        return list(counts)
    return [max(MIN_TRIANGLES, count * budget // total) for count in counts]
