"""A manufacturer's robot as the tests meet it: a ROS-style description folder with a URDF whose
every visual and collision is a mesh file (STL, and DAE for the legs' visuals) written with
trimesh, referenced as ``package://acme_description/meshes/...``, and joint names in the
mixed spellings real URDFs use. Kinematics and inertias are kestrel_k1's, so the emulator's
tasks suit it; one joint (``LWP``) has a name no rule can read, so it stays unmapped."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Final, cast

import trimesh

from robots.spec import urdf_path

PACKAGE: Final = "acme_description"
MANUFACTURER: Final = "Acme Humanoids"

RENAMES: Final = {
    "l_hip_pitch_joint": "left_hip_pitch_joint",
    "r_hip_pitch_joint": "right_hip_pitch_joint",
    "torso_yaw_joint": "waist_yaw_joint",
    "l_knee_joint": "L_KNEE",
    "r_knee_joint": "R_KNEE",
    "l_ankle_pitch_joint": "LeftAnklePitch",
    "r_ankle_pitch_joint": "RightAnklePitch",
    "l_wrist_pitch_joint": "LWP",
}
"""kestrel_k1 joint -> the name it has here (the others keep kestrel's spelling)."""


def expected_mapping() -> dict[str, str]:
    """What ``twin robots add`` should propose: kestrel's canonical mapping under the new names,
    without ``LWP``."""
    from robots import get_model

    kestrel = get_model("kestrel_k1").profile.to_canonical
    out = {RENAMES.get(k, k): v for k, v in kestrel.items()}
    del out["LWP"]
    return out


def _mesh_of(geometry: ET.Element, edge_m: float | None) -> trimesh.Trimesh:
    shape = geometry[0]
    if shape.tag == "box":
        mesh = trimesh.creation.box(extents=[float(v) for v in shape.get("size", "").split()])
    elif shape.tag == "cylinder":
        mesh = trimesh.creation.cylinder(
            radius=float(shape.get("radius", "0")), height=float(shape.get("length", "0"))
        )
    elif shape.tag == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=float(shape.get("radius", "0")))
    else:
        raise ValueError(f"no mesh for <{shape.tag}>")
    if edge_m is not None:  # as finely tessellated as a CAD export
        mesh = mesh.subdivide_to_size(max_edge=edge_m, max_iter=12)
    return cast(trimesh.Trimesh, mesh)


def write_acme(folder: Path, edge_m: float | None = None) -> Path:
    """Write ``folder/acme_description/{urdf/acme_a1.urdf, meshes/*}``; return the URDF path.
    ``edge_m``: subdivide every mesh to edges no longer than this (CAD-export density)."""
    root = folder / PACKAGE
    (root / "urdf").mkdir(parents=True)
    (root / "meshes").mkdir()
    tree = ET.parse(urdf_path("kestrel_k1"))
    robot = tree.getroot()
    robot.set("name", "Acme A1")
    for link in robot.findall("link"):
        name = link.get("name", "")
        for kind in ("visual", "collision"):
            for i, element in enumerate(link.findall(kind)):
                geometry = element.find("geometry")
                assert geometry is not None
                mesh = _mesh_of(geometry, edge_m)
                dae = kind == "visual" and re.search(r"(hip|knee|ankle|foot|shank|thigh)", name)
                file_name = f"{name}_{kind}{i}.{'dae' if dae else 'stl'}"
                mesh.export(root / "meshes" / file_name)
                geometry.clear()
                ET.SubElement(geometry, "mesh", filename=f"package://{PACKAGE}/meshes/{file_name}")
    for joint in robot.findall("joint"):
        old = joint.get("name", "")
        joint.set("name", RENAMES.get(old, old))
    path = root / "urdf" / "acme_a1.urdf"
    tree.write(path, encoding="unicode", xml_declaration=True)
    return path
