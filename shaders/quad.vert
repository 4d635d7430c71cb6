#version 330 core
// Full-screen quad drawn as a 4-vertex triangle strip with no vertex buffer.
// Texture row 0 is the top of the image (numpy order), so v is flipped here.
out vec2 v_uv;

void main() {
    vec2 corner = vec2(float(gl_VertexID & 1), float((gl_VertexID >> 1) & 1));
    v_uv = vec2(corner.x, 1.0 - corner.y);
    gl_Position = vec4(corner * 2.0 - 1.0, 0.0, 1.0);
}
