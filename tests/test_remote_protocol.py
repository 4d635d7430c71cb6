"""The remote studio's pieces without a server: the request codec, binary framing, frame payloads, the
served folder's path checks and the token file."""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import struct

import numpy as np
import pytest
import torch

from core.engine import Frame, Latent, RenderEngine, RenderRequest
from core.errors import StudioError
from core.imaging import to_uint8
from remote import protocol as P
from remote.auth import create_token_file, read_token_file, same_token, server_token
from remote.frames import decode_frame, encode_frame
from remote.served_root import ServedRoot

FULL = RenderRequest(
    latent=Latent(seed=7, psi=0.5, cutoff=4, mix_seed=9, mix_layers=(5, 6, 7), interp_seed=11, interp_t=0.25,
                  directions=((0, 1.5), (3, -2.0)), direction_layers=(2, 8), cond_yaw=0.1, cond_pitch=-0.2,
                  cond_fov=20.0, source=None),
    camera=tuple(float(i) / 7 for i in range(25)), resolution=48, sample_scale=0.5, coarse_scale=1.5,
    importance_scale=0.0, noise_mode="random", noise_seed=12345, superresolution=False, stochastic=True,
    precision="bf16", generation=42)


def test_a_request_survives_json_with_every_field():
    wire = json.loads(P.encode_text(P.to_json(FULL)))
    back = P.request_from_json(wire)
    assert back == FULL and hash(back.latent) == hash(FULL.latent)  # equal cache keys on both sides


@pytest.mark.parametrize("change, field", [
    ({"resolution": 100000}, "request.resolution"), ({"camera": [0.0] * 24}, "request.camera"),
    ({"superresolution": 1}, "request.superresolution"), ({"noise_mode": "loud"}, "request.noise_mode"),
    ({"sample_scale": 1e9}, "request.sample_scale"), ({"fancy": True}, "unknown field"),
    ({"latent": {"seed": True}}, "latent.seed"), ({"latent": {"seed": 2**40}}, "latent.seed"),
    ({"latent": {"mix_layers": list(range(65))}}, "latent.mix_layers"),
    ({"latent": {"directions": [[0, "a"]]}}, "direction amount"), ({"latent": {"source": "\x00"}}, "latent.source"),
])
def test_bad_request_values_are_refused_naming_the_field(change, field):
    wire = P.to_json(RenderRequest()) | change
    with pytest.raises(P.FieldError, match=field.replace(".", r"\.")):
        P.request_from_json(wire)


@pytest.mark.parametrize("text", ["{", "[1, 2]", '{"type": 3}', '{"type": "x", "v": NaN}', "[" * 5000 + "]" * 5000,
                                  "x" * (P.MAX_TEXT + 1)])
def test_malformed_control_messages_are_protocol_errors(text):
    with pytest.raises(P.ProtocolError):
        P.decode_text(text)


def test_binary_messages_round_trip_and_lying_layouts_are_refused():
    data = P.pack({"type": "t", "x": 1}, [b"abc", b"", b"de"])
    header, parts = P.unpack(data)
    assert header["x"] == 1 and [bytes(p) for p in parts] == [b"abc", b"", b"de"]
    head = json.dumps({"type": "t", "parts": [10]}).encode()
    for bad in (b"\x00\x01", struct.pack(">I", 2**31) + b"{}", struct.pack(">I", len(head)) + head + b"short",
                struct.pack(">I", 4) + b"\xff\xfe{}", data + b"extra", "text"):
        with pytest.raises(P.ProtocolError):
            P.unpack(bad)


def test_option_dataclasses_from_json_keep_types_and_bounds():
    from core.mesh import MeshOptions
    opts = P.dataclass_from_json(MeshOptions, {"resolution": 64, "level": 5, "clean": False}, "options",
                                 {"resolution": (8, 1024)})
    assert opts == MeshOptions(resolution=64, level=5.0, clean=False) and isinstance(opts.level, float)
    for bad in ({"resolution": 5000}, {"resolution": 64.0}, {"clean": "no"}, {"chunk": 10**9}, {"nope": 1}):
        with pytest.raises(P.FieldError):
            P.dataclass_from_json(MeshOptions, bad, "options", {"resolution": (8, 1024)})


def test_inversion_options_round_trip_whole():
    # every field sent, defaults included
    from training.inversion import InversionOptions
    opts = InversionOptions(refine_steps=7, space="w+", tune_steps=7)
    for sent in (InversionOptions(), opts):
        assert P.dataclass_from_json(InversionOptions, P.to_json(sent), "options") == sent


