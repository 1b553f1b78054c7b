"""Model components: frozen encoders, connectors, fusion, the LLM decoder and the AVSR model.

One file per component: whisper.py (audio encoder) with ct2.py (CTranslate2 weights -> Whisper),
vision.py (video encoders), connector.py, fusion.py, llm.py, and the auxiliary losses' parts
ctc.py, articulation.py and sync.py (the fusion's agreement classifier and a video model's
lip-sync loss); losses.py says how those losses add up; avsr.py is AVSRModel. builder.py turns
the config into modules, one builder per component. known.py holds the hub models' published
shapes, weights.py finds offline weight packages and the cache folder, inspect.py reports
parameters. Nothing heavy is imported here: import the submodule you need.
"""
