"""Speech -> images with a trained pipeline (encoder + generator): Python API and ``s2i generate``.

A generator run folder (``runs/<preset>/gan/<dataset>/<method>/``) holds ``pipeline.json``
naming its encoder; :class:`SpeechToImage` loads both. Any wav a user records works: any sample
rate (resampled to 16 kHz), mono or stereo (downmixed); bad audio raises
:class:`s2ilib.speech.audio.AudioError` naming the file and the problem; an unusable model folder raises
:class:`PipelineError` naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from s2ilib.core.errors import UsageError


class PipelineError(ValueError):
    """A generator folder is not a usable speech-to-image pipeline."""


# What pipeline.json must name (written by s2ilib.study.stages.train_generator).
PIPELINE_KEYS = ("dataset", "method", "encoder", "encoder_dir")
SPEECH_ENCODERS = ("speech_ts", "speech_cls")


def read_pipeline_spec(gan_dir: str | Path) -> dict:
    """``<gan_dir>/pipeline.json`` checked: a JSON object naming every key of :data:`PIPELINE_KEYS`."""
    gan_dir = Path(gan_dir)
    spec_path = gan_dir / "pipeline.json"
    if not spec_path.is_file():
        raise PipelineError(f"{spec_path}: missing; {gan_dir} is not a trained generator folder "
                            "(train one with notebook 03)")
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PipelineError(f"{spec_path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise PipelineError(f"{spec_path}: cannot read ({exc.strerror or exc})") from exc
    if not isinstance(spec, dict):
        raise PipelineError(f"{spec_path}: expected a JSON object with keys {', '.join(PIPELINE_KEYS)}, "
                            f"got {type(spec).__name__}")
    missing = [k for k in PIPELINE_KEYS if k not in spec]
    if missing:
        raise PipelineError(f"{spec_path}: missing keys {', '.join(missing)} (a pipeline names "
                            f"{', '.join(PIPELINE_KEYS)})")
    bad = [k for k in PIPELINE_KEYS if not isinstance(spec[k], str) or not spec[k]]
    if bad:
        raise PipelineError(f"{spec_path}: keys {', '.join(bad)} must be non-empty strings")
    return spec


def _load_error(path: Path, what: str, exc: Exception) -> PipelineError:
    """A loader's exception as a PipelineError naming the file (once)."""
    from s2ilib.core.errors import one_line

    msg = one_line(exc)
    if str(path) in msg:
        return PipelineError(msg)
    return PipelineError(f"{path}: not a usable {what} ({type(exc).__name__}: {msg})")


def _encoder_out_dim(encoder: torch.nn.Module) -> int | None:
    for m in (encoder, getattr(encoder, "encoder", None)):
        dim = getattr(m, "out_dim", None)
        if isinstance(dim, int):
            return dim
    return None


