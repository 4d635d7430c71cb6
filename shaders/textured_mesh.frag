#version 330 core
// Unlit base colour: the texture at the glTF texture coordinates (v down from the image's first row,
// which is the first row uploaded). The bytes are sRGB and written out unchanged.
in vec2 v_uv;
out vec4 o_color;

uniform sampler2D u_texture;

void main() {
    o_color = vec4(texture(u_texture, v_uv).rgb, 1.0);
}
