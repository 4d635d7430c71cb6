#version 330 core
// A textured mesh seen by an EG3D camera (OpenCV axes: +x right, +y down, +z forward; intrinsics
// normalised to the image, EG3D ref §1.8): world -> camera -> image coordinates in [0,1] -> clip space.
// Image row 0 (v = 0) goes to the top (ndc y = +1), so read_pixels returns the picture the renderer makes.
layout(location = 0) in vec3 a_position;
layout(location = 1) in vec2 a_uv;
out vec2 v_uv;

uniform vec3 u_rot0;        // rows of R^T (world -> camera rotation)
uniform vec3 u_rot1;
uniform vec3 u_rot2;
uniform vec3 u_origin;      // camera centre in world coordinates
uniform vec2 u_focal;       // fx, fy over the image size
uniform vec2 u_centre;      // cx, cy over the image size
uniform vec2 u_near_far;

void main() {
    vec3 d = a_position - u_origin;
    vec3 p = vec3(dot(u_rot0, d), dot(u_rot1, d), dot(u_rot2, d));
    vec2 image = u_focal * p.xy / p.z + u_centre;
    float n = u_near_far.x, f = u_near_far.y;
    float z_ndc = ((f + n) - 2.0 * f * n / p.z) / (f - n);
    gl_Position = vec4(vec2(image.x * 2.0 - 1.0, 1.0 - image.y * 2.0) * p.z, z_ndc * p.z, p.z);
    v_uv = a_uv;
}
