"""Side-by-side examples: every method's image of the same test utterances with the same noise,
next to the real image (notebook 04's comparison grid)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from s2ilib.core import registry
from s2ilib.evaluation.queries import embedding_cache, evaluation_queries, lookup_embeddings
from s2ilib.evaluation.references import generators_bbox_crop, load_images_view
from s2ilib.evaluation.scoring import generator_images_fn, load_method_generator
from s2ilib.evaluation.two_stage import encode_texts, transcribe_queries


def example_rows(ds, paths, methods: Sequence[str] | None = None, n: int = 6, seed: int = 0,
                 condition: str = "seen", transcriber: Any = None, speak: Callable | None = None,
                 device: str = "cpu") -> list[dict[str, Any]]:
    """For ``n`` test utterances (distinct test images), the image of every method (default: every
    registered method) for the same utterance and the same noise: [{"utt_id", "image_idx", "text",
    "voice", "transcript" (methods with an ``asr`` query), "real": uint8 (3, S, S),
    "images": {method: uint8 (3, S, S)}}]. Transcripts come from the evaluation's cache when
    present. Generators and encoders run on ``device``."""
    from s2ilib.models.loading import load_trained_encoder

    methods = registry.method_names() if methods is None else methods
    q = evaluation_queries(ds, condition, 0, seed)
    first = q.groupby("image_idx", sort=False).head(1)  # one utterance per test image
    pick = np.random.default_rng([seed, 9]).permutation(len(first))[:n]
    q = first.iloc[np.sort(pick)].reset_index(drop=True)
    emb_cache = embedding_cache(paths, ds.name)
    rows = [{"utt_id": str(r.utt_id), "image_idx": int(r.image_idx), "text": str(r.text), "voice": str(r.voice),
             "images": {}} for r in q.itertuples()]
    size, gens = None, {}
    for method in methods:
        spec = registry.method(method)
        G = gens[method] = load_method_generator(paths, ds.name, method, device)
        size = G.sizes[-1]
        if spec.query == "asr":
            texts = transcribe_queries(ds, q, paths.eval(ds.name) / f"transcripts_{condition}.csv",
                                       transcriber=transcriber, speak=speak, progress=False)
            model, _, tok = load_trained_encoder(paths.encoder(ds.name, spec.encoder), map_location=device)
            cond = encode_texts(model.to(device), tok, texts)
            for r, t in zip(rows, texts):
                r["transcript"] = t
        else:
            cond = lookup_embeddings(emb_cache(spec.encoder), q, spec.encoder)
        images = generator_images_fn(G, cond, seed)(0, len(q))
        for r, img in zip(rows, images):
            r["images"][method] = img
    if size is not None:
        real = load_images_view(ds, q["image_idx"].tolist(), size, bbox_crop=generators_bbox_crop(gens, ds))
        for r, img in zip(rows, real):
            r["real"] = img
    return rows
