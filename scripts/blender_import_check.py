"""Import a textured GLB or OBJ into Blender headless, check that the image is attached, render a PNG.

An independent check of `main.py mesh --texture` files with a tool nobody here wrote (Debian's blender
package; run outside the test suite):

    blender -b --factory-startup --python scripts/blender_import_check.py -- MESH.glb|MESH.obj OUT.png

Prints one line: the faces imported, the image node feeding Base Color (name, size) and the render path;
exits 1 when the image is missing. The camera looks at the front (+z in the file's +y-up world, which
both importers turn into Blender's -y), lit by a uniform white world so the render shows the base colour.
"""
import sys

import bpy  # Blender's own module: this file runs inside Blender's Python


def main(mesh_path: str, out_png: str) -> int:
    import numpy
    if not hasattr(numpy, "bool"):  # Debian 12 pairs Blender 3.4's glTF importer (np.bool) with NumPy 1.24
        numpy.bool = bool
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if mesh_path.lower().endswith(".glb"):
        bpy.ops.import_scene.gltf(filepath=mesh_path)
    else:
        bpy.ops.wm.obj_import(filepath=mesh_path)
    objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    faces = sum(len(o.data.polygons) for o in objects)
    images = []
    for o in objects:
        for slot in o.material_slots:
            tree = slot.material.node_tree if slot.material and slot.material.use_nodes else None
            if tree is None:
                continue
            for node in tree.nodes:
                if node.type == "BSDF_PRINCIPLED" and node.inputs["Base Color"].is_linked:
                    source = node.inputs["Base Color"].links[0].from_node
                    if source.type == "TEX_IMAGE" and source.image is not None:
                        images.append(source.image)
    scene = bpy.context.scene
    world = bpy.data.worlds.new("white")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (1, 1, 1, 1)
    scene.world = world
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(camera)
    corners = [o.matrix_world @ v.co for o in objects for v in o.data.vertices]
    centre = [(min(c[k] for c in corners) + max(c[k] for c in corners)) / 2 for k in range(3)]
    camera.location = (centre[0], centre[1] - 2.7, centre[2])
    camera.rotation_euler = (1.5708, 0.0, 0.0)  # look along +y at the bounding box's centre, z up
    camera.data.lens_unit = "FOV"
    camera.data.angle = 0.45
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 32
    scene.cycles.device = "CPU"
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.render.filepath = out_png
    bpy.ops.render.render(write_still=True)
    attached = ", ".join(f"{im.name} {im.size[0]}x{im.size[1]}" for im in images) or "NONE"
    print(f"blender {bpy.app.version_string}: {mesh_path}: {faces} faces, base colour image: {attached}, "
          f"render: {out_png}")
    return 0 if images else 1


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1:]
    sys.exit(main(argv[0], argv[1]))
