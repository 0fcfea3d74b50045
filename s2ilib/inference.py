"""``s2i generate``: speech -> an image grid from a trained pipeline, on the command line.

The Python API is :class:`SpeechToImage` (:mod:`s2ilib.models.pipeline`), importable from here too.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from s2ilib.core.errors import UsageError
from s2ilib.models.pipeline import PipelineError, SpeechToImage, _check_n  # noqa: F401  (public API: s2ilib.inference.SpeechToImage)


# Output extensions of `s2i generate --out` -> Pillow format.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def image_format(path: str | Path) -> str:
    """Pillow format of an output image path from its extension; UsageError if not a known one."""
    ext = Path(path).suffix.lower()
    if ext not in IMAGE_FORMATS:
        raise UsageError(f"--out {str(path)!r}: unknown image extension {ext or '(none)'!r}; "
                         f"use one of {', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[ext]


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """uint8 (n, 3, S, S) -> one image grid (format from the extension), written atomically.

    An unwritable, read-only or full output folder raises OSError naming ``path``.
    """
    import os

    from torchvision.utils import save_image

    path = Path(path)
    fmt = image_format(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(images.float() / 255.0, tmp, nrow=min(nrow, len(images)), padding=2, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        problem = exc.strerror or str(exc)
        if exc.filename is not None and str(exc.filename) not in (str(path), str(tmp)):
            problem += f": {exc.filename}"
        raise OSError(exc.errno, f"cannot write the image ({problem})", str(path)) from exc
    return path


def check_voice(voice_id: str) -> None:
    """``--voice``: a well-formed id of a known engine's known voice (UsageError), checked before any
    model is loaded; an engine whose program is not installed is a failure (TTSError, exit 1)."""
    from s2ilib.speech.tts import TTSError, Voice, engine_names, get_engine

    try:
        voice = Voice.from_id(voice_id)
    except TTSError as exc:
        raise UsageError(f"--voice: {exc}") from exc
    if voice.engine not in engine_names():
        raise UsageError(f"--voice {voice_id!r}: unknown engine {voice.engine!r}; "
                         f"choose one of {', '.join(engine_names())}")
    engine = get_engine(voice.engine)
    try:
        engine.check_voice(voice)
    except TTSError as exc:
        raise UsageError(f"--voice {voice_id!r}: {exc}") from exc


def cmd_generate(args: argparse.Namespace) -> int:
    """``s2i generate``; argument and pipeline errors propagate to :func:`s2ilib.cli.main`, which
    prints them on one line (exit 2 for bad arguments, 1 for a bad pipeline or audio)."""
    if args.wav is not None and args.say is not None:
        raise UsageError("give exactly one of --wav FILE or --say TEXT, not both")
    if args.wav is None and args.say is None:
        raise UsageError("give exactly one of --wav FILE or --say TEXT")
    if args.say is not None and not args.say.strip():
        raise UsageError("--say: the text is empty; give a sentence to speak")
    if args.wav is not None and not args.wav.strip():
        raise UsageError("--wav: the file name is empty")
    _check_n(args.n)
    image_format(args.out)
    if args.voice is not None:
        check_voice(args.voice)
    t0 = time.time()
    pipe = SpeechToImage(args.model, device=args.device)
    t1 = time.time()
    if args.wav:
        images = pipe.from_wav(args.wav, n=args.n, seed=args.seed)
    else:
        images = pipe.from_sentence(args.say, n=args.n, seed=args.seed, voice=args.voice)
    t2 = time.time()
    out = save_grid(images, args.out)
    print(json.dumps({"out": str(out), "n": len(images), "size": int(images.shape[-1]),
                      "load_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3)}))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("generate", help="images from a spoken description (a wav file or a sentence to speak)")
    p.add_argument("--model", required=True, help="generator run folder, e.g. runs/small/gan/synth-birds/one_stage")
    p.add_argument("--wav", help="a wav file (any rate; stereo is downmixed)")
    p.add_argument("--say", help="a sentence, spoken with the built-in synthesis first")
    p.add_argument("--voice", default=None, help="voice id for --say, e.g. espeak:en-gb+f2:r160:p50:g50")
    p.add_argument("--n", type=int, default=8, help="images to generate (different noise), at least 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="grid.png", help="output image grid (.png, .jpg, .webp, ...)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    p.set_defaults(func=cmd_generate)
