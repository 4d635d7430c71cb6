"""Wire format of the remote studio (docs/protocol.md describes every message).

Control messages are WebSocket text messages holding one JSON object with a "type". Payloads (frames,
file chunks, uploads, images) are binary messages: a 4-byte big-endian header length, a JSON header (with
its "type" and the byte length of each part) and the parts back to back. Nothing received is ever
unpickled or torch.load-ed: JSON, raw numbers with a declared dtype and shape, PNG/JPEG decoded by PIL or
simplejpeg, and checkpoints through core.checkpoint's restricted loader.

Every message is bounded; anything malformed raises ProtocolError, and the server closes that connection.
"""
from __future__ import annotations

import dataclasses
import json
import math
import struct
from typing import Any

from core.engine import NOISE_MODES, Latent, RenderRequest
from core.errors import StudioError

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change; hello/welcome carry it and a mismatch is refused."""

MAX_MESSAGE = 2**20 + 2**18
"""Largest WebSocket message either side accepts (the transport enforces it): a chunk and its header."""
MAX_TEXT = 64 * 2**10
"""Largest JSON control message."""
MAX_HEADER = 16 * 2**10
"""Largest JSON header of a binary message."""
CHUNK = 2**20
"""Bytes per upload or download chunk."""

CLIENT_MESSAGES = frozenset({"hello", "ping", "render", "open", "upload_begin", "upload_end", "job", "cancel",
                             "download", "files", "run", "stats"})
"""Text messages a client may send; "upload_chunk" is its only binary message."""


class ProtocolError(StudioError):
    """A message that breaks the protocol (the connection is closed)."""


class FieldError(StudioError):
    """A well-formed message with a bad value (answered with an error message; the connection stays)."""


# ---- framing ----------------------------------------------------------------------------------------

def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def decode_text(text: str | bytes) -> dict[str, Any]:
    """A control message -> dict with a str "type" (ProtocolError when it is not one)."""
    if isinstance(text, bytes):
        raise ProtocolError("a binary message where a JSON text message was expected")
    if len(text) > MAX_TEXT:
        raise ProtocolError(f"text message of {len(text):,} characters (at most {MAX_TEXT:,})")
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"invalid JSON ({type(e).__name__})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("a message must be a JSON object with a string 'type'")
    return msg


def encode_text(msg: dict[str, Any]) -> str:
    """A control message as JSON (NaN and infinities are refused: JSON has none)."""
    return json.dumps(msg, allow_nan=False, separators=(",", ":"))


def pack(header: dict[str, Any], parts: list[bytes | memoryview] = ()) -> bytes:
    """A binary message: header (its "parts" field is filled in with the lengths) and payload parts."""
    header = dict(header, parts=[len(p) for p in parts])
    head = encode_text(header).encode()
    if len(head) > MAX_HEADER:
        raise ValueError(f"binary header of {len(head):,} bytes")
    return b"".join([struct.pack(">I", len(head)), head, *parts])


def unpack(data: bytes | str) -> tuple[dict[str, Any], list[memoryview]]:
    """A binary message -> (header, parts); ProtocolError when the layout does not add up."""
    if isinstance(data, str):
        raise ProtocolError("a text message where a binary message was expected")
    view = memoryview(data)
    if len(view) < 4:
        raise ProtocolError("binary message shorter than its header length")
    (size,) = struct.unpack(">I", view[:4])
    if size > MAX_HEADER or 4 + size > len(view):
        raise ProtocolError(f"binary header length {size:,} is out of bounds")
    try:
        header = decode_text(bytes(view[4:4 + size]).decode())
    except UnicodeDecodeError:
        raise ProtocolError("binary header is not UTF-8") from None
    lengths = header.get("parts")
    if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
        raise ProtocolError("binary header without a list of part lengths")
    if 4 + size + sum(lengths) != len(view):
        raise ProtocolError("binary part lengths do not add up to the message")
    parts, at = [], 4 + size
    for n in lengths:
        parts.append(view[at:at + n])
        at += n
    return header, parts


# ---- field checks -----------------------------------------------------------------------------------

def integer(value: Any, lo: int, hi: int, what: str) -> int:
    """An int in [lo, hi] (not a bool), else FieldError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise FieldError(f"{what} must be an integer in [{lo}, {hi}], not {str(value)[:40]}")
    return value


