"""Speech -> images with a trained pipeline (encoder + generator): Python API and ``s2i generate``.

A generator run folder (``runs/<preset>/gan/<dataset>/<method>/``) holds ``pipeline.json``
naming its encoder; :class:`SpeechToImage` loads both. Any wav a user records works: any sample
rate (resampled to 16 kHz), mono or stereo (downmixed); bad audio raises
:class:`s2ilib.audio.AudioError` naming the file and the problem.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


class PipelineError(ValueError):
    """A generator folder is not a usable speech-to-image pipeline."""


class SpeechToImage:
    """Encoder + EMA generator of one trained pipeline.

    ``embed(wave) -> (D,)``; ``from_wave(wave, n, seed) -> uint8 (n, 3, S, S)``; ``from_wav(path, ...)``;
    ``from_sentence(text, ...)`` speaks the sentence with the built-in synthesis first.
    """

    def __init__(self, gan_dir: str | Path, device: str = "cpu"):
        from s2ilib.train_encoder import load_trained_encoder
        from s2ilib.train_gan import GENERATOR_EMA, load_generator

        self.gan_dir = Path(gan_dir)
        spec_path = self.gan_dir / "pipeline.json"
        if not spec_path.is_file():
            raise PipelineError(f"{spec_path}: missing; {self.gan_dir} is not a trained generator folder "
                                "(train one with notebook 03)")
        self.spec = json.loads(spec_path.read_text())
        if self.spec["encoder"] == "text_ts":
            raise PipelineError(f"{self.gan_dir}: this generator is conditioned on text, not speech; "
                                "use a one_stage or classifier generator")
        self.encoder, self.kind, _ = load_trained_encoder(self.spec["encoder_dir"], map_location=device)
        self.generator = load_generator(self.gan_dir / GENERATOR_EMA, device=device)
        self.n_mels = getattr(self.encoder, "n_mels", None) or 40

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> torch.Tensor:
        """16 kHz mono float32 ``(n,)`` -> speech embedding ``(D,)``."""
        from s2ilib.features import logmel

        feat = torch.from_numpy(logmel(wave, n_mels=self.n_mels))[None]
        lengths = torch.tensor([feat.shape[-1]])
        model = self.encoder.embed if self.kind == "speech_cls" else self.encoder
        return model(feat, lengths)[0].float()

    def from_wave(self, wave: np.ndarray, n: int = 8, seed: int = 0) -> torch.Tensor:
        from s2ilib.train_gan import generate

        return generate(self.generator, self.embed(wave), n=n, seed=seed)

    def from_wav(self, path: str | Path, n: int = 8, seed: int = 0) -> torch.Tensor:
        from s2ilib.audio import load_wav

        return self.from_wave(load_wav(path, target_sr=16000), n=n, seed=seed)

    def from_sentence(self, text: str, n: int = 8, seed: int = 0, voice: str | None = None) -> torch.Tensor:
        """Speak ``text`` (espeak-ng; ``voice`` id like ``espeak:en-us+m3:r170:p50:g50``), then generate."""
        from s2ilib.tts import Voice, get_engine

        v = Voice.from_id(voice) if voice else Voice()
        return self.from_wave(get_engine(v.engine).synthesize(text, v, sr=16000), n=n, seed=seed)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """uint8 (n, 3, S, S) -> one PNG grid."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.float() / 255.0, path, nrow=min(nrow, len(images)), padding=2)
    return path


def cmd_generate(args: argparse.Namespace) -> int:
    from s2ilib.audio import AudioError

    if bool(args.wav) == bool(args.say):
        print("s2i generate: give exactly one of --wav FILE or --say TEXT", file=sys.stderr)
        return 2
    try:
        t0 = time.time()
        pipe = SpeechToImage(args.model)
        t1 = time.time()
        if args.wav:
            images = pipe.from_wav(args.wav, n=args.n, seed=args.seed)
        else:
            images = pipe.from_sentence(args.say, n=args.n, seed=args.seed, voice=args.voice)
        t2 = time.time()
    except (PipelineError, AudioError, FileNotFoundError) as exc:
        print(f"s2i generate: {exc}", file=sys.stderr)
        return 1
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
    p.add_argument("--n", type=int, default=8, help="images to generate (different noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="grid.png", help="output PNG grid")
    p.set_defaults(func=cmd_generate)
