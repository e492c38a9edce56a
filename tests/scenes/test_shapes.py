import numpy as np
import open3d as o3d
import torch

from onefield.scenes import read_blender
from onefield.scenes.shapes import SHAPES_AABB


def test_shapes_scene_is_a_blender_scene_with_its_mesh(shapes_scene):
    train = read_blender(shapes_scene.root, "train", use_cache=False)
    test = read_blender(shapes_scene.root, "test", use_cache=False)
    assert len(train) == 24 and len(test) == 6 and train.cameras.width == 40 and train.has_alpha
    assert train.aabb == SHAPES_AABB
    alpha = train.images[..., 3].float() / 255
    assert 0.05 < float((alpha > 0.99).float().mean()) < 0.6  # shapes fill part of each view
    assert float(((alpha > 0.01) & (alpha < 0.99)).float().mean()) > 0.005  # anti-aliased edges
    assert not torch.equal(train.cameras.c2w[:6], test.cameras.c2w)  # held-out views are new ones

    mesh = o3d.io.read_triangle_mesh(str(shapes_scene.mesh_path))
    vertices = np.asarray(mesh.vertices)
    assert len(mesh.triangles) > 1000
    assert (vertices >= np.array(SHAPES_AABB[:3])).all() and (vertices <= np.array(SHAPES_AABB[3:])).all()

    # the mesh is what the images show: opaque pixels' rays hit it, transparent ones miss it
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    rays = train.cameras.image_rays(5)
    hits = scene.cast_rays(o3d.core.Tensor(torch.cat([rays.origins, rays.directions], -1).numpy()))
    hit = torch.from_numpy(np.isfinite(hits["t_hit"].numpy()))
    a = alpha[5].flatten()
    assert bool(hit[a > 0.99].all()) and not bool(hit[a < 0.01].any())