def number(value: Any, lo: float, hi: float, what: str) -> float:
    """A finite number in [lo, hi] as a float, else FieldError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise FieldError(f"{what} must be a number in [{lo:g}, {hi:g}], not {str(value)[:40]}")
    return float(value)


def text(value: Any, what: str, limit: int = 256) -> str:
    """A printable string of at most `limit` characters."""
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise FieldError(f"{what} must be a printable string of at most {limit} characters")
    return value


def choice(value: Any, options: tuple[str, ...], what: str) -> str:
    if value not in options:
        raise FieldError(f"{what} must be one of {', '.join(options)}, not {str(value)[:40]}")
    return value


def optional(value: Any, check, *args) -> Any:
    return None if value is None else check(value, *args)


def fields_of(obj: Any, allowed: set[str], what: str) -> dict[str, Any]:
    """A JSON object with no keys beyond `allowed` (a misspelt field is an error, as for the dataclasses)."""
    if not isinstance(obj, dict):
        raise FieldError(f"{what} must be a JSON object")
    unknown = set(obj) - allowed
    if unknown:
        raise FieldError(f"{what} has unknown field(s): {', '.join(sorted(map(str, unknown)))[:120]}")
    return obj


# ---- RenderRequest <-> JSON -------------------------------------------------------------------------

SEED_RANGE = (-2**31, 2**32 - 1)
MAX_WS = 64
"""Bound on layer indices (num_ws of the largest released model is 14)."""
MAX_SAMPLE_SCALE = 8.0
MAX_RESOLUTION = 1024


def to_json(value: Any, changed_only: bool = False) -> Any:
    """Dataclasses (nested too) and tuples as plain JSON values; `changed_only`: of a dataclass, only the
    fields that differ from its defaults (the receiver fills those in, as dataclass_from_json does)."""
    if changed_only and dataclasses.is_dataclass(value):
        defaults = type(value)()
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                 if getattr(value, f.name) != getattr(defaults, f.name)}
    elif dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return json.loads(encode_text(value))


def latent_from_json(obj: Any) -> Latent:
    """The inverse of the "latent" part of to_json(request), with every field checked."""
    o = fields_of(obj, {f.name for f in dataclasses.fields(Latent)}, "latent")
    d = Latent()
    seed = lambda key: integer(o.get(key, getattr(d, key)), *SEED_RANGE, f"latent.{key}")
    mix = o.get("mix_layers", [])
    dirs = o.get("directions", [])
    if not isinstance(mix, list) or len(mix) > MAX_WS or not isinstance(dirs, list) or len(dirs) > MAX_WS:
        raise FieldError(f"latent.mix_layers and latent.directions must be lists of at most {MAX_WS} items")
    if not all(isinstance(p, list) and len(p) == 2 for p in dirs):
        raise FieldError("latent.directions must be [index, amount] pairs")
    layers = o.get("direction_layers")
    if layers is not None and (not isinstance(layers, list) or len(layers) != 2):
        raise FieldError("latent.direction_layers must be [start, stop] or null")
    return Latent(
        seed=seed("seed"), psi=number(o.get("psi", d.psi), -10, 10, "latent.psi"),
        cutoff=optional(o.get("cutoff"), integer, 0, MAX_WS, "latent.cutoff"),
        mix_seed=None if o.get("mix_seed") is None else seed("mix_seed"),
        mix_layers=tuple(integer(i, 0, MAX_WS - 1, "latent.mix_layers") for i in mix),
        interp_seed=None if o.get("interp_seed") is None else seed("interp_seed"),
        interp_t=number(o.get("interp_t", 0.0), -4, 4, "latent.interp_t"),
        directions=tuple((integer(k, 0, MAX_WS - 1, "direction index"), number(a, -1e3, 1e3, "direction amount"))
                         for k, a in dirs),
        direction_layers=None if layers is None else tuple(integer(i, 0, MAX_WS, "latent.direction_layers")
                                                           for i in layers),
        cond_yaw=number(o.get("cond_yaw", 0.0), -10, 10, "latent.cond_yaw"),
        cond_pitch=number(o.get("cond_pitch", 0.0), -10, 10, "latent.cond_pitch"),
        cond_fov=optional(o.get("cond_fov"), number, 1e-3, 179.0, "latent.cond_fov"),
        source=optional(o.get("source"), text, "latent.source", 128))


def request_from_json(obj: Any) -> RenderRequest:
    """A RenderRequest from JSON, every field checked against its type and a bound (FieldError names the
    first bad one). Missing fields take the dataclass defaults."""
    o = fields_of(obj, {f.name for f in dataclasses.fields(RenderRequest)}, "request")
    d = RenderRequest()
    camera = o.get("camera", [])
    if not isinstance(camera, list) or len(camera) not in (0, 25):
        raise FieldError("request.camera must be a list of 25 numbers (or empty: the frontal camera)")
    scale = lambda key: number(o.get(key, getattr(d, key)), 0.0, MAX_SAMPLE_SCALE, f"request.{key}")
    return RenderRequest(
        latent=latent_from_json(o.get("latent", {})),
        camera=tuple(number(x, -1e4, 1e4, "request.camera") for x in camera),
        resolution=optional(o.get("resolution"), integer, 1, MAX_RESOLUTION, "request.resolution"),
        sample_scale=scale("sample_scale"), coarse_scale=scale("coarse_scale"),
        importance_scale=scale("importance_scale"),
        noise_mode=choice(o.get("noise_mode", d.noise_mode), NOISE_MODES, "request.noise_mode"),
        noise_seed=integer(o.get("noise_seed", 0), 0, 2**63 - 1, "request.noise_seed"),
        superresolution=flag(o.get("superresolution", d.superresolution), "request.superresolution"),
        stochastic=flag(o.get("stochastic", d.stochastic), "request.stochastic"),
        precision=choice(o.get("precision", d.precision), ("fp32", "bf16"), "request.precision"),
        generation=integer(o.get("generation", 0), 0, 2**53, "request.generation"))


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"{what} must be true or false")
    return value


# ---- option dataclasses <-> JSON --------------------------------------------------------------------

INT_BOUND = (-4096, 4096)
"""Bound of an integer option without its own (a field added later stays bounded)."""
FLOAT_BOUND = (-1e6, 1e6)
MAX_ITEMS = 64


def dataclass_from_json(cls, obj: Any, what: str, limits: dict[str, tuple[float, float]] | None = None):
    """An options dataclass (MeshOptions, InversionOptions, OrbitCamera, ...) from JSON: only its own
    fields, each of the type of its default value (bool, int, float, str, tuples of those; None where
    the default is None), numbers within `limits[field]` or a general bound. Missing fields keep their
    defaults; the dataclass's own checks run too (FieldError names the problem)."""
    names = {f.name for f in dataclasses.fields(cls)}
    o = fields_of(obj, names, what)
    defaults, limits = cls(), limits or {}
    values = {k: _like(getattr(defaults, k), v, f"{what}.{k}", limits.get(k)) for k, v in o.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise FieldError(f"{what}: {e}") from None


def _like(default: Any, value: Any, what: str, bound: tuple[float, float] | None) -> Any:
    """`value` checked against the type of `default`."""
    if value is None:
        if default is None:
            return None
        raise FieldError(f"{what} must not be null")
    if default is None and not isinstance(value, (list, dict)):
        default = value  # an optional field: checked as what it holds
    if isinstance(default, bool):
        return flag(value, what)
    if isinstance(default, int):
        lo, hi = bound or INT_BOUND
        return integer(value, int(lo), int(hi), what)
    if isinstance(default, float):
        return number(value, *(bound or FLOAT_BOUND), what)
    if isinstance(default, str):
        return text(value, what)
    if isinstance(default, tuple):
        if not isinstance(value, list) or len(value) > MAX_ITEMS:
            raise FieldError(f"{what} must be a list of at most {MAX_ITEMS} items")
        # a tuple of numbers with any float (say (0, 0.0)) holds floats: ints are accepted where floats are
        proto = next((d for d in default if isinstance(d, float)), default[0]) if default else 0.0
        return tuple(_like(proto, v, what, bound) for v in value)
    raise FieldError(f"{what} cannot be set remotely")
