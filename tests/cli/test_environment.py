"""The set-up installs what later rooms need: Open3D (with libusb) and off-screen VTK (Mesa)."""

from __future__ import annotations

import numpy as np


def test_open3d_imports_and_raycasts() -> None:
    import open3d as o3d

    box = o3d.geometry.TriangleMesh.create_box(1.0, 1.0, 1.0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(box))
    rays = o3d.core.Tensor.from_numpy(np.array([[0.5, 0.5, 5.0, 0.0, 0.0, -1.0]], dtype=np.float32))
    hit = scene.cast_rays(rays)["t_hit"].numpy()
    assert abs(float(hit[0]) - 4.0) < 1e-5


def test_pyvista_renders_off_screen_without_a_display() -> None:
    import pyvista as pv

    plotter = pv.Plotter(off_screen=True, window_size=[160, 120])
    try:
        plotter.background_color = pv.Color("white")
        plotter.add_mesh(pv.Cube(), color="red")
        image = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    assert image is not None and image.shape == (120, 160, 3)
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert 0.05 < red.mean() < 0.9, "the cube must cover part, not all, of the picture"
    assert (image[0, 0] == 255).all(), "the corner shows the white background"