@pytest.mark.parametrize("field,value", [("tune_params", "mapping"), ("tune_reg_every", 0), ("tune_rampdown", 1.5)])
def test_inversion_options_refuse_tuning_they_cannot_run(field, value):
    """A tuning setting no run could use is refused in one line naming it, before any job starts."""
    from training.inversion import InversionOptions
    with pytest.raises(P.FieldError, match=f"options: {field} must"):
        P.dataclass_from_json(InversionOptions, {field: value}, "options")


def test_frames_travel_losslessly_except_jpeg(small_G):
    engine = RenderEngine(small_G, "cpu")
    frame = engine.render(RenderRequest(latent=Latent(seed=2), generation=5))
    for encoding in ("raw", "png", "jpeg"):
        header, parts = encode_frame(frame, encoding)
        data = P.pack(header, parts)
        back = decode_frame(*P.unpack(data), frame.request)
        for name in ("image", "image_raw"):
            sent, got = to_uint8(getattr(frame, name)).astype(int), to_uint8(getattr(back, name)).astype(int)
            if encoding == "jpeg":
                assert np.abs(sent - got).mean() < 4
            else:
                assert np.array_equal(sent, got), (encoding, name)
        assert torch.equal(back.depth, frame.depth) and torch.equal(back.opacity, frame.opacity)
    header, parts = encode_frame(Frame(request=RenderRequest(), error="ValueError: x"))
    assert decode_frame(header, parts, RenderRequest()).error == "ValueError: x"


def test_the_served_folder_cannot_be_left(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "m.ckpt").write_bytes(b"x")
    (outside / "secret.ckpt").write_bytes(b"x")
    (root / "link.ckpt").symlink_to(outside / "secret.ckpt")
    (root / "inner.ckpt").symlink_to(root / "sub" / "m.ckpt")
    served = ServedRoot(root)
    assert served.existing("sub/m.ckpt") == root.resolve() / "sub" / "m.ckpt"
    assert served.existing("inner.ckpt") == root.resolve() / "sub" / "m.ckpt"
    for name, why in (("../outside/secret.ckpt", "without '..'"), (str(outside / "secret.ckpt"), "relative"),
                      ("link.ckpt", "leads outside"), ("sub/../../outside/secret.ckpt", "'..'"),
                      ("C:\\x.ckpt", "relative"), ("a\x00b", "printable"), ("missing.ckpt", "no such file")):
        with pytest.raises(P.FieldError, match=why):
            served.existing(name)
    assert served.export_target("meshes/a.ply", (".ply",)) == root.resolve() / "exports" / "meshes" / "a.ply"
    (root / "exports" / "out").symlink_to(outside)
    with pytest.raises(P.FieldError, match="leads outside"):
        served.export_target("out/a.ply", (".ply",))
    assert not (outside / "a.ply").exists() and sorted(os.listdir(outside)) == ["secret.ckpt"]
    with pytest.raises(P.FieldError, match="must end in"):
        served.export_target("a.sh", (".ply",))
    with pytest.raises(P.FieldError, match="no such file"):
        served.export_file("sub/m.ckpt")  # below the root, but not an export
    assert served.listing("models", (".ckpt",)) == ["inner.ckpt", "sub/m.ckpt"]


def test_the_token_file_is_private_and_compared_in_full(tmp_path):
    path = tmp_path / "cfg" / "serve.token"
    token, created = server_token(path)
    assert created and len(token) == 32 and int(token, 16) >= 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server_token(path) == (token, False)
    with pytest.raises(StudioError):
        create_token_file(path)  # never replaced
    os.chmod(path, 0o644)
    with pytest.raises(StudioError, match="chmod 600"):
        read_token_file(path)
    assert read_token_file(path, private=False) == token  # the client's copy on a laptop
    short = tmp_path / "short"
    short.write_text("abc")
    short.chmod(0o600)
    with pytest.raises(StudioError, match="at least 32"):
        read_token_file(short)
    assert same_token(token, token) and not same_token(token[:-1] + "x", token)
    assert not same_token(None, token) and not same_token(token + "0", token) and not same_token("é", token)


def test_request_fields_match_the_engine_dataclasses():
    """A field added to RenderRequest or Latent must be added to the codec (it reads them by name)."""
    names = {f.name for f in dataclasses.fields(RenderRequest)} | {f.name for f in dataclasses.fields(Latent)}
    wire = P.to_json(FULL)
    assert names == set(wire) | set(wire["latent"])
