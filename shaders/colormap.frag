#version 330 core
// Scalar texture (red channel: depth, opacity or one plane channel) -> colour.
// t = (value - lo) / (hi - lo), optionally inverted (near = bright), then a colormap:
// 0 = grey, 1 = turbo (polynomial fit of Google's Turbo, Mikhailov 2019), 2 = diverging blue-white-red.
// With u_mask, texels whose opacity (u_opacity) is below 0.5 are background and drawn as the far end
// (t = 1 before inversion), as core.imaging.depth_to_uint8 does for render's depth PNGs.
in vec2 v_uv;
out vec4 o_color;

uniform sampler2D u_scalar;
uniform vec2 u_range;        // lo, hi
uniform int u_invert;
uniform int u_colormap;
uniform sampler2D u_opacity;
uniform int u_mask;

vec3 turbo(float t) {
    const vec4 kr4 = vec4(0.13572138, 4.61539260, -42.66032258, 132.13108234);
    const vec4 kg4 = vec4(0.09140261, 2.19418839, 4.84296658, -14.18503333);
    const vec4 kb4 = vec4(0.10667330, 12.64194608, -60.58204836, 110.36276771);
    const vec2 kr2 = vec2(-152.94239396, 59.28637943);
    const vec2 kg2 = vec2(4.27729857, 2.82956604);
    const vec2 kb2 = vec2(-89.90310912, 27.34824973);
    vec4 v4 = vec4(1.0, t, t * t, t * t * t);
    vec2 v2 = v4.zw * v4.z;
    return vec3(dot(v4, kr4) + dot(v2, kr2), dot(v4, kg4) + dot(v2, kg2), dot(v4, kb4) + dot(v2, kb2));
}

vec3 diverging(float t) {
    vec3 blue = vec3(0.23, 0.30, 0.75);
    vec3 red = vec3(0.71, 0.02, 0.15);
    return t < 0.5 ? mix(blue, vec3(0.87), t * 2.0) : mix(vec3(0.87), red, t * 2.0 - 1.0);
}

void main() {
    float value = texture(u_scalar, v_uv).r;
    float t = clamp((value - u_range.x) / max(u_range.y - u_range.x, 1e-8), 0.0, 1.0);
    if (u_mask != 0 && texture(u_opacity, v_uv).r < 0.5) {
        t = 1.0;
    }
    if (u_invert != 0) {
        t = 1.0 - t;
    }
    vec3 rgb = u_colormap == 1 ? turbo(t) : (u_colormap == 2 ? diverging(t) : vec3(t));
    o_color = vec4(clamp(rgb, 0.0, 1.0), 1.0);
}