class SpeechToImage:
    """Encoder + EMA generator of one trained pipeline.

    ``embed(wave) -> (D,)``; ``from_wave(wave, n, seed) -> uint8 (n, 3, S, S)``; ``from_wav(path, ...)``;
    ``from_sentence(text, ...)`` speaks the sentence with the built-in synthesis first.
    A folder whose ``pipeline.json``, encoder checkpoint or ``generator_ema.pt`` is unreadable, or
    whose encoder and generator come from different datasets or embedding sizes, raises
    :class:`PipelineError` naming the file.
    """

    def __init__(self, gan_dir: str | Path, device: str = "auto"):
        from s2ilib.core.device import resolve_device
        from s2ilib.models.loading import GENERATOR_EMA, load_generator, load_trained_encoder

        self.device = device = resolve_device(device)
        self.gan_dir = Path(gan_dir)
        spec_path = self.gan_dir / "pipeline.json"
        self.spec = spec = read_pipeline_spec(self.gan_dir)
        if spec["encoder"] == "text_ts":
            raise PipelineError(f"{self.gan_dir}: this generator is conditioned on text, not speech; "
                                "use a one_stage or classifier generator")
        if spec["encoder"] not in SPEECH_ENCODERS:
            raise PipelineError(f"{spec_path}: unknown encoder {spec['encoder']!r}; "
                                f"expected one of {', '.join(SPEECH_ENCODERS)}")
        enc_dir = Path(spec["encoder_dir"])
        enc_ckpt = enc_dir / "checkpoint.pt"
        if not enc_ckpt.is_file():
            raise PipelineError(f"{enc_ckpt}: encoder checkpoint not found (named by {spec_path})")
        enc_dataset = self._encoder_dataset(enc_dir)
        if enc_dataset != spec["dataset"]:
            raise PipelineError(f"{spec_path}: the generator was trained on {spec['dataset']!r} but its encoder "
                                f"{enc_dir} on {enc_dataset!r}; pair a generator with its own dataset's encoder")
        try:
            self.encoder, self.kind, _ = load_trained_encoder(enc_dir, map_location=device)
        except PipelineError:
            raise
        except Exception as exc:  # truncated, empty, foreign or unsafe file: whatever the loader raises
            raise _load_error(enc_ckpt, "encoder checkpoint", exc) from exc
        if self.kind != spec["encoder"]:
            raise PipelineError(f"{spec_path}: names a {spec['encoder']} encoder but {enc_ckpt} holds a "
                                f"{self.kind} encoder")
        gen_path = self.gan_dir / GENERATOR_EMA
        if not gen_path.is_file():
            raise PipelineError(f"{gen_path}: generator weights not found (train_gan writes {GENERATOR_EMA})")
        try:
            self.generator = load_generator(gen_path, device=device)
        except Exception as exc:
            raise _load_error(gen_path, "generator checkpoint", exc) from exc
        enc_dim, gen_dim = _encoder_out_dim(self.encoder), int(self.generator.cond_dim)
        if enc_dim is not None and enc_dim != gen_dim:
            raise PipelineError(f"{self.gan_dir}: embedding sizes differ: the encoder {enc_ckpt} gives {enc_dim}-d "
                                f"embeddings, the generator {gen_path} expects {gen_dim}-d")
        self.n_mels = getattr(self.encoder, "n_mels", None) or getattr(getattr(self.encoder, "encoder", None),
                                                                       "n_mels", None) or 40

    @staticmethod
    def _encoder_dataset(enc_dir: Path) -> str:
        """The dataset an encoder was trained on, from its ``config.json`` (the trainer writes it): a
        folder without it cannot show that the encoder fits the generator, so it is an error."""
        path = enc_dir / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PipelineError(f"{path}: missing; the encoder folder must keep the config.json its training "
                                "wrote (it records the dataset the encoder was trained on)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PipelineError(f"{path}: not a readable encoder config ({exc})") from exc
        name = data.get("dataset") if isinstance(data, dict) else None
        if not isinstance(name, str) or not name:
            raise PipelineError(f"{path}: records no dataset (a JSON object with a non-empty \"dataset\" key)")
        return name

    @torch.no_grad()
    def embed(self, wave: np.ndarray) -> torch.Tensor:
        """16 kHz mono float32 ``(n,)`` -> speech embedding ``(D,)``."""
        from s2ilib.speech.features import logmel

        feat = torch.from_numpy(logmel(wave, n_mels=self.n_mels))[None].to(self.device)
        lengths = torch.tensor([feat.shape[-1]])
        model = self.encoder.embed if self.kind == "speech_cls" else self.encoder
        return model(feat, lengths)[0].float().cpu()

    def from_wave(self, wave: np.ndarray, n: int = 8, seed: int = 0) -> torch.Tensor:
        from s2ilib.models.loading import generate

        _check_n(n)
        return generate(self.generator, self.embed(wave), n=n, seed=seed)

    def from_wav(self, path: str | Path, n: int = 8, seed: int = 0) -> torch.Tensor:
        from s2ilib.speech.audio import load_wav

        _check_n(n)
        return self.from_wave(load_wav(path, target_sr=16000), n=n, seed=seed)

    def from_sentence(self, text: str, n: int = 8, seed: int = 0, voice: str | None = None) -> torch.Tensor:
        """Speak ``text`` (espeak-ng; ``voice`` id like ``espeak:en-us+m3:r170:p50:g50``), then generate."""
        from s2ilib.speech.tts import Voice, get_engine

        _check_n(n)
        if not str(text).strip():
            raise UsageError("the text to speak is empty")
        v = Voice.from_id(voice) if voice else Voice()
        return self.from_wave(get_engine(v.engine).synthesize(text, v, sr=16000), n=n, seed=seed)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UsageError(f"--n {n!r}: the number of images must be at least 1")


