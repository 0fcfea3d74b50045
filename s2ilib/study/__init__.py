"""The study layer: stages the notebooks call (``stages``), run folders and variants (``paths``),
analyses (``analysis``), results payloads and the paper's claims (``report``), figures
(``plots``) and the papermill runner (``runner``)."""
