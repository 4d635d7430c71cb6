#version 330 core
// Shows an RGB texture; with u_split in (0, 1) the part left of the split shows u_compare instead
// (raw vs super-resolved compare), with a thin divider line. Colours are premultiplied over black
// (the renderer composites without a background); alpha is the accumulated opacity, so
// u_background shows through where rays hit nothing.
in vec2 v_uv;
out vec4 o_color;

uniform sampler2D u_image;
uniform sampler2D u_compare;
uniform float u_split;       // 0 = no split
uniform float u_divider;     // divider half-width in uv units
uniform vec3 u_background;

void main() {
    vec4 c = texture(u_image, v_uv);
    if (u_split > 0.0 && v_uv.x < u_split) {
        c = texture(u_compare, v_uv);
    }
    vec3 rgb = c.rgb + (1.0 - c.a) * u_background;
    if (u_split > 0.0 && abs(v_uv.x - u_split) < u_divider) {
        rgb = vec3(1.0, 0.85, 0.2);
    }
    o_color = vec4(rgb, 1.0);
}
