"""Users' photos on the host: listing them and reading each as RGB uint8, with one-line errors.

OpenCV decodes a cut-off JPEG or PNG without an error (the missing rows come out grey), so the
end markers are checked first: a JPEG must end with EOI (FF D9, allowing a little trailing
padding) and a PNG must hold its IEND chunk. Grey, grey+alpha, RGBA and 16-bit images are
converted, each with a note for the user (not an error). Photos below `MIN_SIDE` pixels on the
shorter side hold no face the networks can fit; photos above `MAX_PIXELS` would take gigabytes
to decode and are refused, from the header size where the format makes that cheap (JPEG, PNG),
else after decoding.
"""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np

MIN_SIDE = 32                      # px, shorter side
MAX_PIXELS = 100_000_000           # 100 megapixels
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_JPEG_TAIL = 64                    # bytes at the end searched for EOI (some cameras pad files)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PhotoError(ValueError):
  """A photo cannot be used; the message is one line naming the file and what to do."""


def list_images(paths) -> list[str]:
  """Image files among `paths`: files as given, folders' images (non-recursive, sorted by name,
  extensions `EXTENSIONS`, any case). A path that does not exist is a PhotoError."""
  out = []
  for p in paths:
    p = os.fspath(p)
    if os.path.isdir(p):
      names = sorted(n for n in os.listdir(p) if os.path.splitext(n)[1].lower() in EXTENSIONS)
      out.extend(os.path.join(p, n) for n in names if os.path.isfile(os.path.join(p, n)))
    elif os.path.isfile(p):
      out.append(p)
    else:
      raise PhotoError(f"{p}: no such file or folder; check the path")
  return out


def _header_size(data: bytes) -> tuple[int, int] | None:
  """(width, height) from a PNG IHDR or a JPEG SOFn header without decoding; None if unknown."""
  if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
    return struct.unpack(">II", data[16:24])
  if data[:2] == b"\xff\xd8":
    i = 2
    while i + 9 < len(data):
      if data[i] != 0xFF:
        return None
      marker = data[i + 1]
      if marker == 0xFF:                       # fill byte
        i += 1
        continue
      if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
        i += 2
        continue
      (length,) = struct.unpack(">H", data[i + 2:i + 4])
      if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
        h, w = struct.unpack(">HH", data[i + 5:i + 9])
        return w, h
      i += 2 + length
  return None


def _check_complete(path: str, data: bytes) -> None:
  if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-_JPEG_TAIL:]:
    raise PhotoError(f"{path}: truncated JPEG (no end-of-image marker): the file was cut off; "
                     "copy or download it again")
  if data.startswith(_PNG_SIGNATURE) and b"IEND" not in data[-64:]:
    raise PhotoError(f"{path}: truncated PNG (no IEND chunk): the file was cut off; copy or "
                     "download it again")


def _check_size(path: str, w: int, h: int) -> None:
  if w * h > MAX_PIXELS:
    raise PhotoError(f"{path}: {w}x{h} px is over the limit of {MAX_PIXELS / 1e6:g} megapixels; "
                     "downscale the photo first")
  if min(w, h) < MIN_SIDE:
    raise PhotoError(f"{path}: {w}x{h} px is too small (shorter side under {MIN_SIDE} px); use "
                     "a larger photo")


def load_photo(path) -> tuple[np.ndarray, list[str]]:
  """(RGB uint8 (H, W, 3), notes): notes are one-line remarks about conversions made (grey,
  alpha dropped, 16-bit scaled). PhotoError for anything unusable (module docstring)."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise PhotoError(f"{path}: cannot read ({e.strerror or e}); check the path and "
                     "permissions") from None
  if not data:
    raise PhotoError(f"{path}: empty file (0 bytes); copy or download it again")
  _check_complete(path, data)
  wh = _header_size(data)
  if wh is not None:
    _check_size(path, *wh)
  img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if img is None or img.size == 0:
    raise PhotoError(f"{path}: not an image OpenCV can decode (corrupt, or not jpg/png/bmp/tif/"
                     "webp); convert it to JPEG or PNG")
  _check_size(path, img.shape[1], img.shape[0])
  notes = []
  if img.dtype != np.uint8:
    if img.dtype == np.uint16:
      img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)  # 65535 -> 255 exactly
      notes.append(f"{path}: 16-bit image scaled to 8 bits")
    elif np.issubdtype(img.dtype, np.floating):
      img = (np.clip(np.nan_to_num(img.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
      notes.append(f"{path}: floating-point image clipped to [0, 1] and scaled to 8 bits")
    else:
      raise PhotoError(f"{path}: unsupported pixel type {img.dtype}; convert it to an 8-bit "
                       "JPEG or PNG")
  if img.ndim == 3 and img.shape[2] == 1:
    img = img[..., 0]
  if img.ndim == 2:
    notes.append(f"{path}: grayscale image converted to RGB")
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), notes
  channels = img.shape[2]
  if channels == 2:  # grey + alpha
    notes.append(f"{path}: grayscale image converted to RGB, alpha channel dropped")
    return cv2.cvtColor(np.ascontiguousarray(img[..., 0]), cv2.COLOR_GRAY2RGB), notes
  if channels == 4:
    notes.append(f"{path}: alpha channel dropped")
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), notes
  if channels != 3:
    raise PhotoError(f"{path}: {channels} colour channels; convert it to an RGB JPEG or PNG")
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), notes
